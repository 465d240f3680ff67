// Package api serves Interlock's HTTP API on the API address: the routing
// table and what was left out, health and readiness.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
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
}

// New builds the API handler.
func New(c StatusSource, d DockerStatus, version string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{controller: c, docker: d, version: version, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /api/routes", s.routes)
	s.mux.HandleFunc("GET /api/status", s.statusHandler)
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s
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
	Version    string            `json:"version"`
	Ready      bool              `json:"ready"`
	Docker     docker.Status     `json:"docker"`
	Controller controller.Status `json:"controller"`
	Hosts      int               `json:"hosts"`
	Backends   int               `json:"backends"`
	LeftOut    int               `json:"left_out"`
}

func (s *Server) statusHandler(w http.ResponseWriter, _ *http.Request) {
	st := s.controller.Status()
	ds := s.docker.Status()
	s.writeJSON(w, http.StatusOK, StatusResponse{
		Version:    s.version,
		Ready:      ready(st, ds) == "",
		Docker:     ds,
		Controller: st,
		Hosts:      len(st.Table.Hosts),
		Backends:   st.Table.BackendCount(),
		LeftOut:    len(st.Problems),
	})
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
	if why := ready(s.controller.Status(), s.docker.Status()); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + why + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

func ready(st controller.Status, ds docker.Status) string {
	switch {
	case !ds.Connected:
		if ds.LastError != "" {
			return "not connected to docker (" + ds.LastError + ") since " + ds.Since.Format(time.RFC3339)
		}
		return "not connected to docker yet"
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
