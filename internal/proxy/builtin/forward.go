package builtin

import (
	"crypto/tls"
	"crypto/x509"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// httpEngine is the net/http engine: one httputil.ReverseProxy per compiled
// route, sharing three transports (plain, TLS verified, TLS unverified), one
// buffer pool and one error handler. It has no goroutines of its own.
type httpEngine struct {
	log      *slog.Logger
	clock    clock
	ejectFor time.Duration
	counters *errorCounters

	plain       *http.Transport
	tlsVerify   *http.Transport
	tlsInsecure *http.Transport
	// dialTimeout, responseHeader and idle are the shared transports'
	// timeouts (Options); routes that override them get one of
	// routeTransports (routelimits.go), which routeMu guards.
	dialTimeout, responseHeader, idle time.Duration
	routeMu                           sync.Mutex
	routeTransports                   map[transportKey]*http.Transport

	buffers  *bufferPool
	errorLog *log.Logger
	// serveError is e.serveErrorFunc bound once, so building a route's
	// ReverseProxy does not allocate a method value per route.
	serveError func(http.ResponseWriter, *http.Request, error)

	tunnels tunnelSet

	// trustForwarded is Options.ForwardedTrusted: peers whose
	// X-Forwarded-*/Forwarded headers are kept (keepForwarded).
	// recordBackends makes RoundTrip tell the access log record which
	// backend it tried.
	trustForwarded trustedNets
	recordBackends bool
}

// roots verifies backends with BackendTLS.Verify; nil means the system roots.
func newHTTPEngine(logger *slog.Logger, c clock, dialTimeout, ejectFor time.Duration, counters *errorCounters, roots *x509.CertPool) *httpEngine {
	d := newDialer(dialTimeout)
	e := &httpEngine{
		log:      logger,
		clock:    c,
		ejectFor: ejectFor,
		counters: counters,
		// applyBackendTimeouts sets the other two.
		dialTimeout: dialTimeout,
		idle:        idleConnTimeout,
		plain:       newTransport(d, nil),
		// Verified: the chain against roots and the name against the
		// backend's address (an IP SAN), since the request URL names it.
		tlsVerify: newTransport(d, &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
		}),
		tlsInsecure: newTransport(d, &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The route asked for TLS without verification
			// (interlock.ssl_backend_tls_verify=false): backends with
			// self-signed certificates are the common case.
			InsecureSkipVerify: true, //nolint:gosec // chosen per route by the user
		}),
		buffers: &bufferPool{},
		// ReverseProxy logs what it cannot report otherwise, such as a
		// backend failing in the middle of a response body.
		errorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	e.serveError = e.serveErrorFunc
	return e
}

// forwarder implements engine.
func (e *httpEngine) forwarder(rt *route) http.Handler {
	f := &forwarder{route: rt, engine: e, scheme: "http", base: e.transportFor(rt)}
	if rt.tls != nil {
		f.scheme = "https"
	}
	f.proxy = httputil.ReverseProxy{
		Rewrite:      f.rewrite,
		Transport:    f,
		BufferPool:   e.buffers,
		ErrorHandler: e.serveError,
		ErrorLog:     e.errorLog,
	}
	return f
}

// close implements engine.
func (e *httpEngine) close() error {
	e.closeIdle()
	return e.tunnels.closeAll()
}

// closeIdle implements engine. The transports cannot drop one backend's
// connections alone; the others' are dialed again, once.
func (e *httpEngine) closeIdle() {
	e.plain.CloseIdleConnections()
	e.tlsVerify.CloseIdleConnections()
	e.tlsInsecure.CloseIdleConnections()
	e.closeRouteIdle()
}

// forwarder serves the requests of one route: its ReverseProxy rewrites the
// request, and the forwarder itself, as the proxy's Transport, picks the
// backend and retries (retry.go). Built once per route per Apply, so no
// request allocates a closure or a context value to find its route.
type forwarder struct {
	route  *route
	engine *httpEngine
	scheme string
	base   http.RoundTripper
	proxy  httputil.ReverseProxy
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A present but empty Content-Type keeps net/http from sniffing one
	// for an answer whose backend sent none: a proxy passes the
	// backend's headers as they are, as nginx and HAProxy do. The
	// backend's own, when it sends one, is added to it.
	if h := w.Header(); h["Content-Type"] == nil {
		h["Content-Type"] = nil
	}
	f.proxy.ServeHTTP(w, r)
}

// rewrite is the ReverseProxy's Rewrite. ReverseProxy has already dropped
// hop-by-hop headers and every incoming Forwarded/X-Forwarded-* header; the
// X-Forwarded-* set here therefore describe this hop only, unless the peer
// is trusted (Options.ForwardedTrusted, DESIGN.md invariant 8): then
// keepForwarded puts the incoming ones back.
func (f *forwarder) rewrite(pr *httputil.ProxyRequest) {
	rt := f.route
	pr.Out.URL.Scheme = f.scheme
	// The backend is chosen per attempt in RoundTrip; a valid placeholder
	// keeps the request well-formed until then.
	if len(rt.backends) > 0 {
		pr.Out.URL.Host = rt.backends[0].addr
	}
	if rt.strip {
		stripURLPath(pr.Out, rt.path)
	}
	if f.engine.trustForwarded.containsRemote(pr.In.RemoteAddr) {
		keepForwarded(pr)
	} else {
		pr.SetXForwarded()
	}
	// Backends see the name the client asked for, like nginx's
	// proxy_set_header Host $host: virtual hosting and absolute redirects
	// keep working behind the proxy.
	pr.Out.Host = pr.In.Host
}

// stripURLPath removes the route prefix from the request path. The escaped
// form (RawPath) is stripped too when it starts with the same prefix;
// otherwise (the prefix itself was escaped) it is dropped and Go re-escapes
// the stripped Path.
func stripURLPath(r *http.Request, prefix string) {
	u := r.URL
	u.Path = stripPrefix(u.Path, prefix)
	if u.RawPath != "" {
		if matchPrefix(u.RawPath, prefix) {
			u.RawPath = stripPrefix(u.RawPath, prefix)
		} else {
			u.RawPath = ""
		}
	}
}

// keepForwarded sets the forwarded headers of a request from a trusted peer:
// its X-Forwarded-For with the peer appended, its own X-Forwarded-Host and
// X-Forwarded-Proto when it sent them (this hop's otherwise), and its
// Forwarded as is (the proxy writes no Forwarded of its own).
func keepForwarded(pr *httputil.ProxyRequest) {
	in, out := pr.In.Header, pr.Out.Header
	if v := in["X-Forwarded-For"]; len(v) > 0 {
		out["X-Forwarded-For"] = v // SetXForwarded appends the peer to it
	}
	pr.SetXForwarded()
	for _, k := range [...]string{"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v := in[k]; len(v) > 0 {
			out[k] = v
		}
	}
}
