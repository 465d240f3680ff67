package builtin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// RoundTrip makes f the Transport of its route's ReverseProxy: it picks a
// backend, sends the request through the base transport, and on a connect
// failure ejects that backend and tries another live one.
//
// Why here and not in the handler: the ReverseProxy has already built the
// outbound request once (headers, X-Forwarded-*), so a retry only changes
// URL.Host and costs no second rewrite, and the 1xx trace hooks the
// ReverseProxy installed stay attached. The route's candidate list is f's,
// so the request carries nothing extra in its context.
//
// A request is retried, on another backend, when it cannot have reached
// the backend, or when replaying it is harmless:
//
//   - the error is a dialError (no connection was ever made), whatever the
//     method: nothing was sent, so replaying a POST is as safe as
//     replaying a GET;
//   - the request is idempotent (GET, HEAD, OPTIONS, TRACE, or it carries
//     an Idempotency-Key) and the connection was lost before any response
//     header came (connectionLost): reset, closed, or cut by the kernel
//     because the backend acknowledged nothing for unackedTimeout (its
//     node is gone). This is DESIGN.md invariant 7: a dead backend costs
//     no idempotent request.
//
// Either way the body must be empty, never read (the transport does not
// touch the body before it has a connection; see replayBody), or
// rewindable with GetBody. A backend that did not answer in time
// (ResponseHeaderTimeout: slow, not gone) and a client that gave up are
// not retried. At most len(backends)-1 retries are made.
func (f *forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := f.route
	var client string
	if rt.balance == routing.Source {
		client = clientIP(req.RemoteAddr)
	}
	if err := bufferReplayable(req, len(rt.backends)); err != nil {
		return nil, err
	}
	body := trackBody(req)
	var rec *accessRecord
	if f.engine.recordBackends {
		rec = recordOf(req)
	}

	var triedBuf [8]int // stack space for the common case
	tried := triedBuf[:0]
	var lastErr error
	var last *backend
	pinned := rt.pinned(req)
	for range rt.backends {
		now := f.engine.clock.now()
		i := rt.nextAttempt(now, client, tried, pinned)
		if i < 0 {
			break
		}
		tried = append(tried, i)
		b := &rt.backends[i]
		req.URL.Host = b.addr
		if rec != nil {
			rec.backend = b.addr
		}
		b.state.begin()
		res, err := f.base.RoundTrip(req)
		if err == nil {
			if rt.sticky != "" && i != pinned {
				rt.pin(res, b)
			}
			body.finish()
			return f.engine.wrapResponse(req, res, b)
		}
		b.state.end()
		lastErr, last = err, b
		if isBodyTooLarge(err) {
			// The client's fault, not the backend's: 413, no retry.
			break
		}
		b.state.failures.Add(1)

		var de *dialError
		dialFailed := errors.As(err, &de)
		if req.Context().Err() != nil || (!dialFailed && (!idempotent(req) || !connectionLost(err))) {
			// The client gave up (its cancellation also ends a dial), or
			// the request may have done something at the backend: there
			// is no one to retry for, or it is not safe to.
			break
		}
		if b.state.eject(now, f.engine.ejectFor) {
			what := "backend ejected after a connect failure"
			if !dialFailed {
				what = "backend ejected after its connection failed before an answer"
			}
			f.engine.log.Warn(what, "host", rt.host, "path", rt.path, "backend", b.addr, "name", b.name,
				"for", f.engine.ejectFor, "error", err)
		}
		if !rewind(req, &body) {
			break
		}
	}
	body.finish()
	if last == nil {
		return nil, rt.noLive
	}
	return nil, &backendError{addr: last.addr, err: lastErr}
}

// connectionLost reports whether err is a backend connection that broke
// (closed, reset, unacknowledged until the kernel gave up, unreachable) as
// opposed to one that worked and said no: a TLS certificate the proxy
// does not trust, a malformed answer, or no answer in time from a backend
// that is alive (ResponseHeaderTimeout). Only the first is a reason to go
// to another backend.
//
// net.ErrClosed is the transport's own close of a connection its reader
// saw end while the request body was still being written ("readfrom ...
// use of closed network connection"): the backend hung up mid-request.
func connectionLost(err error) bool {
	for _, target := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, net.ErrClosed} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// idempotent reports whether req may be sent twice (RFC 9110 9.2.2), as
// net/http's own transport decides for its retries.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// wrapResponse ties the backend's in-flight count to the response body, so
// leastconn sees a request as busy until its body is fully relayed. An
// upgraded (101) connection becomes a tracked tunnel instead.
func (e *httpEngine) wrapResponse(req *http.Request, res *http.Response, b *backend) (*http.Response, error) {
	if res.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := res.Body.(io.ReadWriteCloser)
		if !ok || !equalFoldASCII(upgradeType(req.Header), upgradeType(res.Header)) {
			// ReverseProxy would refuse this response without closing
			// the connection; refuse it here and close it.
			res.Body.Close()
			b.state.end()
			return nil, &backendError{addr: b.addr, err: fmt.Errorf("switched to protocol %q, the client asked for %q", upgradeType(res.Header), upgradeType(req.Header))}
		}
		res.Body = e.tunnels.track(rwc, b.state)
		return res, nil
	}
	res.Body = &countedBody{ReadCloser: res.Body, state: b.state}
	return res, nil
}

// countedBody ends its backend's in-flight count once, on the first Close.
type countedBody struct {
	io.ReadCloser
	state  *backendState
	closed atomic.Bool
}

func (b *countedBody) Close() error {
	err := b.ReadCloser.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.state.end()
	}
	return err
}

// replayBody stands between the transport and a request body so that the
// request can be sent again after a connect failure. It records whether any
// byte was read, which decides whether a replay is safe, and it holds back
// the transport's Close until the retry loop is done with the body: the
// transport closes the body when a dial fails, and ReverseProxy's own body
// wrapper refuses every Read after a Close.
type replayBody struct {
	rc   io.ReadCloser
	read atomic.Bool

	mu           sync.Mutex
	final        bool // no more retries: Close goes through at once
	closePending bool // the transport closed the body before final
	closed       bool
	closeErr     error
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *replayBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.final {
		b.closePending = true
		return nil
	}
	return b.closeLocked()
}

func (b *replayBody) closeLocked() error {
	if !b.closed {
		b.closed = true
		b.closeErr = b.rc.Close()
	}
	return b.closeErr
}

// finish ends the retry loop's hold on the body: a Close the transport
// already made goes through now, later ones at once. finish on a nil body
// does nothing.
func (b *replayBody) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.final = true
	if b.closePending {
		b.closeLocked()
	}
}

// replayBuffered is the largest request body bufferReplayable reads into
// memory: the fasthttp engine's fastBufferedBody.
const replayBuffered = fastBufferedBody

// bufferReplayable reads the body of an idempotent request with a declared
// length of at most replayBuffered into memory and gives the request a
// GetBody, so that a retry after a lost connection sends all of it again,
// as the fasthttp engine does. A server's request body cannot be rewound
// otherwise, and such a request would not be retried once its body was
// sent. Nothing is read when there is no other backend to retry on.
func bufferReplayable(req *http.Request, backends int) error {
	if backends < 2 || req.GetBody != nil || req.ContentLength <= 0 || req.ContentLength > replayBuffered || !idempotent(req) {
		return nil
	}
	buf := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, buf)
	req.Body.Close()
	if err != nil {
		return &incompleteBodyError{err: err}
	}
	req.Body = io.NopCloser(bytes.NewReader(buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return nil
}

// incompleteBodyError is a client that did not send the body it declared.
type incompleteBodyError struct{ err error }

func (e *incompleteBodyError) Error() string {
	return "interlock: the request body ended before its Content-Length: " + e.err.Error()
}
func (e *incompleteBodyError) Unwrap() error { return e.err }

// trackBody wraps a non-empty request body in a replayBody and returns it;
// nil for an empty body.
func trackBody(req *http.Request) *replayBody {
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	b := &replayBody{rc: req.Body}
	req.Body = b
	return b
}

// rewind makes req ready to be sent again after a connect failure and
// reports whether it could: an empty body needs nothing, an unread one is
// sent again as is (its Close from the failed attempt is forgotten), and a
// read one is replaced from GetBody when the request has it.
func rewind(req *http.Request, body **replayBody) bool {
	b := *body
	if b == nil {
		return true
	}
	if !b.read.Load() {
		b.mu.Lock()
		b.closePending = false
		b.mu.Unlock()
		return true
	}
	if req.GetBody == nil {
		return false
	}
	fresh, err := req.GetBody()
	if err != nil {
		return false
	}
	b.finish()
	*body = &replayBody{rc: fresh}
	req.Body = *body
	return true
}

// clientIP returns the IP part of a RemoteAddr, without allocating; an
// address that does not split is used whole.
func clientIP(remoteAddr string) string {
	if ip, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return ip
	}
	return remoteAddr
}

// equalFoldASCII is strings.EqualFold restricted to ASCII, as ReverseProxy
// compares Upgrade tokens: "ſ" must not match "s".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// upgradeType returns the protocol an HTTP/1.1 header block asks to switch
// to, "" when it asks for none. It matches ReverseProxy's own test: the
// Upgrade header counts only when Connection lists the "upgrade" token.
func upgradeType(h http.Header) string {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if equalFoldASCII(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}
