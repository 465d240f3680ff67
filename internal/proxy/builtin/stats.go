package builtin

import (
	"cmp"
	"slices"
)

// BackendStats is a snapshot of one backend's counters. Counters run from
// the moment the address first appeared in a table and reset when it leaves
// one.
type BackendStats struct {
	// Address is the backend's "ip:port".
	Address string `json:"address"`
	// Requests counts attempts sent to the backend, retries included.
	Requests uint64 `json:"requests"`
	// Failures counts attempts that failed at the transport level (connect
	// failures, resets, timeouts); an HTTP 5xx answer is not a failure.
	Failures uint64 `json:"failures"`
	// InFlight is the number of requests and upgraded tunnels open now.
	InFlight int64 `json:"in_flight"`
	// Ejected is true while the backend is passively ejected after a
	// connect failure.
	Ejected bool `json:"ejected"`
}

// ErrorStats counts the answers the proxy gave itself.
type ErrorStats struct {
	// NoRoute counts 404s: unknown host, or no route for the path.
	NoRoute uint64 `json:"no_route"`
	// NoLiveBackend counts 503s: a route without a live backend.
	NoLiveBackend uint64 `json:"no_live_backend"`
	// BackendUnavailable counts 502s: every attempt failed.
	BackendUnavailable uint64 `json:"backend_unavailable"`
	// ClientCanceled counts requests the client gave up on before a
	// backend answered.
	ClientCanceled uint64 `json:"client_canceled"`
}

// Stats returns the counters of every backend in the live table, sorted by
// address.
func (p *Proxy) Stats() []BackendStats {
	now := p.clock.now()
	p.mu.Lock()
	out := make([]BackendStats, 0, len(p.states))
	for _, s := range p.states {
		out = append(out, BackendStats{
			Address:  s.addr,
			Requests: s.requests.Load(),
			Failures: s.failures.Load(),
			InFlight: s.inFlight.Load(),
			Ejected:  !s.live(now),
		})
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b BackendStats) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// Errors returns the proxy's error counters since New.
func (p *Proxy) Errors() ErrorStats {
	return ErrorStats{
		NoRoute:            p.counters.noRoute.Load(),
		NoLiveBackend:      p.counters.noLiveBackend.Load(),
		BackendUnavailable: p.counters.backendFailure.Load(),
		ClientCanceled:     p.counters.clientCanceled.Load(),
	}
}
