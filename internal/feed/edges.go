package feed

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// What a controller knows of its edges, for `interlock explain`: which
// edge applied which version, and when. An edge reports itself in every
// poll: the version it asks to be after is the one it applied (it applies
// a snapshot before asking for the next), and its name is the "edge"
// parameter (its host name), or its certificate's common name.

// EdgeParam is the query parameter that names the polling edge.
const EdgeParam = "edge"

// ChallengePath is where the ACME CA fetches HTTP-01 answers; an edge
// passes such requests on to the controller it follows.
const ChallengePath = "/.well-known/acme-challenge/"

// edgeHistory is how many versions are kept per edge and per controller.
const edgeHistory = 32

// edgeForget is how long an edge that stopped polling stays listed.
const edgeForget = 10 * time.Minute

// EdgeState is one edge as its controller saw it.
type EdgeState struct {
	Name string `json:"name"`
	// Remote is the address it polled from last.
	Remote string `json:"remote"`
	// Version is the snapshot version it applied last ("" when it has
	// not said yet: its first poll after a switch asks for any), and
	// AppliedAt when it first reported it.
	Version   string    `json:"version,omitempty"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Current is true when Version is the controller's live version.
	Current bool `json:"current"`
	// Connected is true while a poll of it is held, or it polled in the
	// last few seconds.
	Connected bool      `json:"connected"`
	LastSeen  time.Time `json:"last_seen"`
}

// EdgeHost is whether one edge serves a host, for explain.
type EdgeHost struct {
	EdgeState
	// Applied is true when the edge's version has the host; Since is
	// then when the edge applied the first of its versions in a row that
	// had it (as far as the controller remembers: its last 32).
	Applied bool      `json:"applied"`
	Since   time.Time `json:"since,omitzero"`
}

type edgeRecord struct {
	EdgeState
	holding int // polls of it being held now
	// history: the versions it applied, oldest first, with when.
	history []versionAt
}

type versionAt struct {
	version string
	at      time.Time
}

// edgeBook is the Server's record of edges and of its recent tables'
// host names (by table hash), guarded by Server.mu.
type edgeBook struct {
	edges  map[string]*edgeRecord
	tables []tableHosts // oldest first
}

type tableHosts struct {
	hash  string
	hosts map[string]bool
}

func (b *edgeBook) sawTable(t routing.Table) {
	h := t.Hash()
	if n := len(b.tables); n > 0 && b.tables[n-1].hash == h {
		return
	}
	hosts := make(map[string]bool, len(t.Hosts))
	for _, host := range t.Hosts {
		for _, name := range host.Names() {
			hosts[strings.ToLower(name)] = true
		}
	}
	b.tables = append(b.tables, tableHosts{hash: h, hosts: hosts})
	if len(b.tables) > edgeHistory {
		b.tables = slices.Delete(b.tables, 0, len(b.tables)-edgeHistory)
	}
}

// hostsOf returns the host names of the table of snapshot version v, nil
// when that table is not remembered (or v is "").
func (b *edgeBook) hostsOf(v string) map[string]bool {
	th := TableVersion(v)
	for i := len(b.tables) - 1; i >= 0; i-- {
		if b.tables[i].hash == th {
			return b.tables[i].hosts
		}
	}
	return nil
}

// has reports whether the table of snapshot version v had host; known is
// false when that table is not remembered.
func (b *edgeBook) has(v, host string) (has, known bool) {
	hosts := b.hostsOf(v)
	return hosts[host], hosts != nil
}

// edgeName is how r's edge is known: its "edge" parameter, else its
// certificate's common name, else its address.
func edgeName(r *http.Request) string {
	if n := r.URL.Query().Get(EdgeParam); n != "" {
		if len(n) > 253 {
			n = n[:253]
		}
		return n
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName != "" {
		return r.TLS.PeerCertificates[0].Subject.CommonName
	}
	return r.RemoteAddr
}

// sawEdge records r's edge as polling after version after, and returns
// its done, to call when the poll is answered.
func (s *Server) sawEdge(r *http.Request, after string) func() {
	name, now := edgeName(r), time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.edges.edges == nil {
		s.edges.edges = map[string]*edgeRecord{}
	}
	for n, e := range s.edges.edges {
		if e.holding == 0 && now.Sub(e.LastSeen) > edgeForget {
			delete(s.edges.edges, n)
		}
	}
	e := s.edges.edges[name]
	if e == nil {
		e = &edgeRecord{EdgeState: EdgeState{Name: name}}
		s.edges.edges[name] = e
	}
	e.Remote, e.LastSeen = r.RemoteAddr, now
	e.holding++
	if after != "" && after != e.Version {
		if s.opts.OnEdgeApplied != nil {
			defer func() { go s.opts.OnEdgeApplied() }()
		}
		e.Version, e.AppliedAt = after, now
		e.history = append(e.history, versionAt{after, now})
		if len(e.history) > edgeHistory {
			e.history = slices.Delete(e.history, 0, len(e.history)-edgeHistory)
		}
	}
	return func() {
		s.mu.Lock()
		e.holding--
		e.LastSeen = time.Now()
		s.mu.Unlock()
	}
}

// Edges returns the edges that polled this controller in the last ten
// minutes, by name.
func (s *Server) Edges() []EdgeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EdgeState, 0, len(s.edges.edges))
	for _, e := range s.edges.edges {
		out = append(out, s.stateOf(e))
	}
	slices.SortFunc(out, func(a, b EdgeState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Server) stateOf(e *edgeRecord) EdgeState {
	st := e.EdgeState
	st.Current = st.Version != "" && st.Version == s.version
	st.Connected = e.holding > 0 || time.Since(e.LastSeen) < 5*time.Second
	return st
}

// EdgesServing returns, for every edge, whether the version it applied
// has host (a host name or alias), and since when.
func (s *Server) EdgesServing(host string) []EdgeHost {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EdgeHost, 0, len(s.edges.edges))
	for _, e := range s.edges.edges {
		eh := EdgeHost{EdgeState: s.stateOf(e)}
		for i := len(e.history) - 1; i >= 0; i-- {
			has, known := s.edges.has(e.history[i].version, host)
			if !has || !known {
				break
			}
			eh.Applied, eh.Since = true, e.history[i].at
		}
		out = append(out, eh)
	}
	slices.SortFunc(out, func(a, b EdgeHost) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ServedByEdges returns the names of names that every connected edge
// serves (the version it applied has them), when at least one edge is
// connected: where the CA's validation of those names finds an edge that
// passes the challenge on.
func (s *Server) ServedByEdges(names []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sets []map[string]bool
	for _, e := range s.edges.edges {
		if !s.stateOf(e).Connected {
			continue
		}
		sets = append(sets, s.edges.hostsOf(e.Version)) // nil: none known
	}
	if len(sets) == 0 {
		return nil
	}
	var out []string
	for _, n := range names {
		ok := true
		for _, hosts := range sets {
			if !hosts[strings.ToLower(n)] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, n)
		}
	}
	return out
}
