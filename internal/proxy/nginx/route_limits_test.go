package nginx

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

func withLimits(r routing.Route, l routing.Limits) routing.Route { r.Limits = &l; return r }

// routeLimitGoldenCases are the golden cases of per-route overrides
// (TestGolden renders them, the driver test runs nginx -t on them).
func routeLimitGoldenCases() []goldenCase {
	limited := func() routing.Table {
		api := withLimits(route("/api", "127.0.0.1:2"), routing.Limits{
			ConnectTimeout: 250 * time.Millisecond, ResponseHeaderTimeout: 5 * time.Second,
			IdleTimeout: 30 * time.Second, MaxBodyBytes: 1 << 10,
		})
		api.WebSocketPaths = []string{"/api/ws"}
		return table(
			host("app.example.com",
				route("/", "127.0.0.1:1"),
				api,
				withLimits(route("/upload", "127.0.0.1:3"), routing.Limits{MaxBodyBytes: routing.Unlimited, ResponseHeaderTimeout: routing.Unlimited}),
				withLimits(route("/small", "127.0.0.1:4"), routing.Limits{MaxBodyBytes: 1 << 10}),
				withLimits(route("/empty"), routing.Limits{MaxBodyBytes: 100})),
			routing.Host{Name: "tls.example.com", TLS: &routing.TLS{}, Routes: []routing.Route{
				withLimits(route("/", "127.0.0.1:5"), routing.Limits{MaxBodyBytes: 2 << 20})}},
		)
	}
	return []goldenCase{
		// Without edge settings: the overrides over nginx's own defaults.
		{name: "route_limits", table: limited()},
		// With every edge setting: an override equal to the global one is
		// left out, Unlimited restores nginx's 60s and lifts the body limit.
		{name: "route_limits_edge", table: limited(), settings: func(s *Settings) { s.Edge = goldenEdge() }},
	}
}

// slowBackend answers after delay, or when the request is given up.
func slowBackend(t *testing.T, delay time.Duration) string {
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
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestRouteLimits runs per-route overrides on the real nginx: a route's
// body limit gives its 413 while another route of the same host takes the
// same body (and the reverse, a route without limit under a global one);
// a route whose read timeout is shorter than its backend's delay gets
// 504, another route to the same backend waits and answers.
func TestRouteLimits(t *testing.T) {
	tests := []struct {
		name string
		edge Edge
		// limited is the override of /limited; / keeps the globals.
		limited routing.Limits
		// the request: body size (0: GET), and the answers of /limited
		// and /.
		size                   int
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
			l := newLocalWith(t, func(o *Options) { o.Edge = tc.edge })
			delay := 10 * time.Millisecond
			if tc.size == 0 {
				delay = 2 * time.Second // past 300ms, well within 20s
			}
			be := slowBackend(t, delay)
			tb := table(host("web.test", route("/", be), withLimits(route("/limited", be), tc.limited)))
			if err := l.d.Apply(t.Context(), tb); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				path string
				want int
			}{{"/limited/x", tc.wantLimited}, {"/x", tc.wantOther}} {
				for _, chunked := range []bool{false, true} {
					if chunked && tc.size == 0 {
						continue
					}
					r := edgeRequest{src: anyoneIP, url: "http://" + l.http + c.path, host: "web.test"}
					if tc.size > 0 {
						r.method, r.body, r.chunked = http.MethodPost, strings.Repeat("b", tc.size), chunked
					}
					var got answer
					testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("%s (chunked %v)", c.path, chunked), func() error {
						var err error
						if got, err = r.do(); err != nil {
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
			}
		})
	}
}

// TestRouteLimitsView: the view carries each override where nginx reads
// it, and refuses a negative one naming the route.
func TestRouteLimitsView(t *testing.T) {
	tb := table(host("app.example.com",
		withLimits(route("/a", "127.0.0.1:1"), routing.Limits{ConnectTimeout: 1500 * time.Millisecond, IdleTimeout: 7 * time.Second, MaxBodyBytes: 3 << 20}),
		route("/", "127.0.0.1:2")))
	v, err := NewView(tb, goldenSettings())
	if err != nil {
		t.Fatal(err)
	}
	srv := v.Servers[0]
	var got *LocationLimits
	for _, loc := range srv.Locations {
		if loc.Route == "/a" {
			got = loc.Limits
		} else if loc.Limits != nil {
			t.Errorf("location %s of another route has limits %+v", loc.Path, loc.Limits)
		}
	}
	want := LocationLimits{ConnectTimeout: "1500ms", ClientMaxBodySize: "3m", BodyTooLarge: 3 << 20}
	if got == nil || *got != want {
		t.Errorf("location limits %+v, want %+v", got, want)
	}
	if len(srv.BodyLimits) != 1 || srv.BodyLimits[0] != 3<<20 {
		t.Errorf("server body limits %v", srv.BodyLimits)
	}
	for _, up := range v.Upstreams {
		if want := map[bool]string{true: "7s", false: ""}[up.Servers[0].Address == "127.0.0.1:1"]; up.KeepaliveTimeout != want {
			t.Errorf("upstream %s keepalive_timeout %q, want %q", up.Name, up.KeepaliveTimeout, want)
		}
	}
	bad := table(host("app.example.com", withLimits(route("/", "127.0.0.1:1"), routing.Limits{IdleTimeout: -time.Second})))
	if _, err := NewView(bad, goldenSettings()); err == nil || !strings.Contains(err.Error(), "host app.example.com route /") {
		t.Errorf("negative override: %v, want an error naming the route", err)
	}
}
