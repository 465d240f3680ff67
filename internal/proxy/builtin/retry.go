package builtin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

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
// A request is retried only when it cannot have reached the backend: the
// error is a dialError (no connection was ever made) and its body is empty,
// never read (the transport does not touch the body before it has a
// connection; see replayBody), or rewindable with GetBody. Under those
// conditions the method does not matter: nothing was sent, so replaying a
// POST is as safe as replaying a GET. Any other failure (a reset or timeout after the request went out) is
// returned as is. At most len(backends)-1 retries are made.
func (f *forwarder) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := f.route
	var client string
	if rt.balance == routing.Source {
		client = clientIP(req.RemoteAddr)
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
		i := -1
		if len(tried) == 0 && pinned >= 0 && rt.usable(pinned, now, tried) {
			i = pinned
		} else {
			i = rt.pick(now, client, tried)
		}
		if i < 0 {
			// Every untried backend is ejected. Ejection is a guess from
			// one failure, and the engine still lists these backends, so
			// try the one due back first rather than fail without asking
			// (a container whose process was not listening yet at its
			// first request would otherwise stay dark for EjectFor).
			if i = rt.pickSoonestBack(tried); i < 0 {
				break
			}
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
		if !errors.As(err, &de) || req.Context().Err() != nil {
			// Either the request may have reached the backend, or the
			// client gave up (its cancellation also ends a dial): the
			// backend is not to blame, and there is no one to retry for.
			break
		}
		if b.state.eject(now, f.engine.ejectFor) {
			f.engine.log.Warn("backend ejected after a connect failure",
				"host", rt.host, "path", rt.path, "backend", b.addr, "name", b.name,
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
