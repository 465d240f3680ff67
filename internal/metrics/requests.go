package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
)

// requestMetrics implements builtin.RequestMetrics:
// interlock_builtin_requests_total{host,code} and
// interlock_builtin_request_duration_seconds{host}.
//
// Cardinality is bounded by the table: host is always a primary host name
// of the table (or builtin.UnknownHost), never the raw Host header, and
// code is an HTTP status. The series of a host that left the table are
// kept for retain, then deleted.
//
// The request path does no label lookup: each host's recorder holds its
// curried histogram and caches one counter per status code, filled on the
// first request with that code.
type requestMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retain   time.Duration
	now      func() time.Time

	mu      sync.Mutex
	hosts   map[string]*hostRecorder
	retired map[string]time.Time // host -> when it left the table
}

func newRequestMetrics(retain time.Duration, now func() time.Time) *requestMetrics {
	if retain <= 0 {
		retain = 5 * time.Minute
	}
	return &requestMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "builtin", Name: "requests_total",
			Help: "Requests the built-in proxy answered, by host (the route's primary host name, \"unknown\" when no host matched) and status code.",
		}, []string{"host", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "builtin", Name: "request_duration_seconds",
			Help:    "Time from a request reaching the built-in proxy to its response being relayed, by host. Upgraded connections (101) are not observed.",
			Buckets: requestBuckets,
		}, []string{"host"}),
		retain:  retain,
		now:     now,
		hosts:   map[string]*hostRecorder{},
		retired: map[string]time.Time{},
	}
}

var _ builtin.RequestMetrics = (*requestMetrics)(nil)

// Host implements builtin.RequestMetrics.
func (m *requestMetrics) Host(name string) builtin.RequestRecorder {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.retired, name)
	m.sweep()
	r := m.hosts[name]
	if r == nil {
		r = &hostRecorder{total: m.total, host: name, duration: m.duration.WithLabelValues(name)}
		m.hosts[name] = r
	}
	return r
}

// Forget implements builtin.RequestMetrics.
func (m *requestMetrics) Forget(name string) {
	if name == builtin.UnknownHost {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.hosts[name]; ok {
		m.retired[name] = m.now()
	}
	m.sweep()
}

// sweep deletes the series of hosts retired for longer than retain. It
// runs on Host and Forget, that is at every Apply: no goroutine of its own.
func (m *requestMetrics) sweep() {
	cutoff := m.now().Add(-m.retain)
	for name, at := range m.retired {
		if at.After(cutoff) {
			continue
		}
		if r := m.hosts[name]; r != nil {
			r.dead.Store(true)
			delete(m.hosts, name)
		}
		delete(m.retired, name)
		m.total.DeletePartialMatch(prometheus.Labels{"host": name})
		m.duration.DeleteLabelValues(name)
	}
}

// hostRecorder is one host's builtin.RequestRecorder.
type hostRecorder struct {
	total    *prometheus.CounterVec
	host     string
	duration prometheus.Observer
	// codes caches the counter of each status code 100-599.
	codes [500]atomic.Pointer[counterRef]
	// dead is set once the host's series are deleted: a request still in
	// flight on an old table must not bring them back.
	dead atomic.Bool
}

type counterRef struct{ c prometheus.Counter }

// Observe implements builtin.RequestRecorder.
func (r *hostRecorder) Observe(code int, took time.Duration) {
	if r.dead.Load() {
		return
	}
	r.counter(code).Inc()
	if code != 101 {
		// A tunnel's life says nothing about the proxy's latency.
		r.duration.Observe(took.Seconds())
	}
}

func (r *hostRecorder) counter(code int) prometheus.Counter {
	cacheable := code >= 100 && code < 600
	if cacheable {
		if ref := r.codes[code-100].Load(); ref != nil {
			return ref.c
		}
	}
	c := r.total.WithLabelValues(r.host, strconv.Itoa(code))
	if cacheable {
		r.codes[code-100].Store(&counterRef{c})
	}
	return c
}
