package builtin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// noFollow is a client that shows redirects instead of following them.
func noFollow(srv interface{ Client() *http.Client }) *http.Client {
	c := *srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func TestDefaultHostAnswersUnknownNames(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	fallback := hostOf("default.example", routeOf("/", addr(b)))
	fallback.Default = true
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(a))), fallback))
	srv := serve(t, p)
	for _, tc := range []struct{ host, want string }{
		{host: "app.example", want: "a"},
		{host: "default.example", want: "b"},
		{host: "anything.else", want: "b"},
	} {
		if res := get(t, srv, tc.host, "/"); res.status != 200 || res.echo.Backend != tc.want {
			t.Errorf("Host %s: %d from %q, want 200 from %s", tc.host, res.status, res.echo.Backend, tc.want)
		}
	}
	// Without a default host, unknown names are 404 again.
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(a)))))
	if res := get(t, srv, "anything.else", "/"); res.status != 404 {
		t.Errorf("unknown host without a default: %d, want 404", res.status)
	}
}

func TestTwoDefaultHostsRefused(t *testing.T) {
	p := newTestProxy(t, Options{}, nil)
	a, b := hostOf("a.example", routeOf("/", "127.0.0.1:1")), hostOf("b.example", routeOf("/", "127.0.0.1:2"))
	a.Default, b.Default = true, true
	if err := p.Apply(t.Context(), tableOf(a, b)); err == nil || !strings.Contains(err.Error(), "default") {
		t.Errorf("Apply with two default hosts: %v, want an error about the default host", err)
	}
}

func TestRedirectHost(t *testing.T) {
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(routing.Host{Name: "old.example", RedirectTo: "https://new.example"}))
	srv := serve(t, p)
	client := noFollow(srv)
	for _, tc := range []struct {
		method string
		code   int
	}{
		{method: http.MethodGet, code: http.StatusMovedPermanently},
		{method: http.MethodHead, code: http.StatusMovedPermanently},
		{method: http.MethodPost, code: http.StatusPermanentRedirect},
	} {
		res := do(t, client, srv, tc.method, "old.example", "/a/b?c=d", nil, nil)
		if res.status != tc.code || res.header.Get("Location") != "https://new.example/a/b?c=d" {
			t.Errorf("%s: %d Location %q, want %d to https://new.example/a/b?c=d", tc.method, res.status, res.header.Get("Location"), tc.code)
		}
	}
}

func TestStickyCookiePinsAClient(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	p := newTestProxy(t, Options{}, nil)
	rt := routeOf("/", addr(a), addr(b), addr(c))
	rt.StickyCookie = "srv"
	mustApply(t, p, tableOf(hostOf("app.example", rt)))
	srv := serve(t, p)

	first := get(t, srv, "app.example", "/")
	cookie := first.header.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, "srv=") || strings.Contains(cookie, "127.0.0.1") {
		t.Fatalf("first response Set-Cookie %q: want srv=<opaque id>", cookie)
	}
	hdr := http.Header{"Cookie": {strings.SplitN(cookie, ";", 2)[0]}}
	for range 10 {
		res := do(t, srv.Client(), srv, http.MethodGet, "app.example", "/", nil, hdr)
		if res.echo.Backend != first.echo.Backend {
			t.Fatalf("pinned client reached %s, want %s", res.echo.Backend, first.echo.Backend)
		}
		if res.header.Get("Set-Cookie") != "" {
			t.Errorf("a pinned request got a new cookie: %q", res.header.Get("Set-Cookie"))
		}
	}
	// Without the cookie, round robin spreads clients over all backends.
	seen := map[string]bool{}
	for range 6 {
		seen[get(t, srv, "app.example", "/").echo.Backend] = true
	}
	if len(seen) != 3 {
		t.Errorf("clients without a cookie reached %v, want all three backends", seen)
	}
	// The pinned backend leaves: the client is re-pinned to another one.
	var rest []string
	for _, s := range []string{addr(a), addr(b), addr(c)} {
		if s != map[string]string{"a": addr(a), "b": addr(b), "c": addr(c)}[first.echo.Backend] {
			rest = append(rest, s)
		}
	}
	rt2 := routeOf("/", rest...)
	rt2.StickyCookie = "srv"
	mustApply(t, p, tableOf(hostOf("app.example", rt2)))
	res := do(t, srv.Client(), srv, http.MethodGet, "app.example", "/", nil, hdr)
	if res.status != 200 || res.echo.Backend == first.echo.Backend || !strings.HasPrefix(res.header.Get("Set-Cookie"), "srv=") {
		t.Errorf("after the pinned backend left: %d from %s, Set-Cookie %q; want another backend and a new cookie",
			res.status, res.echo.Backend, res.header.Get("Set-Cookie"))
	}
}
