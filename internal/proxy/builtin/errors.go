package builtin

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// Values of the X-Interlock-Error response header, one per kind of answer
// the proxy gives itself instead of a backend.
const (
	errorHeader        = "X-Interlock-Error"
	kindNoRoute        = "no-route"
	kindNoLiveBackend  = "no-live-backend"
	kindBackendFailure = "backend-unavailable"
	kindBackendTimeout = "backend-timeout"
	kindIncompleteBody = "incomplete-body"
)

// noLiveError is returned by a route's RoundTrip when no backend is live.
// Each route builds its own once, at compile time.
type noLiveError struct{ host, path string }

func (e *noLiveError) Error() string {
	return fmt.Sprintf("interlock: no live backend for host %q path %q", e.host, e.path)
}

// backendError is the last failure of a request that no backend could serve.
type backendError struct {
	addr string
	err  error
}

func (e *backendError) Error() string { return "backend " + e.addr + ": " + e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// errorCounters count the answers the proxy gave itself, by kind. The zero
// value is ready to use.
type errorCounters struct {
	noRoute        atomic.Uint64
	noLiveBackend  atomic.Uint64
	backendFailure atomic.Uint64
	clientCanceled atomic.Uint64
}

// serveErrorFunc is every route's ReverseProxy.ErrorHandler. It counts the
// error, logs a backend failure once per request (retries have already been
// made), and answers with a short plain-text body.
func (e *httpEngine) serveErrorFunc(w http.ResponseWriter, r *http.Request, err error) {
	var noLive *noLiveError
	switch {
	case errors.As(err, &noLive):
		e.counters.noLiveBackend.Add(1)
		writeError(w, http.StatusServiceUnavailable, kindNoLiveBackend, noLive.Error())
	case isBodyTooLarge(err):
		// The body grew past Options.MaxBodyBytes while it was sent
		// (limits.go); net/http closes the connection after this.
		var mb *http.MaxBytesError
		errors.As(err, &mb)
		writeError(w, http.StatusRequestEntityTooLarge, kindBodyTooLarge, bodyTooLargeMessage(mb.Limit))
	case errors.As(err, new(*incompleteBodyError)):
		// Read before any backend was tried (bufferReplayable): the
		// client stopped, or stalled past its read timeout.
		e.counters.clientCanceled.Add(1)
		writeError(w, http.StatusBadRequest, kindIncompleteBody, "interlock: the request body ended before its Content-Length")
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer and the
		// backend is not at fault.
		e.counters.clientCanceled.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	default:
		e.counters.backendFailure.Add(1)
		addr := r.URL.Host
		var be *backendError
		if errors.As(err, &be) {
			addr, err = be.addr, be.err
		}
		e.log.Warn("backend request failed", "host", r.Host, "path", r.URL.Path, "backend", addr, "error", err)
		if isResponseHeaderTimeout(err) {
			// Options.ResponseHeaderTimeout: the backend took the
			// request but did not answer in time.
			writeError(w, http.StatusGatewayTimeout, kindBackendTimeout, "interlock: backend timed out")
			return
		}
		writeError(w, http.StatusBadGateway, kindBackendFailure, "interlock: backend unavailable")
	}
}

// writeError answers a request the proxy could not forward. The body is
// plain text that no browser will sniff into HTML: it may quote the
// client's Host header.
func writeError(w http.ResponseWriter, code int, kind, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set(errorHeader, kind)
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// isResponseHeaderTimeout reports whether err is a backend that connected
// but sent no response headers within the transport's
// ResponseHeaderTimeout, as opposed to a connect timeout (a dialError).
func isResponseHeaderTimeout(err error) bool {
	var de *dialError
	if errors.As(err, &de) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
