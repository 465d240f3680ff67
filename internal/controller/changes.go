package controller

import (
	"log/slog"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// logChanges writes one line per host or backend that came or went, the
// changes an operator wants to see, rather than one line per apply.
func logChanges(log *slog.Logger, before, after routing.Table) {
	old := backendsByHost(before)
	cur := backendsByHost(after)
	for host, backends := range cur {
		prev, had := old[host]
		if !had {
			log.Info("host added", "host", host, "backends", len(backends))
		}
		for key, b := range backends {
			if _, ok := prev[key]; !ok {
				log.Info("backend added", "host", host, "path", key.path, "address", b.Address, "container", b.Name)
			}
		}
	}
	for host, backends := range old {
		next, has := cur[host]
		for key, b := range backends {
			if _, ok := next[key]; !ok {
				log.Info("backend removed", "host", host, "path", key.path, "address", b.Address, "container", b.Name)
			}
		}
		if !has {
			log.Info("host removed", "host", host)
		}
	}
}

type backendKey struct{ path, address, container string }

func backendsByHost(t routing.Table) map[string]map[backendKey]routing.Backend {
	out := make(map[string]map[backendKey]routing.Backend, len(t.Hosts))
	for _, h := range t.Hosts {
		m := make(map[backendKey]routing.Backend)
		for _, r := range h.Routes {
			for _, b := range r.Backends {
				m[backendKey{r.Path, b.Address, b.Container}] = b
			}
		}
		out[h.Name] = m
	}
	return out
}
