package builtin

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// limitedRoute is routeOf with overrides.
func limitedRoute(path string, l routing.Limits, addrs ...string) routing.Route {
	r := routeOf(path, addrs...)
	r.Limits = &l
	return r
}

// TestRouteBodyLimit: a route's body limit overrides MaxBodyBytes for that
// route only: 413 there while another route of the same host takes the
// same body, with a length or chunked; Unlimited lifts the global limit.
func TestRouteBodyLimit(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	}))
	t.Cleanup(be.Close)
	tests := []struct {
		name   string
		global int64
		limits routing.Limits // of route /limited; "/" has none
		size   int
		// want are the statuses of /limited and / for a body of size.
		wantLimited, wantOther int
		wantMsg                string // of the 413, "" for none
	}{
		{name: "route limit, no global", limits: routing.Limits{MaxBodyBytes: 1000}, size: 2000,
			wantLimited: 413, wantOther: 200, wantMsg: "interlock: request body larger than 1000 bytes\n"},
		{name: "route limit below the global", global: 1 << 20, limits: routing.Limits{MaxBodyBytes: 1000}, size: 2000,
			wantLimited: 413, wantOther: 200, wantMsg: "interlock: request body larger than 1000 bytes\n"},
		{name: "route limit above the global", global: 1000, limits: routing.Limits{MaxBodyBytes: 8000}, size: 4000,
			wantLimited: 200, wantOther: 413, wantMsg: "interlock: request body larger than 1000 bytes\n"},
		{name: "unlimited route", global: 1000, limits: routing.Limits{MaxBodyBytes: routing.Unlimited}, size: 100000,
			wantLimited: 200, wantOther: 413, wantMsg: "interlock: request body larger than 1000 bytes\n"},
		{name: "timeouts only keep the global limit", global: 1000, limits: routing.Limits{IdleTimeout: time.Minute}, size: 2000,
			wantLimited: 413, wantOther: 413, wantMsg: "interlock: request body larger than 1000 bytes\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProxy(t, Options{MaxBodyBytes: tc.global}, nil)
			mustApply(t, p, tableOf(hostOf("app.example",
				limitedRoute("/limited", tc.limits, addr(be)),
				routeOf("/", addr(be)))))
			a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})
			client := &http.Client{Timeout: 10 * time.Second}
			for _, chunked := range []bool{false, true} {
				for _, c := range []struct {
					path string
					want int
				}{{"/limited/up", tc.wantLimited}, {"/up", tc.wantOther}} {
					var body io.Reader = strings.NewReader(strings.Repeat("x", tc.size))
					length := int64(tc.size)
					if chunked {
						body, length = io.MultiReader(body), -1
					}
					req, _ := http.NewRequest(http.MethodPost, "http://"+a+c.path, body)
					req.Host, req.ContentLength = "app.example", length
					res, err := client.Do(req)
					if err != nil {
						t.Fatalf("POST %s (chunked %v): %v", c.path, chunked, err)
					}
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != c.want {
						t.Errorf("POST %s, %d bytes (chunked %v): %d %q, want %d", c.path, tc.size, chunked, res.StatusCode, b, c.want)
						continue
					}
					switch {
					case c.want == 413 && (res.Header.Get("X-Interlock-Error") != "body-too-large" || (!chunked && string(b) != tc.wantMsg)):
						t.Errorf("POST %s (chunked %v): 413 with %q %q, want body-too-large %q", c.path, chunked, res.Header.Get("X-Interlock-Error"), b, tc.wantMsg)
					case c.want == 200 && string(b) != fmt.Sprintf("got %d", tc.size):
						t.Errorf("POST %s (chunked %v): backend %q, want the whole body", c.path, chunked, b)
					}
				}
			}
		})
	}
}

// TestRouteResponseHeaderTimeout: a backend that sends its headers after
// 2s gets 504 backend-timeout on a route whose override is 300ms, and
// answers on a route with the global setting (none); an Unlimited
// override lifts a global limit for its route only.
func TestRouteResponseHeaderTimeout(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
			io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	tests := []struct {
		name                   string
		global                 time.Duration
		limits                 routing.Limits
		wantLimited, wantOther int
	}{
		{name: "route override, no global", limits: routing.Limits{ResponseHeaderTimeout: 300 * time.Millisecond},
			wantLimited: 504, wantOther: 200},
		{name: "unlimited route under a global limit", global: 300 * time.Millisecond, limits: routing.Limits{ResponseHeaderTimeout: routing.Unlimited},
			wantLimited: 200, wantOther: 504},
		{name: "longer route override", global: 300 * time.Millisecond, limits: routing.Limits{ResponseHeaderTimeout: 20 * time.Second},
			wantLimited: 200, wantOther: 504},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newTestProxy(t, Options{ResponseHeaderTimeout: tc.global}, nil)
			mustApply(t, p, tableOf(hostOf("app.example",
				limitedRoute("/limited", tc.limits, addr(slow)),
				routeOf("/", addr(slow)))))
			srv := serve(t, p)
			client := &http.Client{Timeout: 30 * time.Second}
			for _, c := range []struct {
				path string
				want int
			}{{"/limited", tc.wantLimited}, {"/", tc.wantOther}} {
				res := do(t, client, srv, http.MethodGet, "app.example", c.path, nil, nil)
				if res.status != c.want {
					t.Errorf("GET %s: %d %q, want %d", c.path, res.status, res.body, c.want)
				}
				if c.want == 504 && res.header.Get("X-Interlock-Error") != "backend-timeout" {
					t.Errorf("GET %s: X-Interlock-Error %q, want backend-timeout", c.path, res.header.Get("X-Interlock-Error"))
				}
			}
		})
	}
}

// TestRouteTransports: routes with timeout overrides get transports of
// their own with those timeouts (the dial timeout in the dialer, which
// passthrough uses too), shared by equal overrides and kept across
// Applies while used; routes without, and overrides equal to the
// defaults, keep the shared ones.
func TestRouteTransports(t *testing.T) {
	p := newTestProxy(t, Options{DialTimeout: 2 * time.Second, ResponseHeaderTimeout: 5 * time.Second}, nil)
	e := p.engine.(*httpEngine)
	fast := routing.Limits{ConnectTimeout: 250 * time.Millisecond, IdleTimeout: 3 * time.Second}
	apply := func(hosts ...routing.Host) *table {
		t.Helper()
		mustApply(t, p, tableOf(hosts...))
		return p.table.Load()
	}
	base := func(tb *table, host, path string) http.RoundTripper {
		t.Helper()
		h := tb.hosts[host]
		for _, rt := range h.routes {
			if rt.path == path {
				return rt.forward.(*forwarder).base
			}
		}
		t.Fatalf("no route %s%s", host, path)
		return nil
	}
	tb := apply(
		hostOf("a.example", limitedRoute("/fast", fast, "127.0.0.1:1"), routeOf("/", "127.0.0.1:1")),
		hostOf("b.example", limitedRoute("/", fast, "127.0.0.1:2")),
		hostOf("c.example", limitedRoute("/", routing.Limits{ConnectTimeout: 2 * time.Second, MaxBodyBytes: 10}, "127.0.0.1:3")),
		hostOf("d.example", limitedRoute("/", routing.Limits{ResponseHeaderTimeout: routing.Unlimited}, "127.0.0.1:4")),
	)
	own := base(tb, "a.example", "/fast").(*http.Transport)
	if own == e.plain || base(tb, "b.example", "/") != own {
		t.Errorf("equal overrides do not share one transport of their own")
	}
	if own.IdleConnTimeout != 3*time.Second || own.ResponseHeaderTimeout != 5*time.Second {
		t.Errorf("override transport: idle %v, response header %v", own.IdleConnTimeout, own.ResponseHeaderTimeout)
	}
	if rt := tb.hosts["a.example"].routes[0]; rt.dialTimeout != 250*time.Millisecond {
		t.Errorf("route dial timeout %v, want 250ms", rt.dialTimeout)
	}
	if base(tb, "a.example", "/") != e.plain || base(tb, "c.example", "/") != e.plain {
		t.Errorf("routes without timeout overrides left the shared transport")
	}
	if tr := base(tb, "d.example", "/").(*http.Transport); tr == e.plain || tr.ResponseHeaderTimeout != 0 {
		t.Errorf("unlimited response header override: %v", tr.ResponseHeaderTimeout)
	}
	if n := len(e.routeTransports); n != 2 {
		t.Errorf("%d route transports, want 2", n)
	}

	// Still used: the same transport after another Apply. Unused: gone.
	tb = apply(hostOf("b.example", limitedRoute("/", fast, "127.0.0.1:2")))
	if base(tb, "b.example", "/") != own {
		t.Error("a route transport was not kept across an Apply")
	}
	if n := len(e.routeTransports); n != 1 {
		t.Errorf("%d route transports after the others' routes left, want 1", n)
	}
	apply(hostOf("b.example", routeOf("/", "127.0.0.1:2")))
	if n := len(e.routeTransports); n != 0 {
		t.Errorf("%d route transports without overrides, want 0", n)
	}
}

// TestRouteLimitsRefused: a negative override (not Unlimited) is an
// Apply error naming the route; the old table stays.
func TestRouteLimitsRefused(t *testing.T) {
	p := newTestProxy(t, Options{}, nil)
	for _, l := range []routing.Limits{
		{ConnectTimeout: -time.Second}, {ConnectTimeout: routing.Unlimited}, {IdleTimeout: routing.Unlimited},
		{ResponseHeaderTimeout: -2}, {MaxBodyBytes: -5},
	} {
		err := p.Apply(t.Context(), tableOf(hostOf("app.example", limitedRoute("/", l, "127.0.0.1:1"))))
		if err == nil || !strings.Contains(err.Error(), `host "app.example" route "/"`) {
			t.Errorf("Limits %+v: Apply error %v, want one naming the route", l, err)
		}
	}
}
