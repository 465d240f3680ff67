// Package api serves Interlock's HTTP API on the API address: the routing
// table and what was left out, health and readiness, the live feed of
// changes (server-sent events), the dashboard and, when given, /metrics.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// StatusSource is what the API reads; the controller and the Docker
// source provide it.
type StatusSource interface {
	Status() controller.Status
}

// DockerStatus reports the engine connection.
type DockerStatus interface {
	Status() docker.Status
}

// Server is the API handler.
type Server struct {
	controller StatusSource
	docker     DockerStatus
	version    string
	log        *slog.Logger
	mux        *http.ServeMux

	feed     *Feed
	backends func() []BackendHealth
	reloads  func() int64
	certs    func() []CertProblem
	proxies  func() ProxyContainers
	// snapshots answers /api/explain (WithExplain).
	snapshots SnapshotSource
	edges     func(host string) []EdgeApplied
	// stopping is set by ShuttingDown: /readyz then says no.
	stopping atomic.Bool
	// upstream names where the table comes from in readiness answers:
	// "docker", or "a controller" on an edge (WithUpstream).
	upstream string
}

// Option adds an optional part to the API.
type Option func(*Server)

// WithMetrics serves h (a Prometheus handler) at GET /metrics.
func WithMetrics(h http.Handler) Option {
	return func(s *Server) { s.mux.Handle("GET /metrics", h) }
}

// WithFeed serves f at GET /api/events and shows it on the dashboard.
func WithFeed(f *Feed) Option { return func(s *Server) { s.feed = f } }

// WithBackendHealth gives the driver's per-backend state to GET
// /api/backends and the dashboard. Drivers without it show none.
func WithBackendHealth(f func() []BackendHealth) Option {
	return func(s *Server) { s.backends = f }
}

// WithReloads gives the number of proxy reloads so far, for /api/status
// and the dashboard. Without it the count is 0 (the built-in proxy never
// reloads).
func WithReloads(f func() int64) Option { return func(s *Server) { s.reloads = f } }

// WithCertProblems gives the hosts whose certificate is not served, for
// /api/status and the dashboard.
func WithCertProblems(f func() []CertProblem) Option { return func(s *Server) { s.certs = f } }

// WithProxyContainers gives the state of the side-loaded proxy containers
// (nginx or haproxy with target containers), for /api/status, and makes
// /readyz say degraded while a table is applied but no proxy container
// runs to get it.
func WithProxyContainers(f func() ProxyContainers) Option {
	return func(s *Server) { s.proxies = f }
}

// WithUpstream names where the table comes from, for /readyz and
// /api/status: a socket-less edge's DockerStatus is its feed from the
// controllers (internal/feed), and its answers say "not connected to a
// controller" rather than "to docker". Default "docker".
func WithUpstream(name string) Option { return func(s *Server) { s.upstream = name } }

// New builds the API handler.
func New(c StatusSource, d DockerStatus, version string, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{controller: c, docker: d, version: version, log: log, mux: http.NewServeMux(), upstream: "docker"}
	s.mux.HandleFunc("GET /api/routes", s.routes)
	s.mux.HandleFunc("GET /api/status", s.statusHandler)
	s.mux.HandleFunc("GET /api/backends", s.backendsHandler)
	s.mux.HandleFunc("GET /api/explain", s.explain)
	s.mux.HandleFunc("GET /api/events", s.events)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /{$}", s.dashboard)
	s.mux.Handle("GET /static/", staticHandler())
	for _, o := range opts {
		o(s)
	}
	return s
}

// ShuttingDown makes /readyz answer 503, so that load balancers stop
// sending new connections while in-flight requests drain, and tells the
// feed. It cannot be undone.
func (s *Server) ShuttingDown() {
	if s.stopping.Swap(true) {
		return
	}
	if s.feed != nil {
		s.feed.Publish(Event{Kind: KindLifecycle, Level: LevelWarn, Message: "shutting down: draining in-flight requests"})
	}
}

// CloseStreams ends every /api/events stream, now and to come; give it to
// http.Server.RegisterOnShutdown, whose Shutdown would wait for them.
func (s *Server) CloseStreams() {
	if s.feed != nil {
		s.feed.Close()
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// RoutesResponse is the body of GET /api/routes.
type RoutesResponse struct {
	Hash    string            `json:"hash"`
	Hosts   []routing.Host    `json:"hosts"`
	LeftOut []routing.Problem `json:"left_out"`
}

func (s *Server) routes(w http.ResponseWriter, _ *http.Request) {
	st := s.controller.Status()
	resp := RoutesResponse{Hash: st.Hash, Hosts: st.Table.Hosts, LeftOut: st.Problems}
	if resp.Hosts == nil {
		resp.Hosts = []routing.Host{}
	}
	if resp.LeftOut == nil {
		resp.LeftOut = []routing.Problem{}
	}
	s.writeJSON(w, http.StatusOK, resp)
}

// StatusResponse is the body of GET /api/status.
type StatusResponse struct {
	Version string `json:"version"`
	Ready   bool   `json:"ready"`
	// Degraded says why Interlock serves its last good table without
	// following Docker; "" when it follows it.
	Degraded   string            `json:"degraded,omitempty"`
	Docker     docker.Status     `json:"docker"`
	Controller controller.Status `json:"controller"`
	Hosts      int               `json:"hosts"`
	Backends   int               `json:"backends"`
	LeftOut    int               `json:"left_out"`
	// Reloads counts reloads of a side-loaded proxy; always 0 for the
	// built-in one, whose applies are atomic swaps.
	Reloads int64 `json:"reloads"`
	// ShuttingDown is set once the process is draining before it exits.
	ShuttingDown bool `json:"shutting_down"`
	// CertificateProblems are the hosts whose certificate is not served:
	// they get the default certificate. Empty when every one is.
	CertificateProblems []CertProblem `json:"certificate_problems"`
	// ProxyContainers is the state of the side-loaded proxy containers;
	// absent for a proxy Interlock runs or is itself.
	ProxyContainers *ProxyContainers `json:"proxy_containers,omitempty"`
}

// ProxyContainers are the side-loaded proxy containers Interlock
// configures.
type ProxyContainers struct {
	// Label selects them: "interlock.ext.name=nginx".
	Label string `json:"label"`
	// Host is the engine they are looked for on: the watched one, or
	// --proxy-docker-host.
	Host string `json:"host"`
	// Targets is how many run there now; 0 means the table reaches no
	// proxy.
	Targets int `json:"targets"`
	// Pushes counts files delivered to a container, Signals reload
	// signals sent.
	Pushes  int64 `json:"pushes"`
	Signals int64 `json:"signals"`
	// LastError is the last failure to deliver, check or signal; "" after
	// a success.
	LastError string `json:"last_error,omitempty"`
	// Docker is the connection to Host when it is not the watched engine
	// (--proxy-docker-host); nil when it is.
	Docker *docker.Status `json:"docker,omitempty"`
}

// CertProblem says why a host does not get its own certificate.
type CertProblem struct {
	Host    string `json:"host"`
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (s *Server) statusHandler(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, s.status())
}

func (s *Server) status() StatusResponse {
	st := s.controller.Status()
	ds := s.docker.Status()
	var reloads int64
	if s.reloads != nil {
		reloads = s.reloads()
	}
	certs := []CertProblem{}
	if s.certs != nil {
		certs = append(certs, s.certs()...)
	}
	pc := s.proxyContainers()
	return StatusResponse{
		Version:      s.version,
		Ready:        s.notReady(st, ds) == "",
		Degraded:     degraded(st, ds, pc, s.upstream),
		Docker:       ds,
		Controller:   st,
		Hosts:        len(st.Table.Hosts),
		Backends:     st.Table.BackendCount(),
		LeftOut:      len(st.Problems),
		Reloads:      reloads,
		ShuttingDown: s.stopping.Load(),

		CertificateProblems: certs,
		ProxyContainers:     pc,
	}
}

// proxyContainers is the proxy containers' state, nil without them.
func (s *Server) proxyContainers() *ProxyContainers {
	if s.proxies == nil {
		return nil
	}
	pc := s.proxies()
	return &pc
}

// BackendHealth is what the driver knows of one backend address.
type BackendHealth struct {
	Address  string `json:"address"`
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
	InFlight int64  `json:"in_flight"`
	// Ejected is true while the backend is passively ejected after a
	// connect failure.
	Ejected bool `json:"ejected"`
}

// BackendsResponse is the body of GET /api/backends.
type BackendsResponse struct {
	// Available is false when the driver keeps no per-backend state.
	Available bool            `json:"available"`
	Backends  []BackendHealth `json:"backends"`
}

func (s *Server) backendsHandler(w http.ResponseWriter, _ *http.Request) {
	resp := BackendsResponse{Backends: []BackendHealth{}}
	if s.backends != nil {
		resp.Available = true
		if b := s.backends(); b != nil {
			resp.Backends = b
		}
	}
	s.writeJSON(w, http.StatusOK, resp)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when Interlock is connected to Docker and its table is
// live, so a load balancer sends traffic only to a proxy that knows the
// current routes.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if why := s.notReady(s.controller.Status(), s.docker.Status()); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + why + "\n"))
		return
	}
	if why := degraded(s.controller.Status(), s.docker.Status(), s.proxyContainers(), s.upstream); why != "" {
		_, _ = w.Write([]byte("degraded: " + why + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// degraded says why Interlock, with a table applied, is not wholly
// working: it lost the connection to Docker (the proxy still serves that
// last good table, so a load balancer must keep sending traffic), or no
// side-loaded proxy container runs to get the table (pc, nil for other
// proxies). The answer is 200 and says so; "" when neither.
func degraded(st controller.Status, ds docker.Status, pc *ProxyContainers, upstream string) string {
	switch {
	case !st.Applied:
		return ""
	case !ds.Connected:
		return "not connected to " + upstream + " (" + ds.LastError + ") since " + ds.Since.Format(time.RFC3339) +
			"; serving the last table applied at " + st.LastApply.At.Format(time.RFC3339)
	case pc != nil && pc.Targets == 0:
		why := "no proxy container labelled " + pc.Label + " is running on " + pc.Host
		if d := pc.Docker; d != nil && !d.Connected {
			if d.LastError != "" {
				why += " (not connected to it: " + d.LastError + ")"
			} else {
				why += " (not connected to it yet)"
			}
		}
		return why + "; the table applied at " + st.LastApply.At.Format(time.RFC3339) + " reaches no proxy"
	}
	return ""
}

// notReady says why Interlock is not ready, "" when it is.
func (s *Server) notReady(st controller.Status, ds docker.Status) string {
	switch {
	case s.stopping.Load():
		return "shutting down"
	case !st.Applied && !ds.Connected:
		if ds.LastError != "" {
			return "not connected to " + s.upstream + " (" + ds.LastError + ") since " + ds.Since.Format(time.RFC3339)
		}
		return "not connected to " + s.upstream + " yet"
	case !st.Applied:
		return "no routing table applied yet"
	}
	return ""
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		s.log.Debug("api: write response", "error", err)
	}
}
