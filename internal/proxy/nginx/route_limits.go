package nginx

import (
	"fmt"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// A route's overrides of the backend timeouts and the body limit
// (routing.Limits), in nginx's terms, with the same mapping as the global
// settings (edge.go):
//
//	ConnectTimeout        proxy_connect_timeout in the route's locations
//	ResponseHeaderTimeout proxy_read_timeout in the route's locations:
//	                      nginx has no timeout for the headers alone, this
//	                      is the longest pause between two reads of the
//	                      response, headers or body; Unlimited is nginx's
//	                      own 60s, as the global 0 is. Websocket endpoints
//	                      keep their 1h.
//	IdleTimeout           keepalive_timeout in the route's upstream
//	MaxBodyBytes          client_max_body_size in the route's locations,
//	                      with an error_page that gives the built-in
//	                      proxy's 413 for the route's own limit; Unlimited
//	                      is client_max_body_size 0
//
// The SNI passthrough stream servers are shared by every passthrough host,
// so a passthrough route keeps the global connect timeout.

// LocationLimits are a location's overrides, each "" to inherit the
// http{} setting (View.Edge). Every string is a checked nginx word.
type LocationLimits struct {
	// ConnectTimeout and ReadTimeout are proxy_connect_timeout and
	// proxy_read_timeout.
	ConnectTimeout, ReadTimeout string
	// ClientMaxBodySize is client_max_body_size ("0": no limit).
	ClientMaxBodySize string
	// BodyTooLarge is the limit in bytes the location's error_page 413
	// names (@interlock_body_too_large_N, in the server's BodyLimits); 0
	// for none.
	BodyTooLarge int64
}

// nginxReadDefault is proxy_read_timeout when nginx has its own: what an
// Unlimited override renders.
const nginxReadDefault = "60s"

// routeLimits turns r's overrides into a location's and its upstream's
// keepalive_timeout; nil and "" where r keeps the global settings e.
func routeLimits(host string, r routing.Route, e Edge) (*LocationLimits, string, error) {
	l := r.Limits
	if l == nil {
		return nil, "", nil
	}
	where := fmt.Sprintf("host %s route %s", host, r.Path)
	var lv LocationLimits
	var keepalive string
	for _, d := range []struct {
		name      string
		v, global time.Duration
		unlimited bool
		out       *string
	}{
		{"connect timeout", l.ConnectTimeout, e.BackendConnectTimeout, false, &lv.ConnectTimeout},
		{"response header timeout", l.ResponseHeaderTimeout, e.BackendResponseHeaderTimeout, true, &lv.ReadTimeout},
		{"idle timeout", l.IdleTimeout, e.BackendIdleTimeout, false, &keepalive},
	} {
		switch {
		case d.v == 0 || d.v == d.global:
		case d.unlimited && d.v == routing.Unlimited:
			if d.global != 0 {
				*d.out = nginxReadDefault
			}
		case d.v < time.Millisecond:
			return nil, "", fmt.Errorf("%s: %s override %v: want at least 1ms", where, d.name, d.v)
		default:
			*d.out = nginxDuration(d.v)
		}
	}
	switch n := l.MaxBodyBytes; {
	case n == 0 || n == e.MaxBodyBytes:
	case n == routing.Unlimited:
		if e.MaxBodyBytes != 0 {
			lv.ClientMaxBodySize = "0"
		}
	case n < 0:
		return nil, "", fmt.Errorf("%s: body limit override %d is negative", where, n)
	default:
		lv.ClientMaxBodySize, lv.BodyTooLarge = nginxSize(n), n
	}
	if lv == (LocationLimits{}) {
		return nil, keepalive, nil
	}
	return &lv, keepalive, nil
}

// bodyLimits lists the distinct BodyTooLarge of locs, in order of first
// use: the named locations the server needs.
func bodyLimits(locs []Location) []int64 {
	var out []int64
	seen := map[int64]bool{}
	for _, l := range locs {
		if l.Limits != nil && l.Limits.BodyTooLarge > 0 && !seen[l.Limits.BodyTooLarge] {
			seen[l.Limits.BodyTooLarge] = true
			out = append(out, l.Limits.BodyTooLarge)
		}
	}
	return out
}
