package haproxy

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

func withLimits(r routing.Route, l routing.Limits) routing.Route { r.Limits = &l; return r }

// routeLimitGoldenCases are the golden cases of per-route overrides
// (TestGolden renders them, TestGoldenValid runs haproxy -c on them).
func routeLimitGoldenCases() []goldenCase {
	limited := func() routing.Table {
		api := withLimits(routing.Route{Path: "/api", Backends: be("10.0.0.2:80")}, routing.Limits{
			ConnectTimeout: 250 * time.Millisecond, ResponseHeaderTimeout: 5 * time.Second,
			IdleTimeout: 30 * time.Second, MaxBodyBytes: 1 << 10,
		})
		api.WebSocketPaths = []string{"/api/ws"}
		return table(
			routing.Host{Name: "app.example.com", Routes: []routing.Route{
				{Path: "/", Backends: be("10.0.0.1:80")},
				api,
				withLimits(routing.Route{Path: "/upload", Backends: be("10.0.0.3:80")}, routing.Limits{MaxBodyBytes: routing.Unlimited, ResponseHeaderTimeout: routing.Unlimited}),
			}},
			routing.Host{Name: "tcp.example.com", Routes: []routing.Route{
				withLimits(routing.Route{Path: "/", Protocol: routing.TCP, Backends: be("10.0.0.4:443")}, routing.Limits{ConnectTimeout: 3 * time.Second}),
			}},
		)
	}
	return []goldenCase{
		{name: "route_limits", table: limited()},
		{name: "route_limits_edge", table: limited(), settings: func(s *Settings) { s.Edge = goldenEdge() }},
	}
}

// slowBackend answers after delay (having read the body), or when the
// request is given up.
func slowBackend(t *testing.T, delay time.Duration) routing.Backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(delay):
			fmt.Fprintf(w, "slow %s %d", r.URL.Path, n)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return routing.Backend{Address: strings.TrimPrefix(srv.URL, "http://"), Name: "slow"}
}

// TestRouteLimits runs per-route overrides on the real HAProxy: a route's
// body limit gives its 413 while another route of the same host takes the
// same body (and the reverse); a route whose server timeout is shorter
// than its backend's delay gets 504, another route to the same backend
// waits and answers.
func TestRouteLimits(t *testing.T) {
	tests := []struct {
		name    string
		edge    Edge
		limited routing.Limits // of /limited; / keeps the globals
		size    int            // request body, 0: GET
		// the answers of /limited and /.
		wantLimited, wantOther int
		wantMsg                string
	}{
		{name: "route body limit", limited: routing.Limits{MaxBodyBytes: 1 << 10}, size: 4 << 10,
			wantLimited: 413, wantOther: 200, wantMsg: "interlock: request body larger than 1024 bytes"},
		{name: "route body limit under a global one", edge: Edge{MaxBodyBytes: 1 << 20}, limited: routing.Limits{MaxBodyBytes: 1 << 10}, size: 4 << 10,
			wantLimited: 413, wantOther: 200, wantMsg: "interlock: request body larger than 1024 bytes"},
		{name: "unlimited route under a global body limit", edge: Edge{MaxBodyBytes: 1 << 10}, limited: routing.Limits{MaxBodyBytes: routing.Unlimited}, size: 64 << 10,
			wantLimited: 200, wantOther: 413, wantMsg: "interlock: request body larger than 1024 bytes"},
		{name: "route response header timeout", limited: routing.Limits{ResponseHeaderTimeout: 300 * time.Millisecond},
			wantLimited: 504, wantOther: 200},
		{name: "longer route timeout under a global one", edge: Edge{BackendResponseHeaderTimeout: 300 * time.Millisecond},
			limited: routing.Limits{ResponseHeaderTimeout: 20 * time.Second}, wantLimited: 200, wantOther: 504},
		{name: "route connect and idle timeouts", limited: routing.Limits{ConnectTimeout: 300 * time.Millisecond, IdleTimeout: 5 * time.Second},
			wantLimited: 200, wantOther: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(o *Options) { o.Edge = tc.edge })
			delay := 10 * time.Millisecond
			if tc.size == 0 {
				delay = 2 * time.Second // past 300ms, well within 20s
			}
			b := slowBackend(t, delay)
			r.apply(t, table(routing.Host{Name: "web.test", Routes: []routing.Route{
				{Path: "/", Backends: []routing.Backend{b}},
				withLimits(routing.Route{Path: "/limited", Backends: []routing.Backend{b}}, tc.limited),
			}}))
			for _, c := range []struct {
				path string
				want int
			}{{"/limited/x", tc.wantLimited}, {"/x", tc.wantOther}} {
				req := edgeRequest{src: anyoneIP, url: "http://" + r.http + c.path, host: "web.test"}
				if tc.size > 0 {
					req.method, req.body = http.MethodPost, strings.Repeat("b", tc.size)
				}
				var got answer
				waitFor(t, 15*time.Second, c.path, func() error {
					var err error
					if got, err = req.do(); err != nil {
						return err
					}
					if got.code != c.want {
						return fmt.Errorf("got %d %q, want %d", got.code, got.body, c.want)
					}
					return nil
				})
				switch {
				case c.want == 413 && (got.header.Get("X-Interlock-Error") != "body-too-large" || !strings.Contains(got.body, tc.wantMsg)):
					t.Errorf("%s: 413 %q %q, want body-too-large %q", c.path, got.header.Get("X-Interlock-Error"), got.body, tc.wantMsg)
				case c.want == 200 && got.body != fmt.Sprintf("slow %s %d", c.path, tc.size):
					t.Errorf("%s: backend answered %q", c.path, got.body)
				}
			}
		})
	}
}

// TestRouteLimitsView: the view carries each override where HAProxy reads
// it (the idle timeout in the server options the Runtime API uses too),
// and refuses a negative one naming the route.
func TestRouteLimitsView(t *testing.T) {
	tb := table(routing.Host{Name: "app.example.com", Routes: []routing.Route{
		withLimits(routing.Route{Path: "/a", Backends: be("10.0.0.1:80")},
			routing.Limits{ConnectTimeout: 1500 * time.Millisecond, IdleTimeout: 7 * time.Second, MaxBodyBytes: 3 << 20}),
		{Path: "/", Backends: be("10.0.0.2:80")},
	}})
	s := goldenSettings("/var/lib/interlock")
	s.Edge = Edge{MaxBodyBytes: 1 << 20}
	v, err := NewView(tb, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range v.Backends {
		switch b.Route {
		case "/a":
			if b.Timeouts == nil || *b.Timeouts != (BackendTimeouts{Connect: "1500ms"}) || b.MaxBodyBytes != 3<<20 ||
				!strings.Contains(strings.Join(b.ServerOptions, " "), "pool-purge-delay 7000") {
				t.Errorf("backend /a: timeouts %+v, body %d, server options %v", b.Timeouts, b.MaxBodyBytes, b.ServerOptions)
			}
		case "/":
			if b.Timeouts != nil || b.MaxBodyBytes != 1<<20 || strings.Contains(strings.Join(b.ServerOptions, " "), "pool-purge-delay") {
				t.Errorf("backend /: timeouts %+v, body %d, server options %v", b.Timeouts, b.MaxBodyBytes, b.ServerOptions)
			}
		}
	}
	bad := table(routing.Host{Name: "app.example.com", Routes: []routing.Route{
		withLimits(routing.Route{Path: "/", Backends: be("10.0.0.1:80")}, routing.Limits{ConnectTimeout: -time.Second})}})
	if _, err := NewView(bad, s); err == nil || !strings.Contains(err.Error(), "host app.example.com route /") {
		t.Errorf("negative override: %v, want an error naming the route", err)
	}
}
