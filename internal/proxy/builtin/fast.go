package builtin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// The fasthttp engine of the plain HTTP listener (DESIGN.md, "The built-in
// data plane"; --builtin-engine fasthttp, the default). net/http's per-request
// goroutines, channel handoffs and allocations cost the built-in proxy most
// of its CPU; fasthttp serves a keep-alive connection on one goroutine and
// reuses every request and response object.
//
// The fast path covers what a proxy mostly does: a plain HTTP/1.1 request,
// without Upgrade, whose target is a plain origin-form path and whose body
// (if any) is already read, matched to a route of a plain-HTTP host (or a
// TLS host that is not ssl_only or passthrough) with live plain-HTTP
// backends. It is forwarded with one fasthttp.HostClient per backend
// address and route timeouts, with the same backend picking, ejection,
// retries, forwarded headers, body limit, sticky cookie, strip path,
// request metrics and access log as the net/http engine. Everything else
// (404, 503, redirects, ssl_only, ACME challenges, WebSocket and other
// upgrades, TLS backends, HTTP/1.0, escaped paths, streamed bodies) is
// handed to ServeHTTP through fasthttpadaptor, so those answers are the
// net/http engine's own.

// FastOptions are the client-side limits of a FastServer: the same values
// the net/http listener takes from its http.Server.
type FastOptions struct {
	// ReadHeaderTimeout bounds the request line and headers (and a PROXY
	// header); zero: ReadTimeout.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the whole request, body included; zero: none
	// beyond ReadHeaderTimeout, which then covers the body too (fasthttp
	// has one read deadline per request, see README.md).
	ReadTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection; zero: ReadTimeout, as in net/http.
	IdleTimeout time.Duration
	// MaxHeaderBytes is the request head limit (431 past it); zero means
	// http.DefaultMaxHeaderBytes. fasthttp reads the head into a buffer
	// allocated per connection, so the limit is capped at fastMaxHeadBuffer.
	MaxHeaderBytes int
}

const (
	// fastMaxHeadBuffer caps the per-connection read buffer, which is
	// also the request head limit (nginx: 4 x 8 KiB by default). Every
	// open client connection holds one, idle ones too: fasthttp keeps it
	// when request bodies stream.
	fastMaxHeadBuffer = 32 << 10
	// fastResponseBuffer is the read buffer of a backend answer, so its
	// head limit (nginx: proxy_buffer_size, 4 or 8 KiB; HAProxy:
	// tune.bufsize, 16 KiB). A request holds one while its answer streams,
	// an event stream for as long as it lasts: 10,000 of them hold 160 MiB.
	fastResponseBuffer = 16 << 10
	// fastBufferedBody is the largest body read before the handler runs;
	// longer ones stream and go to the net/http handler.
	fastBufferedBody = 1 << 20
	// fastPooledBody is the largest request body buffer a pooled relay
	// keeps.
	fastPooledBody = 64 << 10
	// fastNoDeadline stands for "no read deadline" where fasthttp only
	// takes a positive one.
	fastNoDeadline = 10 * 365 * 24 * time.Hour
	// fastMaxConns is the HostClient connection cap: net/http has none per
	// backend, and fasthttp answers ErrNoFreeConns past its cap.
	fastMaxConns = 1 << 16
)

// FastServer serves a Proxy on plain-HTTP listeners with fasthttp. Make it
// with Proxy.NewFastServer, run Serve, stop it with Shutdown.
type FastServer struct {
	p        *Proxy
	srv      *fasthttp.Server
	fallback fasthttp.RequestHandler
	// headerTimeout and readTimeout bound the PROXY header (proxyproto.go).
	headerTimeout, readTimeout time.Duration
	shutdown                   atomic.Bool
}

// NewFastServer returns a FastServer for p with opts.
func (p *Proxy) NewFastServer(opts FastOptions) *FastServer {
	s := &FastServer{p: p, headerTimeout: opts.ReadHeaderTimeout, readTimeout: opts.ReadTimeout}
	// The adaptor gives the request the fasthttp RequestCtx as its
	// context, which fasthttp reuses once the handler returns while
	// net/http's transport goroutines may still ask it for values: the
	// request gets a context of its own instead.
	adapted := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := r.Context().Value(streamedBodyKey{}).(*streamedBody); ok {
			r.Body, r.ContentLength = b, b.length
		}
		p.ServeHTTP(w, r.WithContext(context.Background()))
	}))
	s.fallback = func(ctx *fasthttp.RequestCtx) {
		n := ctx.Request.Header.ContentLength()
		stream := ctx.Request.BodyStream()
		if stream == nil || (n != -1 && n <= 0) { // -1: chunked, -2: no body
			adapted(ctx)
			return
		}
		// The adaptor would read the body whole into memory first
		// (ConvertRequest): ServeHTTP streams it from the connection
		// instead. ResetBody takes the stream off the request without
		// ending it; the server still drains what is left afterwards.
		b := &streamedBody{r: stream, conn: ctx.Conn(), length: max(int64(n), -1)}
		ctx.Request.ResetBody()
		ctx.SetUserValue(streamedBodyKey{}, b)
		adapted(ctx)
		b.finish()
	}
	limit := opts.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	first := opts.ReadHeaderTimeout
	if first <= 0 {
		first = opts.ReadTimeout
	}
	s.srv = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.serveError,
		// net/http's slack beyond MaxHeaderBytes, as far as the cap goes.
		ReadBufferSize:     min(limit+4096, fastMaxHeadBuffer),
		ReadTimeout:        first,
		IdleTimeout:        opts.IdleTimeout,
		MaxRequestBodySize: fastBufferedBody,
		StreamRequestBody:  true,
		// A proxy forwards a form as sent: fasthttp would parse it (into
		// temporary files past 16 MiB) and write it out anew.
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{p.log},
	}
	if first > 0 && opts.ReadTimeout != first {
		// After the head, the body gets ReadTimeout (none: a far deadline).
		body := opts.ReadTimeout
		if body <= 0 {
			body = fastNoDeadline
		}
		s.srv.HeaderReceived = func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: body}
		}
	}
	return s
}

// Serve serves on ln until Shutdown, then returns http.ErrServerClosed.
// With Options.ProxyProtocolTrusted, ln's connections may start with a
// PROXY header, as for Serve.
func (s *FastServer) Serve(ln net.Listener) error {
	ln = s.p.proxyProtocolListener(ln, &http.Server{ReadHeaderTimeout: s.headerTimeout, ReadTimeout: s.readTimeout})
	err := s.srv.Serve(ln)
	if err == nil || s.shutdown.Load() {
		return http.ErrServerClosed
	}
	return err
}

// Shutdown closes the listeners and idle connections and waits, until ctx
// ends, for the requests in flight; each connection closes after its
// current answer. Upgraded connections are not waited for: Proxy.Close
// ends them.
func (s *FastServer) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	return s.srv.ShutdownWithContext(ctx)
}

// fastLogger sends fasthttp's own messages to the proxy's log at Debug.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
	}
}

// serveError answers a request fasthttp could not read, as net/http does:
// 431 for a head over the limit, 400 for the rest, and closes the
// connection. A read timeout gets fasthttp's 408 (net/http closes the
// connection without an answer).
func (s *FastServer) serveError(ctx *fasthttp.RequestCtx, err error) {
	ctx.SetConnectionClose()
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.SetStatusCode(http.StatusRequestHeaderFieldsTooLarge)
		ctx.SetBodyString("431 Request Header Fields Too Large")
	case errors.As(err, &ne) && ne.Timeout():
		ctx.SetStatusCode(http.StatusRequestTimeout)
	default:
		ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
		ctx.SetStatusCode(http.StatusBadRequest)
		ctx.SetBodyString("400 Bad Request")
	}
}

var acmePrefixBytes = []byte(acmeChallengePrefix)

// handle is the fasthttp handler: the fast path, or ServeHTTP.
func (s *FastServer) handle(ctx *fasthttp.RequestCtx) {
	p := s.p
	hdr := &ctx.Request.Header
	uri := hdr.RequestURI()
	pathLen, ok := simpleTarget(uri)
	// ContentLength is -1 for a chunked body (-2: none).
	if n := hdr.ContentLength(); !ok || !hdr.IsHTTP11() || n == -1 || n > fastBufferedBody || len(hdr.Peek("Upgrade")) > 0 {
		s.fallback(ctx)
		return
	}
	path := uri[:pathLen]
	t := p.table.Load()
	h, rt := t.match(b2s(hdr.Host()), b2s(path))
	if h == nil || h.redirect != "" || rt == nil || len(rt.backends) == 0 || rt.tls != nil ||
		(h.tls != nil && (h.tls.Only || h.tls.Passthrough)) ||
		(p.certSource != nil && bytes.HasPrefix(path, acmePrefixBytes)) {
		s.fallback(ctx)
		return
	}
	s.forward(ctx, h, rt, uri, pathLen)
}

// simpleTarget reports whether uri is an origin-form target whose path
// needs neither decoding nor escaping nor cleaning, so that the raw bytes
// are net/http's URL.Path and what ReverseProxy would send; and the
// length of the path (up to the '?').
func simpleTarget(uri []byte) (int, bool) {
	if len(uri) == 0 || uri[0] != '/' {
		return 0, false
	}
	n := len(uri)
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		n = i
	}
	for i := 0; i < n; i++ {
		c := uri[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '/':
			if i+1 < n && (uri[i+1] == '/' || uri[i+1] == '.') {
				return 0, false // "//", "/." and "/..": fasthttp might clean them
			}
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '!' || c == '$' || c == '&' || c == '\'' ||
			c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=' || c == ':' || c == '@':
		default:
			return 0, false
		}
	}
	for i := n; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return 0, false
		}
	}
	return n, true
}

// b2s views b as a string without copying; the string must not outlive b.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// forward serves a request matched to rt on the fast path.
func (s *FastServer) forward(ctx *fasthttp.RequestCtx, h *host, rt *route, uri []byte, pathLen int) {
	p := s.p
	req := &ctx.Request
	hdr := &req.Header
	timed := p.requests != nil || p.access != nil
	var start time.Time
	if timed {
		start = time.Now()
	}
	var ipBuf [48]byte
	client := appendRemoteIP(ipBuf[:0], ctx.RemoteAddr())

	// handle sent chunked bodies and those over fastBufferedBody to
	// ServeHTTP: this one has a length, and is read before it is sent, so
	// that every attempt sends all of it.
	n := hdr.ContentLength()
	if limit, msg := p.bodyLimit(rt); limit > 0 && int64(n) > limit {
		ctx.SetConnectionClose()
		s.answer(ctx, h, rt, client, uri, pathLen, start, "", http.StatusRequestEntityTooLarge, kindBodyTooLarge, msg)
		return
	}

	rl := acquireRelay()
	if stream := req.BodyStream(); stream != nil && n > 0 {
		rl.reqBody = slices.Grow(rl.reqBody[:0], n)[:n]
		if _, err := io.ReadFull(stream, rl.reqBody); err != nil {
			// The client went away or stalled past its read timeout
			// before its body was in: nothing was sent to a backend.
			releaseRelay(rl)
			p.counters.clientCanceled.Add(1)
			ctx.SetConnectionClose()
			s.answer(ctx, h, rt, client, uri, pathLen, start, "", http.StatusBadRequest, kindIncompleteBody, "interlock: the request body ended before its Content-Length")
			return
		}
		req.SetBodyRaw(rl.reqBody)
	}
	// The target as sent, for the log and errors: strip and the client's
	// Write rewrite the header's in place.
	rl.uri = append(rl.uri[:0], uri...)
	rl.pathLen = pathLen
	rl.client = append(rl.client[:0], client...)
	uri, client = rl.uri, rl.client
	clientClose := hdr.ConnectionClose()
	removeHopByHop(hdr)
	setForwardedFast(hdr, client, p.forwardedTrusted.containsAddr(ctx.RemoteAddr()))
	req.UseHostHeader = true // the client's Host, as sent
	if rt.strip {
		rl.target = appendStripped(rl.target[:0], uri, pathLen, rt.path)
		req.SetRequestURIBytes(rl.target)
	}

	var source string
	if rt.balance == routing.Source {
		source = b2s(client)
	}
	clients := p.fast.clientsFor(p, rt)
	br := fasthttp.AcquireResponse()
	var triedBuf [8]int
	tried := triedBuf[:0]
	var lastErr error
	var last *backend
	pinned := rt.pinnedFast(hdr)
	for range rt.backends {
		now := p.clock.now()
		i := rt.nextAttempt(now, source, tried, pinned)
		if i < 0 {
			break
		}
		tried = append(tried, i)
		b := &rt.backends[i]
		b.state.begin()
		hc := clients[i]
		err := hc.client.Do(req, br)
		if err == nil {
			if hc.headerTimeout > 0 {
				clearReadDeadline(br)
			}
			rl.start(s, ctx, br, b, h, rt, start)
			relayHeaders(&br.Header, &ctx.Response.Header)
			if rt.sticky != "" && i != pinned {
				rt.pinFast(&ctx.Response.Header, b)
			}
			if clientClose {
				ctx.SetConnectionClose()
			}
			ctx.Response.SetBodyStream(rl, br.Header.ContentLength())
			return
		}
		b.state.end()
		lastErr, last = err, b
		b.state.failures.Add(1)
		var de *dialError
		dialFailed := errors.As(err, &de) || errors.Is(err, errStaleConn) // nothing was sent
		if !dialFailed && (!idempotentFast(hdr) || !connectionLostFast(err)) {
			break
		}
		if b.state.eject(now, p.ejectFor) {
			what := "backend ejected after a connect failure"
			if !dialFailed {
				what = "backend ejected after its connection failed before an answer"
			}
			p.log.Warn(what, "host", rt.host, "path", rt.path, "backend", b.addr, "name", b.name,
				"for", p.ejectFor, "error", err)
		}
		// The body is in memory (rl.reqBody): every retry sends it again.
	}
	fasthttp.ReleaseResponse(br)
	defer releaseRelay(rl) // uri and client are its
	if clientClose {
		ctx.SetConnectionClose()
	}
	if last == nil {
		p.counters.noLiveBackend.Add(1)
		s.answer(ctx, h, rt, client, uri, pathLen, start, "", http.StatusServiceUnavailable, kindNoLiveBackend, rt.noLive.Error())
		return
	}
	p.counters.backendFailure.Add(1)
	p.log.Warn("backend request failed", "host", string(hdr.Host()), "path", string(uri[:pathLen]), "backend", last.addr, "error", lastErr)
	if isResponseHeaderTimeout(lastErr) || errors.Is(lastErr, fasthttp.ErrTimeout) {
		s.answer(ctx, h, rt, client, uri, pathLen, start, last.addr, http.StatusGatewayTimeout, kindBackendTimeout, "interlock: backend timed out")
		return
	}
	s.answer(ctx, h, rt, client, uri, pathLen, start, last.addr, http.StatusBadGateway, kindBackendFailure, "interlock: backend unavailable")
}

// answer writes the proxy's own answer on the fast path (writeError's
// headers and body), records it and logs it. uri is the target as sent.
func (s *FastServer) answer(ctx *fasthttp.RequestCtx, h *host, rt *route, client, uri []byte, pathLen int, start time.Time, backendAddr string, code int, kind, msg string) {
	p := s.p
	rh := &ctx.Response.Header
	rh.SetContentType("text/plain; charset=utf-8")
	rh.Set("X-Content-Type-Options", "nosniff")
	rh.Set("Cache-Control", "no-store")
	rh.Set(errorHeader, kind)
	ctx.SetStatusCode(code)
	ctx.Response.ResetBody()
	ctx.Response.AppendBodyString(msg)
	ctx.Response.AppendBodyString("\n")
	if p.requests != nil {
		h.rec.Observe(code, time.Since(start))
	}
	if p.access != nil {
		s.logLine(ctx, start, client, uri, pathLen, code, int64(len(msg)+1), rt, backendAddr)
	}
}

// logLine writes the access log line of a fast-path request.
func (s *FastServer) logLine(ctx *fasthttp.RequestCtx, start time.Time, client, uri []byte, pathLen int, code int, n int64, rt *route, backendAddr string) {
	hdr := &ctx.Request.Header
	f := logFields{
		start: start, took: time.Since(start),
		client: b2s(client), method: b2s(hdr.Method()), uri: b2s(uri), proto: b2s(hdr.Protocol()),
		host: b2s(hdr.Host()), path: b2s(uri[:pathLen]),
		status: code, bytes: n, route: rt, backend: backendAddr,
	}
	if pathLen < len(uri) {
		f.query = b2s(uri[pathLen+1:])
	}
	s.p.access.writeLine(&f)
}

// appendRemoteIP appends the IP of a connection's peer, as clientIP gives
// it for RemoteAddr, without allocating for TCP peers.
func appendRemoteIP(b []byte, a net.Addr) []byte {
	if tcp, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			ip = ip.Unmap()
			if tcp.Zone != "" {
				ip = ip.WithZone(tcp.Zone)
			}
			return ip.AppendTo(b)
		}
	}
	if a == nil {
		return b
	}
	return append(b, clientIP(a.String())...)
}

// appendStripped appends the target uri with the route prefix removed from
// its path (stripPrefix), query kept.
func appendStripped(b, uri []byte, pathLen int, prefix string) []byte {
	path := b2s(uri[:pathLen])
	b = append(b, stripPrefix(path, prefix)...)
	return append(b, uri[pathLen:]...)
}

// hopHeaders are the hop-by-hop headers ReverseProxy removes (RFC 9110,
// 7.6.1), besides the ones Connection names.
var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"}

// forEachToken calls f with each comma-separated token of the header
// value v, trimmed, skipping empty ones: the headers a Connection header
// names. v is copied first, since f may delete the header v points into.
func forEachToken(v []byte, f func([]byte)) {
	for c := append([]byte(nil), v...); len(c) > 0; {
		var tok []byte
		if i := bytes.IndexByte(c, ','); i >= 0 {
			tok, c = c[:i], c[i+1:]
		} else {
			tok, c = c, nil
		}
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			f(tok)
		}
	}
}

// removeHopByHop drops the request's hop-by-hop headers and those its
// Connection header names. Expect goes too: the body is already read.
func removeHopByHop(hdr *fasthttp.RequestHeader) {
	forEachToken(hdr.Peek("Connection"), hdr.DelBytes)
	for _, k := range hopHeaders {
		hdr.Del(k)
	}
	hdr.ResetConnectionClose()
}

// setForwardedFast sets X-Forwarded-For, -Host and -Proto as forwarder's
// rewrite does: for this hop only, unless the peer is trusted
// (keepForwarded).
func setForwardedFast(hdr *fasthttp.RequestHeader, client []byte, trusted bool) {
	if trusted {
		if prior := hdr.PeekAll("X-Forwarded-For"); len(prior) > 0 {
			var b []byte
			for _, v := range prior {
				b = append(append(b, v...), ", "...)
			}
			hdr.SetBytesV("X-Forwarded-For", append(b, client...))
		} else {
			hdr.SetBytesV("X-Forwarded-For", client)
		}
		if len(hdr.Peek("X-Forwarded-Host")) == 0 {
			hdr.SetBytesV("X-Forwarded-Host", hdr.Host())
		}
		if len(hdr.Peek("X-Forwarded-Proto")) == 0 {
			hdr.Set("X-Forwarded-Proto", "http")
		}
		return
	}
	hdr.Del("Forwarded")
	hdr.SetBytesV("X-Forwarded-For", client)
	hdr.SetBytesV("X-Forwarded-Host", hdr.Host())
	hdr.Set("X-Forwarded-Proto", "http")
}

// relayHeaders copies the backend's response header into the client's,
// without the hop-by-hop headers, and keeps the client connection open
// whatever the backend said about its own (ReverseProxy does the same).
func relayHeaders(from, to *fasthttp.ResponseHeader) {
	from.SetNoDefaultContentType(true) // none sent, none relayed
	from.CopyTo(to)
	forEachToken(to.Peek("Connection"), to.DelBytes)
	for _, k := range [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Upgrade"} {
		to.Del(k)
	}
	to.ResetConnectionClose()
}

// pinnedFast is pinned for a fasthttp request.
func (rt *route) pinnedFast(hdr *fasthttp.RequestHeader) int {
	if rt.sticky == "" {
		return -1
	}
	v := hdr.Cookie(rt.sticky)
	if len(v) == 0 {
		return -1
	}
	return rt.backendByCookie(b2s(v))
}

// pinFast is pin for a fasthttp response.
func (rt *route) pinFast(h *fasthttp.ResponseHeader, b *backend) {
	h.Add("Set-Cookie", rt.pinCookie(b))
}

// idempotentFast is idempotent for a fasthttp request.
func idempotentFast(hdr *fasthttp.RequestHeader) bool {
	switch b2s(hdr.Method()) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return len(hdr.Peek("Idempotency-Key")) > 0 || len(hdr.Peek("X-Idempotency-Key")) > 0
}

// connectionLostFast is connectionLost with fasthttp's own word for a
// connection closed before the first response byte.
func connectionLostFast(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || connectionLost(err)
}

// fastRelay is the body of a forwarded response: it streams the backend's
// body to the client and, once the server is done with it (Close), gives
// the backend connection back, ends the in-flight count, and records and
// logs the request. Pooled: a request allocates none.
type fastRelay struct {
	s       *FastServer
	br      *fasthttp.Response
	body    io.Reader
	state   *backendState
	h       *host
	rt      *route
	backend string
	ctx     *fasthttp.RequestCtx
	t0      time.Time
	status  int
	n       int64
	closed  bool

	// The access log's copies of the target and the client (the request's
	// own are rewritten), and the stripped target.
	uri, client, target []byte
	pathLen             int
	// reqBody holds the request body while it is sent.
	reqBody []byte
}

var relays = sync.Pool{New: func() any { return new(fastRelay) }}

func acquireRelay() *fastRelay { return relays.Get().(*fastRelay) }

func releaseRelay(r *fastRelay) {
	r.s, r.br, r.body, r.state, r.h, r.rt, r.ctx = nil, nil, nil, nil, nil, nil, nil
	r.closed, r.n, r.status = false, 0, 0
	if cap(r.reqBody) > fastPooledBody {
		r.reqBody = nil // a pooled relay keeps small buffers only
	}
	relays.Put(r)
}

func (r *fastRelay) start(s *FastServer, ctx *fasthttp.RequestCtx, br *fasthttp.Response, b *backend, h *host, rt *route, t0 time.Time) {
	r.s, r.ctx, r.br, r.body, r.state, r.h, r.rt, r.t0 = s, ctx, br, br.BodyStream(), b.state, h, rt, t0
	r.backend = b.addr
	r.status = br.StatusCode()
}

func (r *fastRelay) Read(p []byte) (int, error) {
	if r.body == nil {
		return 0, io.EOF
	}
	n, err := r.body.Read(p)
	r.n += int64(n)
	return n, err
}

// Close is called by the server once the response is written (or given
// up): the backend connection goes back to its pool when the body was read
// through, and is closed otherwise.
func (r *fastRelay) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.br.CloseBodyStream()
	fasthttp.ReleaseResponse(r.br)
	r.state.end()
	p := r.s.p
	if p.requests != nil {
		r.h.rec.Observe(r.status, time.Since(r.t0))
	}
	if p.access != nil && r.ctx != nil {
		r.s.logLine(r.ctx, r.t0, r.client, r.uri, r.pathLen, r.status, r.n, r.rt, r.backend)
	}
	releaseRelay(r)
	return err
}

// fastClients holds the HostClients of the fast path, one per backend
// address and effective timeouts, so that their kept-alive connections
// survive table swaps; Apply drops the ones no route uses any more. The
// zero value is ready to use.
type fastClients struct {
	mu      sync.Mutex
	clients map[fastKey]*fastClient
}

type fastKey struct {
	addr string
	transportKey
}

// fastClient is one backend's HostClient; headerTimeout is its
// ReadTimeout, which bounds only the response header (clearReadDeadline).
type fastClient struct {
	client        *fasthttp.HostClient
	headerTimeout time.Duration
}

// fastRoute caches a route's clients, aligned with its backends.
type fastRoute struct{ clients []*fastClient }

// clientsFor returns rt's clients, made on the route's first fast request.
func (fc *fastClients) clientsFor(p *Proxy, rt *route) []*fastClient {
	if fr := rt.fast.Load(); fr != nil {
		return fr.clients
	}
	e := p.engine.(*httpEngine)
	k, _ := e.keyOf(rt)
	fr := &fastRoute{clients: make([]*fastClient, len(rt.backends))}
	fc.mu.Lock()
	if fc.clients == nil {
		fc.clients = map[fastKey]*fastClient{}
	}
	for i, b := range rt.backends {
		key := fastKey{addr: b.addr, transportKey: k}
		c := fc.clients[key]
		if c == nil {
			c = newFastClient(b.addr, k)
			fc.clients[key] = c
		}
		fr.clients[i] = c
	}
	fc.mu.Unlock()
	rt.fast.CompareAndSwap(nil, fr)
	return rt.fast.Load().clients
}

func newFastClient(addr string, k transportKey) *fastClient {
	d := newDialer(k.connect)
	fc := &fastClient{headerTimeout: k.responseHeader}
	fc.client = &fasthttp.HostClient{
		Addr: addr,
		Dial: func(addr string) (net.Conn, error) {
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				return nil, err
			}
			fcn := &fastConn{Conn: c}
			fcn.local.c = fcn
			return fcn, nil
		},
		MaxConns:            fastMaxConns,
		MaxIdleConnDuration: k.idle,
		// The response head must fit in the read buffer (fasthttp's
		// default, 4 KiB, refused a CSP header or a few cookies with a
		// 502).
		ReadBufferSize:                fastResponseBuffer,
		ReadTimeout:                   k.responseHeader,
		ConnPoolStrategy:              fasthttp.LIFO,
		NoDefaultUserAgentHeader:      true,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		StreamResponseBody:            true,
		// One retry on the same backend for a kept-alive connection the
		// backend had closed (net/http's transport does the same);
		// everything else is the retry loop's.
		MaxIdemponentCallAttempts: 2,
		RetryIfErr: func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
			if errors.Is(err, errStaleConn) {
				// Nothing was sent. The connections that idled
				// longer are likely closed too: the next attempt
				// dials.
				fc.client.CloseIdleConnections()
				return false, true
			}
			return false, errors.Is(err, fasthttp.ErrConnectionClosed) && idempotentFast(&req.Header)
		},
	}
	return fc
}

// retain drops the clients no route of t uses and closes their idle
// connections. Apply calls it under Proxy.mu.
func (fc *fastClients) retain(p *Proxy, t *table) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.clients) == 0 {
		return
	}
	e := p.engine.(*httpEngine)
	used := map[fastKey]bool{}
	for _, h := range t.hosts {
		for _, rt := range h.routes {
			k, _ := e.keyOf(rt)
			for _, b := range rt.backends {
				used[fastKey{addr: b.addr, transportKey: k}] = true
			}
		}
	}
	for k, c := range fc.clients {
		if !used[k] {
			c.client.CloseIdleConnections()
			delete(fc.clients, k)
		}
	}
}

// closeIdle closes every client's idle connections.
func (fc *fastClients) closeIdle() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, c := range fc.clients {
		c.client.CloseIdleConnections()
	}
}

// fastConn is a backend connection whose LocalAddr leads back to it, so
// that the fast path can find the connection a response came on
// (fasthttp keeps the address in the Response) and lift the read deadline
// fasthttp set for the response header before the body is relayed.
type fastConn struct {
	net.Conn
	local connAddr
	// checkNext is set by a read of a response, at lastRead: the next
	// request's first Write checks that the backend has not closed the
	// connection meanwhile (peerClosed).
	checkNext bool
	lastRead  time.Time
}

// fastStaleAfter is how long a kept-alive backend connection may idle
// before a request's first Write checks that the backend still has it
// open. Backends close idle connections after their own keep-alive
// timeout (gunicorn 2 s, Node.js 5 s), and fasthttp's pool notices only
// when a request fails on one: a POST there was a 502, since it may not be
// sent twice, about every other time.
const fastStaleAfter = 100 * time.Millisecond

// errStaleConn is a pooled backend connection the backend had closed,
// found before anything was written: any request may go again on a new
// one.
var errStaleConn = errors.New("kept-alive backend connection closed by the backend while idle")

type connAddr struct {
	net.Addr
	c *fastConn
}

func (c *fastConn) LocalAddr() net.Addr {
	if c.local.Addr == nil {
		c.local.Addr = c.Conn.LocalAddr()
	}
	return &c.local
}

// Read and Write hide, from fasthttp, that the kernel's cut of a backend
// connection after unackedTimeout (TCP_USER_TIMEOUT: its node is gone) is
// a timeout: fasthttp turns every error with Timeout() into ErrTimeout,
// which is a slow backend's 504, never retried. As lostConnError it is a
// lost connection, and an idempotent request goes to another backend, as
// on the net/http engine (DESIGN.md invariant 7).
func (c *fastConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.checkNext, c.lastRead = true, time.Now()
	}
	return n, lostConn(err)
}

// Write also refuses, with errStaleConn and before writing anything, the
// first write of a request on a connection that idled past fastStaleAfter
// and that the backend has closed meanwhile.
func (c *fastConn) Write(p []byte) (int, error) {
	if c.checkNext {
		c.checkNext = false
		if time.Since(c.lastRead) > fastStaleAfter && peerClosed(c.Conn) {
			return 0, errStaleConn
		}
	}
	n, err := c.Conn.Write(p)
	return n, lostConn(err)
}

func lostConn(err error) error {
	if err != nil && errors.Is(err, syscall.ETIMEDOUT) {
		return lostConnError{err}
	}
	return err
}

// lostConnError is a backend connection the kernel gave up on; it has no
// Timeout method, on purpose (fastConn.Read).
type lostConnError struct{ err error }

func (e lostConnError) Error() string {
	return "backend connection lost: nothing acknowledged for " + unackedTimeout.String() + ": " + e.err.Error()
}

func (e lostConnError) Unwrap() error { return e.err }

// clearReadDeadline lifts the response-header timeout of the connection
// br came on: a slow body is not a slow backend (net/http's
// ResponseHeaderTimeout bounds the header only).
func clearReadDeadline(br *fasthttp.Response) {
	if a, ok := br.LocalAddr().(*connAddr); ok {
		_ = a.c.Conn.SetReadDeadline(time.Time{})
	}
}

// streamedBodyKey is the user value under which the fallback hands
// ServeHTTP a request body still on the connection.
type streamedBodyKey struct{}

// streamedBody is a request body ServeHTTP reads from the client's
// connection, while the fasthttp handler waits. Once that handler returns,
// the server drains what is left of the body itself, so no read of the
// transport may run then: finish waits for one in progress (cutting it
// short with the read deadline when it is blocked on the client, which
// then loses its connection) and refuses the later ones, as net/http's
// server does with a body after its handler.
type streamedBody struct {
	mu     sync.Mutex
	r      io.Reader
	conn   net.Conn
	closed bool
	length int64 // the declared length, -1 for chunked
}

func (b *streamedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.r.Read(p)
}

func (b *streamedBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *streamedBody) finish() {
	if !b.mu.TryLock() {
		_ = b.conn.SetReadDeadline(time.Now())
		b.mu.Lock()
	}
	b.closed = true
	b.mu.Unlock()
}
