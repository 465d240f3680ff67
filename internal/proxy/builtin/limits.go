package builtin

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Limits and timeouts of the data plane. The client side (how long a
// client may take to send its headers, its body, the next request; how
// large a request head may be) belongs to the caller's http.Server:
// ReadHeaderTimeout, ReadTimeout, IdleTimeout and MaxHeaderBytes, which
// net/http enforces itself (431 for a head that is too large). The
// backend side and the body limit are the proxy's (Options), and a route
// may override them (routing.Limits, routelimits.go).

// kindBodyTooLarge is the X-Interlock-Error of a 413.
const kindBodyTooLarge = "body-too-large"

// bodyLimit is the body limit of a request matched to rt (nil: no route),
// 0 for none, and the text of its 413: the route's (its override, else
// Options.MaxBodyBytes), or the proxy's when no route matched.
func (p *Proxy) bodyLimit(rt *route) (int64, string) {
	if rt != nil {
		return rt.maxBody, rt.bodyTooLargeMsg
	}
	return p.maxBody, p.bodyTooLargeMsg
}

// limitBody caps r's body at limit (more than 0): reading past it fails
// with an *http.MaxBytesError, which the route's error handler answers
// with 413 (serveErrorFunc). w must be the server's own ResponseWriter, so
// that net/http closes the connection after the answer instead of reading
// the rest of the body. A body whose Content-Length is already too large
// is left alone: bodyTooLarge answers it before anything is read.
func limitBody(w http.ResponseWriter, r *http.Request, limit int64) {
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength <= limit {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
}

// bodyTooLarge answers a request whose declared body is over limit (more
// than 0) with 413 and msg, before a backend is asked, and closes the
// connection afterwards; 0 when the body may go on.
func bodyTooLarge(w http.ResponseWriter, r *http.Request, limit int64, msg string) int {
	if r.ContentLength <= limit {
		return 0
	}
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, kindBodyTooLarge, msg)
	return http.StatusRequestEntityTooLarge
}

// isBodyTooLarge reports whether err comes from a body read past the limit.
func isBodyTooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

func bodyTooLargeMessage(limit int64) string {
	return "interlock: request body larger than " + strconv.FormatInt(limit, 10) + " bytes"
}

// applyBackendTimeouts sets the transports' backend timeouts (Options):
// the wait for response headers (zero: none) and how long an idle
// connection is kept (zero: idleConnTimeout). Routes that override them
// get transports of their own (routelimits.go).
func (e *httpEngine) applyBackendTimeouts(responseHeader, idle time.Duration) {
	if idle <= 0 {
		idle = idleConnTimeout
	}
	e.responseHeader, e.idle = responseHeader, idle
	for _, t := range []*http.Transport{e.plain, e.tlsVerify, e.tlsInsecure} {
		t.ResponseHeaderTimeout = responseHeader
		t.IdleConnTimeout = idle
	}
}
