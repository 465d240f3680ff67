package builtin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
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

	// The HTTPS side (tls.go, certs.go). None of it matters until the
	// caller serves TLSConfig on a listener (ServeTLS).

	// CertDir is the directory routing.TLS.CertFile and KeyFile are
	// relative to; a path that leaves it (by "..", as an absolute path or
	// through a symlink) is refused. Empty: no host certificate can be
	// loaded, so every TLS host gets the default certificate.
	CertDir string
	// TLSProfile is the server-side TLS profile (versions, TLS 1.2 cipher
	// suites, curves). The zero Profile means tlsconf.Default.
	TLSProfile tlsconf.Profile
	// HTTPSPort is the port the redirect of a TLS.Only host names. Zero
	// means the port of the listener given to ServeTLS; 443 is never
	// written out.
	HTTPSPort int
	// HSTSMaxAge, when positive, adds "Strict-Transport-Security:
	// max-age=N" (whole seconds) to every answer over TLS for a TLS.Only
	// host. Zero: no header.
	HSTSMaxAge time.Duration
	// BackendRootCAs verifies backends with BackendTLS.Verify. Nil means
	// the system roots.
	BackendRootCAs *x509.CertPool
	// Certificates, when set, supplies the certificates of ACME hosts
	// (routing.TLS.ACME) and answers their ACME challenges (acme.go;
	// internal/acme implements it). Nil: ACME hosts get the default
	// certificate and are reported in CertProblems.
	Certificates CertSource

	// The edge: trusted client addresses, access log, backend timeouts,
	// body limit (proxyproto.go, forward.go, accesslog.go, limits.go).

	// ProxyProtocolTrusted lists the networks whose connections to the
	// listeners given to Serve and ServeTLS may start with a PROXY
	// protocol v1 or v2 header; anyone else's that does is closed. Empty:
	// PROXY protocol off.
	ProxyProtocolTrusted []netip.Prefix
	// ForwardedTrusted lists the networks whose requests keep their
	// X-Forwarded-For (the peer is appended), X-Forwarded-Host,
	// X-Forwarded-Proto and Forwarded headers. The peer is RemoteAddr,
	// which a PROXY header sets. Empty: they are always replaced.
	ForwardedTrusted []netip.Prefix
	// AccessLog, when set, gets one line per request. The caller opens
	// it (OpenAccessLog), reopens and closes it. Nil logs nothing and
	// costs nothing.
	AccessLog *AccessLog
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers once the request is sent (then 504). Zero: no limit.
	ResponseHeaderTimeout time.Duration
	// BackendIdleTimeout is how long an idle backend connection is kept.
	// Zero means 90s.
	BackendIdleTimeout time.Duration
	// MaxBodyBytes, when positive, bounds request bodies: 413 past it.
	MaxBodyBytes int64
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
	// dialTimeout and ejectFor are the engine's, for passthrough
	// connections.
	dialTimeout, ejectFor time.Duration

	// The edge (Options). ppLogged and ppSuppressed rate-limit the log of
	// refused PROXY headers (proxyproto.go).
	proxyTrusted    trustedNets
	access          *AccessLog
	maxBody         int64
	bodyTooLargeMsg string
	ppLogged        atomic.Int64
	ppSuppressed    atomic.Uint64

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

	// The HTTPS side. certDir is absolute (or empty); certCache, guarded
	// by mu, holds the certificate pairs the live table uses, keyed by
	// their resolved paths (see certs.go). defaultCert is the self-signed
	// certificate, made on first use. redirectPort is ":PORT" or "" (443)
	// for TLS.Only redirects; hsts is the header value or "".
	certDir   string
	profile   tlsconf.Profile
	certCache map[certKey]*certEntry
	// applied is the table of the last Apply, guarded by mu: RefreshCerts
	// loads its certificates again.
	applied routing.Table
	// forwardedTrusted are the peers whose forwarded headers are believed
	// (Options.ForwardedTrusted), here for the ssl_only redirect.
	forwardedTrusted trustedNets
	// rewriting maps hosts whose certificate files read as broken since a
	// poll to when it first saw that (certwatch.go), guarded by mu.
	rewriting    map[string]time.Time
	defaultCert  func() (*tls.Certificate, error)
	httpsPort    int
	redirectPort atomic.Pointer[string]
	hsts         string
	// certSource is Options.Certificates; acmeOff, guarded by mu, the
	// ACME names last warned about while it is nil (acme.go).
	certSource CertSource
	acmeOff    []string

	// fast holds the backend clients of FastServers (fast.go).
	fast fastClients
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
		log:         logger,
		clock:       newClock(),
		states:      map[string]*backendState{},
		profile:     opts.TLSProfile,
		certCache:   map[certKey]*certEntry{},
		rewriting:   map[string]time.Time{},
		defaultCert: sync.OnceValues(newDefaultCert),
		httpsPort:   opts.HTTPSPort,
		dialTimeout: dialTimeout,
		ejectFor:    ejectFor,
		certSource:  opts.Certificates,
	}
	if p.profile.Name == "" {
		p.profile, _ = tlsconf.Lookup(tlsconf.Default)
	}
	if opts.CertDir != "" {
		if abs, err := filepath.Abs(opts.CertDir); err == nil {
			p.certDir = abs
		} else {
			p.certDir = filepath.Clean(opts.CertDir)
		}
	}
	if secs := int64(opts.HSTSMaxAge / time.Second); secs > 0 {
		p.hsts = fmt.Sprintf("max-age=%d", secs)
	}
	p.setRedirectPort(opts.HTTPSPort)
	if opts.Requests != nil {
		p.requests = opts.Requests
		p.unknown = opts.Requests.Host(UnknownHost)
	}
	e := newHTTPEngine(logger, p.clock, dialTimeout, ejectFor, &p.counters, opts.BackendRootCAs)
	e.applyBackendTimeouts(opts.ResponseHeaderTimeout, opts.BackendIdleTimeout)
	e.trustForwarded = newTrustedNets(opts.ForwardedTrusted)
	p.forwardedTrusted = e.trustForwarded
	e.recordBackends = opts.AccessLog != nil
	p.engine = e
	p.proxyTrusted = newTrustedNets(opts.ProxyProtocolTrusted)
	p.access = opts.AccessLog
	if opts.MaxBodyBytes > 0 {
		p.maxBody, p.bodyTooLargeMsg = opts.MaxBodyBytes, bodyTooLargeMessage(opts.MaxBodyBytes)
	}
	p.table.Store(&table{hosts: map[string]*host{}, certs: &certSet{}})
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
//
// Apply also loads the certificates t's TLS hosts name (see certs.go),
// reading only files that changed since the last Apply, and publishes them
// with the table. A bad certificate is never an error: its host gets the
// default certificate, and CertProblems and the log say why.
func (p *Proxy) Apply(ctx context.Context, t routing.Table) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("builtin: apply table: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := compile(t, p.states, p.engine, routeDefaults{maxBody: p.maxBody, dialTimeout: p.dialTimeout})
	if err != nil {
		return fmt.Errorf("builtin: %w", err)
	}
	// Certificates are read here, once per Apply and only when their files
	// changed, never per handshake; a bad one costs only its own host
	// (the default certificate) and is reported, never an error.
	var cache map[certKey]*certEntry
	c.table.certs, cache = p.loadCerts(t, c.table)
	p.syncACME(c.table) // the ACME hosts' names to Options.Certificates (acme.go)
	if p.requests != nil {
		// Recorders are looked up here, once per host per Apply, so that
		// a request only calls Observe on the one its host holds.
		for _, h := range c.table.hosts {
			if h.rec == nil {
				h.rec = p.requests.Host(h.name)
			}
		}
	}
	prev := p.table.Load()
	p.table.Store(c.table)
	// Addresses that left the table lose their state here; see backendState.
	gone := false
	for addr := range p.states {
		if _, ok := c.states[addr]; !ok {
			gone = true
			break
		}
	}
	p.states = c.states
	if gone {
		p.engine.closeIdle()
	}
	p.engine.retain(c.table)
	p.fast.retain(p, c.table)
	p.certCache = cache
	p.applied = t
	p.logCertChanges(prev.certs, c.table.certs)
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
// answer is recorded under its host. It serves the plain and the TLS
// listener alike (tlsPolicy): a plain request to a TLS.Only host is
// redirected to HTTPS, and over TLS only hosts with TLS are served. With
// Options.MaxBodyBytes or the route's own limit (routing.Limits) a larger
// body gets 413 (limits.go); with Options.AccessLog every answer gets a
// line (accesslog.go).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The route is matched once, here: its body limit applies through the
	// server's own ResponseWriter (limitBody), and serve answers from the
	// same table.
	t := p.table.Load()
	h, rt := t.match(r.Host, r.URL.Path)
	if limit, _ := p.bodyLimit(rt); limit > 0 {
		limitBody(w, r, limit)
	}
	if p.access != nil {
		p.serveLogged(w, r, t, h, rt)
		return
	}
	p.serveMatched(w, r, nil, t, h, rt)
}

// serve is ServeHTTP without the body limit and the access log: it
// matches r in the live table and serves it.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, rec *accessRecord) {
	t := p.table.Load()
	h, rt := t.match(r.Host, r.URL.Path)
	p.serveMatched(w, r, rec, t, h, rt)
}

// serveMatched is ServeHTTP once the body is limited, with the table t and
// the host h and route rt matched in it; rec, the request's access log
// record (nil without an access log), is told the route.
func (p *Proxy) serveMatched(w http.ResponseWriter, r *http.Request, rec *accessRecord, t *table, h *host, rt *route) {
	var start time.Time
	if p.requests != nil {
		start = time.Now()
	}
	if rec != nil {
		rec.route = rt
	}
	if p.certSource != nil && r.TLS == nil && p.acmeChallenge(w, r, t) {
		// An ACME HTTP-01 challenge (acme.go): answered before any
		// routing and before the ssl_only redirect.
		if p.requests != nil {
			p.observe(h, http.StatusOK, start)
		}
		return
	}
	if h != nil && (h.tls != nil || r.TLS != nil) {
		// The HTTPS rules (tls.go): TLS.Only redirects plain requests,
		// HSTS, and no plain-HTTP host over TLS.
		if code := p.tlsPolicy(w, r, h); code != 0 {
			if p.requests != nil {
				p.observe(h, code, start)
			}
			return
		}
	}
	if code := p.answer(w, r, h, rt); code != 0 {
		if p.requests != nil {
			p.observe(h, code, start)
		}
		return
	}
	if limit, msg := p.bodyLimit(rt); limit > 0 {
		if code := bodyTooLarge(w, r, limit, msg); code != 0 {
			if p.requests != nil {
				p.observe(h, code, start)
			}
			return
		}
	}
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
	p.fast.closeIdle()
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
