package builtin

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// UnknownHost is the host name requests are recorded under when no host of
// the table answers to their Host header. Recording the raw header instead
// would let any client create series at will.
const UnknownHost = "unknown"

// RequestMetrics receives one observation for every request the proxy
// answers (Options.Requests). It is the hook Prometheus metrics hang on
// (internal/metrics) without this package importing them.
//
// The proxy asks for one RequestRecorder per host when it compiles a table,
// never per request, so an implementation does its label lookups there and
// the request path only calls Observe.
type RequestMetrics interface {
	// Host returns the recorder for the host whose primary name is name,
	// or for UnknownHost. New calls it for UnknownHost; Apply calls it for
	// every host of the table it is about to put live, and again on the
	// next Apply, so it should hand back the same recorder for a name it
	// already knows. It must not block.
	Host(name string) RequestRecorder
	// Forget reports that the host name left the live table. Apply calls
	// it after the swap. Requests still in flight on the old table may go
	// on recording on the host's old recorder.
	Forget(name string)
}

// RequestRecorder records the requests of one host. It is called
// concurrently from every request and should not allocate.
type RequestRecorder interface {
	// Observe records one answered request: the status code sent to the
	// client (the proxy's own 404, 502 and 503 included; 101 for an
	// upgraded connection) and the time from the request reaching the
	// proxy to the response body being relayed (for a 101, the tunnel's
	// whole life).
	Observe(code int, took time.Duration)
}

// observe records a request that the proxy answered itself.
func (p *Proxy) observe(h *host, code int, start time.Time) {
	rec := p.unknown
	if h != nil {
		rec = h.rec
	}
	rec.Observe(code, time.Since(start))
}

// forwardObserved forwards r on rt and records the status code the client
// got. The status is captured by a pooled ResponseWriter wrapper, so the
// request path allocates nothing for it.
func (p *Proxy) forwardObserved(w http.ResponseWriter, r *http.Request, h *host, rt *route, start time.Time) {
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.code = w, 0
	// Deferred, so that a body copy aborted with http.ErrAbortHandler (a
	// backend that broke off mid-body) is still counted.
	defer func() {
		code := sw.code
		if code == 0 {
			// Nothing was written: net/http answers 200 with no body.
			code = http.StatusOK
		}
		h.rec.Observe(code, time.Since(start))
		sw.ResponseWriter = nil
		statusWriters.Put(sw)
	}()
	rt.forward.ServeHTTP(sw, r)
}

// retireHosts tells p.requests which hosts the table just put live no
// longer has. Apply holds p.mu.
func (p *Proxy) retireHosts(t *table) {
	names := make(map[string]struct{}, len(t.hosts))
	for _, h := range t.hosts {
		names[h.name] = struct{}{}
	}
	for name := range p.liveHosts {
		if _, ok := names[name]; !ok {
			p.requests.Forget(name)
		}
	}
	p.liveHosts = names
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// statusWriter remembers the final status code written through it. It
// hides nothing: Unwrap lets http.ResponseController (which ReverseProxy
// uses to flush and to hijack) reach the server's own writer, and Hijack is
// implemented only to note the 101 that ReverseProxy then writes on the
// hijacked connection itself.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers other than 101 are interim (103 Early Hints): the final
	// code comes later.
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
