package haproxy

import (
	"fmt"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// A route's overrides of the backend timeouts and the body limit
// (routing.Limits), in HAProxy's terms, with the same mapping as the
// global settings (edge.go), in the route's own backend:
//
//	ConnectTimeout        timeout connect
//	ResponseHeaderTimeout timeout server: HAProxy has no timeout for the
//	                      headers alone, this is server-side inactivity,
//	                      headers or body; Unlimited is the 60s the
//	                      defaults have at the global 0. Websocket
//	                      endpoints keep their 1h tunnel timeout.
//	IdleTimeout           pool-purge-delay on the backend's servers (also
//	                      those added over the Runtime API)
//	MaxBodyBytes          the 413 rule, by the announced length
//
// Every HTTP backend carries its own 413 rule (Backend.MaxBodyBytes, the
// route's limit or Edge.MaxBodyBytes), not the frontends: a frontend rule
// runs before the route is known, so it would refuse a body a route
// allows.

// BackendTimeouts are a backend's own timeouts, as HAProxy time words; ""
// keeps the defaults section's.
type BackendTimeouts struct {
	Connect, Server string
}

// haproxyServerDefault is the defaults' timeout server at the global 0:
// what an Unlimited override renders.
const haproxyServerDefault = "60s"

// applyLimits sets be's timeouts, body limit and pool-purge-delay from r's
// overrides over the global settings e. tcp says be is not an HTTP
// backend: it gets the connect timeout only.
func applyLimits(be *Backend, r routing.Route, e Edge, tcp bool) error {
	where := fmt.Sprintf("host %s route %s", be.Host, be.Route)
	var l routing.Limits
	if r.Limits != nil {
		l = *r.Limits
	}
	idle := e.BackendIdleTimeout
	var t BackendTimeouts
	for _, d := range []struct {
		name      string
		v, global time.Duration
		unlimited bool
		out       *string
	}{
		{"connect timeout", l.ConnectTimeout, e.BackendConnectTimeout, false, &t.Connect},
		{"response header timeout", l.ResponseHeaderTimeout, e.BackendResponseHeaderTimeout, true, &t.Server},
		{"idle timeout", l.IdleTimeout, 0, false, nil},
	} {
		switch {
		case d.v == 0 || d.v == d.global:
		case d.unlimited && d.v == routing.Unlimited:
			if d.global != 0 {
				*d.out = haproxyServerDefault
			}
		case d.v < time.Millisecond:
			return fmt.Errorf("%s: %s override %v: want at least 1ms", where, d.name, d.v)
		case d.out == nil:
			idle = d.v
		default:
			*d.out = haproxyDuration(d.v)
		}
	}
	if tcp {
		t.Server = ""
	}
	if t != (BackendTimeouts{}) {
		be.Timeouts = &t
	}
	if tcp {
		return nil
	}
	switch n := l.MaxBodyBytes; {
	case n == 0:
		be.MaxBodyBytes = e.MaxBodyBytes
	case n == routing.Unlimited:
		be.MaxBodyBytes = 0
	case n < 0:
		return fmt.Errorf("%s: body limit override %d is negative", where, n)
	default:
		be.MaxBodyBytes = n
	}
	if idle > 0 {
		// The same words reach servers added over the Runtime API.
		purge, _ := ms(idle)
		be.ServerOptions = append(be.ServerOptions, "pool-purge-delay", purge)
	}
	return nil
}
