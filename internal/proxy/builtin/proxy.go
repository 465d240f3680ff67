package builtin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// Options configures a Proxy. The zero value is ready to use.
type Options struct {
	// Logger receives ejections, failed requests and skipped routes.
	// Nil means slog.Default().
	Logger *slog.Logger
	// DialTimeout bounds a connect to a backend. Zero means 1s: short,
	// because a dead backend must cost little before the retry.
	DialTimeout time.Duration
	// EjectFor is how long a backend is left out after a connect failure
	// (passive ejection). Zero means 10s; negative disables ejection
	// (failed requests are still retried on another backend).
	EjectFor time.Duration
	// Requests, when set, is told about every request the proxy answers:
	// its host (the route's primary host name, UnknownHost for no host),
	// status code and duration. Nil records nothing and costs nothing.
	Requests RequestMetrics
}

const (
	defaultDialTimeout = time.Second
	defaultEjectFor    = 10 * time.Second
)

// Proxy is the built-in reverse proxy driver. It serves the last table
// given to Apply; before the first Apply it answers every request with 404.
// All methods are safe for concurrent use. It starts no goroutines of its
// own; the ones net/http starts per request end with the request.
type Proxy struct {
	log      *slog.Logger
	clock    clock
	engine   engine
	counters errorCounters

	table atomic.Pointer[table]

	// requests is Options.Requests; unknown is its recorder for requests
	// no host answers. Both are nil when nothing is recorded.
	requests RequestMetrics
	unknown  RequestRecorder

	// mu serializes Apply and guards states, the per-backend state of
	// every address in the live table (see backendState), and liveHosts,
	// the primary names of the live table's hosts. Requests never take it.
	mu        sync.Mutex
	states    map[string]*backendState
	liveHosts map[string]struct{}
}

// New returns a Proxy with an empty table.
func New(opts Options) *Proxy {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("driver", "builtin")
	dialTimeout := opts.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = defaultDialTimeout
	}
	ejectFor := opts.EjectFor
	if ejectFor == 0 {
		ejectFor = defaultEjectFor
	}
	p := &Proxy{
		log:    logger,
		clock:  newClock(),
		states: map[string]*backendState{},
	}
	if opts.Requests != nil {
		p.requests = opts.Requests
		p.unknown = opts.Requests.Host(UnknownHost)
	}
	p.engine = newHTTPEngine(logger, p.clock, dialTimeout, ejectFor, &p.counters)
	p.table.Store(&table{hosts: map[string]*host{}})
	return p
}

// Name returns the driver's name, "builtin".
func (p *Proxy) Name() string { return "builtin" }

// Apply compiles t and makes it the live table in one atomic swap. Requests
// already in flight finish on the table they started with, and upgraded
// connections are left alone: Apply never waits for either. If t is invalid
// (an unparsable backend address, a host name claimed twice), Apply returns
// an error naming the host, route and backend, and the old table stays
// live. tcp routes are skipped with a warning: the built-in proxy serves
// HTTP only. t must be normalized (routing.Table.Normalize).
func (p *Proxy) Apply(ctx context.Context, t routing.Table) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("builtin: apply table: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := compile(t, p.states, p.engine)
	if err != nil {
		return fmt.Errorf("builtin: %w", err)
	}
	if p.requests != nil {
		// Recorders are looked up here, once per host per Apply, so that
		// a request only calls Observe on the one its host holds.
		for _, h := range c.table.hosts {
			if h.rec == nil {
				h.rec = p.requests.Host(h.name)
			}
		}
	}
	p.table.Store(c.table)
	// Addresses that left the table lose their state here; see backendState.
	p.states = c.states
	if p.requests != nil {
		p.retireHosts(c.table)
	}
	if len(c.tcpHosts) > 0 {
		p.log.Warn("tcp routes skipped: the builtin proxy serves HTTP only; use the haproxy driver for tcp",
			"hosts", c.tcpHosts)
	}
	p.log.Debug("table applied", "hosts", len(t.Hosts), "backends", len(c.states))
	return nil
}

// ServeHTTP routes r by its Host header and path and forwards it to a
// backend of the matching route. It answers itself, with a short plain-text
// body and an X-Interlock-Error header, when it cannot: 404 for an unknown
// host or a path no route covers, 503 when the route has no live backend,
// 502 when every backend it tried failed. With Options.Requests set, every
// answer is recorded under its host.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var start time.Time
	if p.requests != nil {
		start = time.Now()
	}
	h, rt := p.table.Load().match(r.Host, r.URL.Path)
	if code := p.answer(w, r, h, rt); code != 0 {
		if p.requests != nil {
			p.observe(h, code, start)
		}
		return
	}
	// TLS seam: h.tls (TLS.Only redirects) is acted on here once the TLS
	// issue lands; until then every host is served over plain HTTP.
	if p.requests != nil {
		p.forwardObserved(w, r, h, rt, start)
		return
	}
	rt.forward.ServeHTTP(w, r)
}

// answer writes the proxy's own answer when r cannot be forwarded (no host,
// no route, no backend) and returns its status code; 0 means rt forwards.
func (p *Proxy) answer(w http.ResponseWriter, r *http.Request, h *host, rt *route) int {
	switch {
	case h != nil && h.redirect != "":
		return redirect(w, r, h.redirect+r.URL.RequestURI())
	case h == nil:
		p.counters.noRoute.Add(1)
		writeError(w, http.StatusNotFound, kindNoRoute, fmt.Sprintf("interlock: no route for host %q", hostname(r.Host)))
		return http.StatusNotFound
	case rt == nil:
		p.counters.noRoute.Add(1)
		writeError(w, http.StatusNotFound, kindNoRoute, fmt.Sprintf("interlock: no route for host %q path %q", h.name, r.URL.Path))
		return http.StatusNotFound
	case len(rt.backends) == 0:
		p.counters.noLiveBackend.Add(1)
		writeError(w, http.StatusServiceUnavailable, kindNoLiveBackend, rt.noLive.Error())
		return http.StatusServiceUnavailable
	}
	return 0
}

// Close closes idle backend connections and every upgraded (WebSocket)
// connection, including ones upgraded after Close. Requests in flight are
// not interrupted. Close does not stop the proxy from serving; the caller
// owns the listener and shuts its http.Server down first.
func (p *Proxy) Close() error {
	if err := p.engine.close(); err != nil {
		return fmt.Errorf("builtin: close: %w", err)
	}
	return nil
}

// redirect answers with a permanent redirect to target: 301 for GET and
// HEAD, 308 otherwise, so that a client replays other methods with their
// body instead of turning them into a GET.
func redirect(w http.ResponseWriter, r *http.Request, target string) int {
	code := http.StatusPermanentRedirect
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		code = http.StatusMovedPermanently
	}
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	return code
}
