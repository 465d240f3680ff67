package api

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// SnapshotSource gives the Docker snapshot the live table was built from;
// the controller provides it.
type SnapshotSource interface {
	Snapshot() docker.Snapshot
}

// WithExplain serves GET /api/explain?name=NAME from the snapshots of s.
func WithExplain(s SnapshotSource) Option { return func(srv *Server) { srv.snapshots = s } }

// WithEdges adds to each explained host, on a controller, whether each of
// its edges has applied it (f gives them for one host name).
func WithEdges(f func(host string) []EdgeApplied) Option {
	return func(srv *Server) { srv.edges = f }
}

// EdgeApplied is whether one edge of a controller serves a host.
type EdgeApplied struct {
	Edge string `json:"edge"`
	// Remote is the address the edge polls from.
	Remote string `json:"remote"`
	// Applied is true when the version the edge applied has the host,
	// since Since (as far as the controller remembers).
	Applied bool      `json:"applied"`
	Since   time.Time `json:"since,omitzero"`
	// Version is the feed version the edge applied, at AppliedAt;
	// Current is true when that is the controller's live one.
	Version   string    `json:"version,omitempty"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	Current   bool      `json:"current"`
	// Connected is true while the edge follows this controller.
	Connected bool `json:"connected"`
}

// Explanation is the body of GET /api/explain: everything Interlock knows
// about NAME, a container or service (by name or ID prefix) or a host
// name, and why it is or is not routed.
type Explanation struct {
	Query string `json:"query"`
	// Objects are the containers and services NAME names, or that back
	// the host NAME names.
	Objects []ExplainedObject `json:"objects"`
	// Hosts are the live table's hosts NAME names, or that the objects
	// back.
	Hosts []routing.Host `json:"hosts"`
	// Applied says whether that table is live, since AppliedAt.
	Applied   bool      `json:"applied"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Edges, on a controller, say by host which edges serve it.
	Edges map[string][]EdgeApplied `json:"edges,omitempty"`
}

// ExplainedObject is one container or service and what became of it.
type ExplainedObject struct {
	// Kind is "container" or "service".
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state,omitempty"`
	// Labels are its interlock.* and com.docker.lb.* labels: the ones
	// Interlock reads.
	Labels map[string]string `json:"labels"`
	// Routes are the routes it backs in the live table.
	Routes []RouteRef `json:"routes"`
	// Problems are why it, or some of its labels, were left out.
	Problems []routing.Problem `json:"problems"`
	// Verdict says it in one sentence.
	Verdict string `json:"verdict"`
}

// RouteRef names one route an object backs, and through which address.
type RouteRef struct {
	Host    string `json:"host"`
	Path    string `json:"path"`
	Address string `json:"address"`
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("name"))
	if q == "" {
		s.writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name is missing: GET /api/explain?name=CONTAINER, SERVICE or HOST"})
		return
	}
	if s.snapshots == nil {
		s.writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "this Interlock keeps no snapshot to explain from"})
		return
	}
	st := s.controller.Status()
	ex := Explain(q, s.snapshots.Snapshot(), st.Table, st.Problems, st.Applied, st.LastApply.At)
	if s.edges != nil {
		ex.Edges = map[string][]EdgeApplied{}
		for _, h := range ex.Hosts {
			ex.Edges[h.Name] = s.edges(h.Name)
		}
	}
	s.writeJSON(w, http.StatusOK, ex)
}

// readLabel reports whether Interlock reads label k.
func readLabel(k string) bool {
	return strings.HasPrefix(k, "interlock.") || strings.HasPrefix(k, "com.docker.lb.")
}

// Explain answers for q from the snapshot snap, the table built from it
// and its problems.
func Explain(q string, snap docker.Snapshot, t routing.Table, problems []routing.Problem, applied bool, at time.Time) Explanation {
	ex := Explanation{Query: q, Objects: []ExplainedObject{}, Hosts: []routing.Host{}, Applied: applied}
	if applied {
		ex.AppliedAt = at
	}
	name := strings.ToLower(strings.TrimSuffix(q, "."))
	idMatch := func(id string) bool { return len(q) >= 4 && strings.HasPrefix(id, q) }

	// The objects behind the host q names, by the IDs of its backends.
	backing := map[string]bool{}
	if h, ok := t.Lookup(name); ok {
		ex.Hosts = append(ex.Hosts, h)
		for _, r := range h.Routes {
			for _, b := range r.Backends {
				backing[b.Container] = true
				backing[b.Task] = true
			}
		}
		delete(backing, "")
	}
	for _, c := range snap.Containers {
		if c.Name == q || c.ID == q || idMatch(c.ID) || backing[c.ID] {
			ex.Objects = append(ex.Objects, explainContainer(c, t, problems))
		}
	}
	for _, svc := range snap.Services {
		backs := slices.ContainsFunc(svc.Tasks, func(tk docker.Task) bool { return backing[tk.ID] })
		if svc.Name == q || svc.ID == q || idMatch(svc.ID) || backs {
			ex.Objects = append(ex.Objects, explainService(svc, t, problems))
		}
	}
	// The hosts the objects back, when q named an object.
	seen := map[string]bool{}
	for _, h := range ex.Hosts {
		seen[h.Name] = true
	}
	for _, o := range ex.Objects {
		for _, r := range o.Routes {
			if !seen[r.Host] {
				if h, ok := t.Lookup(r.Host); ok {
					seen[r.Host] = true
					ex.Hosts = append(ex.Hosts, h)
				}
			}
		}
	}
	return ex
}

func explainContainer(c docker.Container, t routing.Table, problems []routing.Problem) ExplainedObject {
	o := ExplainedObject{Kind: "container", ID: c.ID, Name: c.Name, State: c.State, Labels: readLabels(c.Labels)}
	if c.Health != "" {
		o.State += " (" + c.Health + ")"
	}
	if c.Draining {
		o.State += ", stopping"
	}
	o.Routes = routesOf(t, func(b routing.Backend) bool { return b.Container == c.ID })
	o.Problems = problemsOf(problems, c.ID)
	o.Verdict = verdict(o, c.Routable(), "interlock.hostname or interlock.domain")
	if len(o.Routes) == 0 && len(o.Problems) == 0 {
		// A typo in interlock.hostname keeps the container out of routing
		// altogether, so no problem names it: say what Interlock read.
		if unknown := discovery.UnknownLabels(c.Labels); len(unknown) > 0 {
			o.Verdict += "; " + strings.Join(unknown, "; ")
		}
	}
	return o
}

func explainService(svc docker.Service, t routing.Table, problems []routing.Problem) ExplainedObject {
	o := ExplainedObject{Kind: "service", ID: svc.ID, Name: svc.Name, Labels: readLabels(svc.Labels)}
	tasks := map[string]bool{}
	running := 0
	for _, tk := range svc.Tasks {
		tasks[tk.ID] = true
		if tk.Routable() {
			running++
		}
	}
	o.State = plural(running, "routable task")
	o.Routes = routesOf(t, func(b routing.Backend) bool { return tasks[b.Task] || b.Container == svc.ID })
	o.Problems = problemsOf(problems, svc.ID)
	o.Verdict = verdict(o, running > 0, "com.docker.lb.hosts")
	return o
}

// verdict says in one sentence why o is or is not routed.
func verdict(o ExplainedObject, routable bool, needs string) string {
	switch {
	case len(o.Problems) > 0 && len(o.Routes) == 0:
		return "left out: " + o.Problems[0].Message
	case len(o.Problems) > 0:
		return "routed, but part of it was left out: " + o.Problems[0].Message
	case len(o.Routes) > 0:
		hosts := map[string]bool{}
		for _, r := range o.Routes {
			hosts[r.Host] = true
		}
		return "routed: " + strings.Join(slices.Sorted(maps.Keys(hosts)), ", ")
	case len(o.Labels) == 0:
		return "not routed: it has no label Interlock reads (it needs " + needs + ")"
	case !routable:
		return "not routed now: it is not running and healthy (" + o.State + "); it is routed again once it is"
	default:
		return "not routed: its labels name no host (it needs " + needs + ")"
	}
}

func readLabels(labels map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		if readLabel(k) {
			out[k] = v
		}
	}
	return out
}

func routesOf(t routing.Table, mine func(routing.Backend) bool) []RouteRef {
	out := []RouteRef{}
	for _, h := range t.Hosts {
		for _, r := range h.Routes {
			for _, b := range r.Backends {
				if mine(b) {
					out = append(out, RouteRef{Host: h.Name, Path: r.Path, Address: b.Address})
				}
			}
		}
	}
	return out
}

func problemsOf(problems []routing.Problem, id string) []routing.Problem {
	out := []routing.Problem{}
	for _, p := range problems {
		if p.ID == id {
			out = append(out, p)
		}
	}
	return out
}
