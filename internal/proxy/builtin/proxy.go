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

	// mu serializes Apply and guards states, the per-backend state of
	// every address in the live table (see backendState). Requests never
	// take it.
	mu     sync.Mutex
	states map[string]*backendState
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
	p.table.Store(c.table)
	// Addresses that left the table lose their state here; see backendState.
	p.states = c.states
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
// 502 when every backend it tried failed.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, rt := p.table.Load().match(r.Host, r.URL.Path)
	switch {
	case h == nil:
		p.counters.noRoute.Add(1)
		writeError(w, http.StatusNotFound, kindNoRoute, fmt.Sprintf("interlock: no route for host %q", hostname(r.Host)))
		return
	case rt == nil:
		p.counters.noRoute.Add(1)
		writeError(w, http.StatusNotFound, kindNoRoute, fmt.Sprintf("interlock: no route for host %q path %q", h.name, r.URL.Path))
		return
	case len(rt.backends) == 0:
		p.counters.noLiveBackend.Add(1)
		writeError(w, http.StatusServiceUnavailable, kindNoLiveBackend, rt.noLive.Error())
		return
	}
	// TLS seam: h.tls (TLS.Only redirects) is acted on here once the TLS
	// issue lands; until then every host is served over plain HTTP.
	rt.forward.ServeHTTP(w, r)
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
