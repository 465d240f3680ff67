package main

import (
	"encoding/json"
	"net"
	"net/http"
)

// Reply is the JSON body of every ordinary response. Tests decode it to see
// what reached the backend through the proxy.
type Reply struct {
	// Name is $NAME, or the hostname when NAME is unset.
	Name   string `json:"name"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Query is the raw query string, without '?'.
	Query string `json:"query,omitempty"`
	// Host is the Host header as received.
	Host string `json:"host"`
	// Port is the local port the request came in on (with PORTS, one of several).
	Port string `json:"port"`
	// Remote is the peer address of the connection (the proxy, normally).
	Remote string `json:"remote"`
	// Headers holds the forwarding headers that were present, by canonical
	// name; an absent header has no key.
	Headers map[string]string `json:"headers"`
}

// forwardHeaders are the request headers a reply reports.
var forwardHeaders = []string{
	"X-Forwarded-For",
	"X-Forwarded-Host",
	"X-Forwarded-Proto",
	"X-Forwarded-Port",
	"X-Real-Ip",
	"Forwarded",
}

var appJSON = []string{"application/json"}

func (h *handler) reply(w http.ResponseWriter, r *http.Request) {
	rep := Reply{
		Name:    h.name,
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Host:    r.Host,
		Remote:  r.RemoteAddr,
		Headers: map[string]string{},
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, port, err := net.SplitHostPort(a.String()); err == nil {
			rep.Port = port
		}
	}
	for _, k := range forwardHeaders {
		if v, ok := r.Header[k]; ok && len(v) > 0 {
			rep.Headers[k] = v[0]
			for _, more := range v[1:] {
				rep.Headers[k] += ", " + more
			}
		}
	}
	w.Header()["Content-Type"] = appJSON
	_ = json.NewEncoder(w).Encode(rep)
}
