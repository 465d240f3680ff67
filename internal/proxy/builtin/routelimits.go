package builtin

import (
	"fmt"
	"net/http"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// A route's overrides of the backend timeouts and the body limit
// (routing.Limits, the interlock.backend_*_timeout and max_body_bytes
// labels). The body limit is the route's own (route.maxBody, applied by
// ServeHTTP once the request is matched). The timeouts live in the
// http.Transport (dial timeout, ResponseHeaderTimeout, IdleConnTimeout),
// so a route that overrides them gets a transport of its own, shared by
// every route with the same effective timeouts and backend TLS mode, and
// kept across Applies as long as a route uses it: its idle connections
// survive table swaps like the shared ones do.

// setLimits takes tr's overrides into rt, over the proxy's defaults.
func (rt *route) setLimits(l *routing.Limits, def routeDefaults) error {
	rt.maxBody, rt.dialTimeout = def.maxBody, def.dialTimeout
	if l == nil {
		rt.setBodyMessage()
		return nil
	}
	for _, d := range []struct {
		name      string
		v         time.Duration
		unlimited bool // may be routing.Unlimited
	}{
		{"connect timeout", l.ConnectTimeout, false},
		{"response header timeout", l.ResponseHeaderTimeout, true},
		{"idle timeout", l.IdleTimeout, false},
	} {
		if d.v < 0 && !(d.unlimited && d.v == routing.Unlimited) {
			return fmt.Errorf("%s override %v is negative", d.name, d.v)
		}
	}
	switch n := l.MaxBodyBytes; {
	case n == routing.Unlimited:
		rt.maxBody = 0
	case n < 0:
		return fmt.Errorf("body limit override %d is negative", n)
	case n > 0:
		rt.maxBody = n
	}
	if l.ConnectTimeout > 0 {
		rt.dialTimeout = l.ConnectTimeout
	}
	rt.limits = *l
	rt.setBodyMessage()
	return nil
}

func (rt *route) setBodyMessage() {
	if rt.maxBody > 0 {
		rt.bodyTooLargeMsg = bodyTooLargeMessage(rt.maxBody)
	}
}

// backendMode is the kind of connection a route's backends take, one of
// the three shared transports.
type backendMode uint8

const (
	modePlain backendMode = iota
	modeTLSVerify
	modeTLSInsecure
)

// transportKey names a transport by what sets it apart: the backend mode
// and the effective timeouts.
type transportKey struct {
	mode                          backendMode
	connect, responseHeader, idle time.Duration
}

// modeOf is rt's backend mode.
func modeOf(rt *route) backendMode {
	switch {
	case rt.tls == nil:
		return modePlain
	case rt.tls.Verify:
		return modeTLSVerify
	}
	return modeTLSInsecure
}

// keyOf returns the transport key of rt, and false when rt uses the
// proxy's defaults (a shared transport).
func (e *httpEngine) keyOf(rt *route) (transportKey, bool) {
	k := transportKey{mode: modeOf(rt), connect: e.dialTimeout, responseHeader: e.responseHeader, idle: e.idle}
	l := rt.limits
	if l.ConnectTimeout > 0 {
		k.connect = l.ConnectTimeout
	}
	switch {
	case l.ResponseHeaderTimeout == routing.Unlimited:
		k.responseHeader = 0
	case l.ResponseHeaderTimeout > 0:
		k.responseHeader = l.ResponseHeaderTimeout
	}
	if l.IdleTimeout > 0 {
		k.idle = l.IdleTimeout
	}
	own := k.connect != e.dialTimeout || k.responseHeader != e.responseHeader || k.idle != e.idle
	return k, own
}

// transportFor returns the transport of rt's requests: a shared one, or
// the one of its overrides, made on first use. compile calls it (through
// forwarder) under Proxy.mu; routeMu guards the map against close.
func (e *httpEngine) transportFor(rt *route) *http.Transport {
	k, own := e.keyOf(rt)
	shared := [...]*http.Transport{modePlain: e.plain, modeTLSVerify: e.tlsVerify, modeTLSInsecure: e.tlsInsecure}[k.mode]
	if !own {
		return shared
	}
	e.routeMu.Lock()
	defer e.routeMu.Unlock()
	if t := e.routeTransports[k]; t != nil {
		return t
	}
	var tlsConf = shared.TLSClientConfig
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
	}
	t := newTransport(newDialer(k.connect), tlsConf)
	t.ResponseHeaderTimeout = k.responseHeader
	t.IdleConnTimeout = k.idle
	if e.routeTransports == nil {
		e.routeTransports = map[transportKey]*http.Transport{}
	}
	e.routeTransports[k] = t
	return t
}

// retain implements engine: the route transports no route of t uses are
// dropped, their idle connections closed. A request of an older table
// still on one finishes normally; its connection then idles out.
func (e *httpEngine) retain(t *table) {
	used := map[transportKey]bool{}
	for _, h := range t.hosts {
		for _, rt := range h.routes {
			if k, own := e.keyOf(rt); own {
				used[k] = true
			}
		}
	}
	e.routeMu.Lock()
	defer e.routeMu.Unlock()
	for k, tr := range e.routeTransports {
		if !used[k] {
			tr.CloseIdleConnections()
			delete(e.routeTransports, k)
		}
	}
}

// closeRouteIdle drops the idle connections of every route transport.
func (e *httpEngine) closeRouteIdle() {
	e.routeMu.Lock()
	defer e.routeMu.Unlock()
	for _, tr := range e.routeTransports {
		tr.CloseIdleConnections()
	}
}
