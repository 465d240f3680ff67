package haproxy

// Integration tests of the Swarm features against the real HAProxy: the
// default host, redirects and sticky cookies, including sticky backends on
// the Runtime API path. The built-in proxy is asked the same questions
// where its answers are the contract.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// reply is one response, read whole.
type reply struct {
	code   int
	body   string
	header http.Header
	// cookies are the Set-Cookie headers, parsed.
	cookies []*http.Cookie
}

// from is the backend that answered: newBackend and stickyServer put
// their name first in the body.
func (r reply) from() string { name, _, _ := strings.Cut(r.body, " "); return name }

// request sends one request on a fresh connection, not following
// redirects, with a Cookie header unless cookie is "".
func request(t testing.TB, method, addr, host, path, cookie string) reply {
	t.Helper()
	r, err := tryRequest(method, addr, host, path, cookie)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	return r
}

func tryRequest(method, addr, host, path, cookie string) (reply, error) {
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader("payload")
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return reply{}, err
	}
	req.Host = host
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := freshClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, body: string(b), header: resp.Header, cookies: resp.Cookies()}, err
}

// builtinProxy serves tb with the built-in proxy on a loopback address.
func builtinProxy(t testing.TB, tb routing.Table) string {
	t.Helper()
	p := builtin.New(builtin.Options{Logger: testLogger(t)})
	if err := p.Apply(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); _ = p.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestDefaultHostServesUnknownNames(t *testing.T) {
	r := newRig(t, nil)
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	r.apply(t, webTable(routing.RoundRobin, nil, c))
	if code, body, _ := get(t, r.http, "nobody.test", "/"); code != 404 || !strings.Contains(body, "no route") {
		t.Fatalf("without a default host, an unknown name answered %d %q", code, body)
	}
	tb := table(
		routing.Host{Name: "fallback.test", Default: true, Routes: []routing.Route{
			{Path: "/", Backends: []routing.Backend{a.rb()}}, {Path: "/api", Backends: []routing.Backend{b.rb()}}}},
		routing.Host{Name: "app.test", Routes: []routing.Route{{Path: "/app", Backends: []routing.Backend{c.rb()}}}},
		routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{c.rb()}}}},
	)
	r.apply(t, tb)
	ref := builtinProxy(t, tb)
	for _, tc := range []struct {
		host, path string
		code       int
		body       string
	}{
		{host: "nobody.test", path: "/x?q=1", code: 200, body: "a /x?q=1 "},
		{host: "NoBody.Test.:8080", path: "/", code: 200, body: "a / "},
		{host: "nobody.test", path: "/api/v1", code: 200, body: "b /api/v1 "},
		{host: "fallback.test", path: "/api", code: 200, body: "b /api "},
		{host: "web.test", path: "/", code: 200, body: "c / "},
		// A known host's request that none of its routes takes is its own
		// 404, not the default host's.
		{host: "app.test", path: "/other", code: 404, body: "no route for"},
		{host: "app.test", path: "/app/x", code: 200, body: "c /app/x "},
	} {
		for name, addr := range map[string]string{"haproxy": r.http, "builtin": ref} {
			got := request(t, http.MethodGet, addr, tc.host, tc.path, "")
			if got.code != tc.code || !strings.Contains(got.body, tc.body) {
				t.Errorf("%s: %s%s answered %d %q, want %d %q", name, tc.host, tc.path, got.code, got.body, tc.code, tc.body)
			}
		}
	}
	if got := request(t, http.MethodGet, r.http, "nobody.test", "/", ""); !strings.Contains(got.body, "fhost=nobody.test") {
		t.Errorf("the default host's backend got %q, want the client's own Host", got.body)
	}
	// A request without Host (HTTP/1.0) is an unknown name too.
	if raw := rawRequest(t, r.http, "GET /api/raw HTTP/1.0\r\n\r\n"); !strings.HasPrefix(raw, "HTTP/1.0 200") || !strings.Contains(raw, "b /api/raw") {
		t.Errorf("a request without Host answered %q, want the default host's /api route", raw)
	}
	// A default host without a "/" route leaves the other paths 404.
	tb2 := table(
		routing.Host{Name: "fallback.test", Default: true, Routes: []routing.Route{{Path: "/api", Backends: []routing.Backend{b.rb()}}}},
		routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{c.rb()}}}},
	)
	r.apply(t, tb2)
	if got := request(t, http.MethodGet, r.http, "nobody.test", "/api", ""); got.code != 200 || got.from() != "b" {
		t.Errorf("nobody.test/api answered %d %q", got.code, got.body)
	}
	if got := request(t, http.MethodGet, r.http, "nobody.test", "/x", ""); got.code != 404 {
		t.Errorf("nobody.test/x answered %d %q, want 404", got.code, got.body)
	}
}

func TestDefaultHostOverHTTPS(t *testing.T) {
	r := newRig(t, nil)
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	tb := table(
		routing.Host{Name: "fallback.test", Default: true, TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/app", Backends: []routing.Backend{c.rb()}}}},
		routing.Host{Name: "plain.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{b.rb()}}}},
	)
	r.apply(t, tb)
	for _, tc := range []struct {
		sni, path string
		code      int
		body      string
	}{
		{sni: "nobody.test", path: "/s", code: 200, body: "a /s xff=127.0.0.1 proto=https"},
		{sni: "secure.test", path: "/app", code: 200, body: "c /app "},
		{sni: "secure.test", path: "/other", code: 404, body: "no route"},
		// A host without TLS is not served over HTTPS, default host or not.
		{sni: "plain.test", path: "/", code: 404, body: "no route"},
	} {
		code, body, _ := httpsGet(t, r.https, tc.sni, tc.path, &tls.Config{})
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("https %s%s: got %d %q, want %d %q", tc.sni, tc.path, code, body, tc.code, tc.body)
		}
	}
	// An ssl_only default host sends unknown names to HTTPS, by their own name.
	tb.Hosts[0].TLS = &routing.TLS{Only: true}
	if tb.Hosts[0].Name != "fallback.test" {
		t.Fatalf("hosts %v", tb.Hosts)
	}
	r.apply(t, tb)
	_, port, _ := net.SplitHostPort(r.https)
	got := request(t, http.MethodGet, r.http, "nobody.test", "/x?y=1", "")
	if want := "https://nobody.test:" + port + "/x?y=1"; got.code != 301 || got.header.Get("Location") != want {
		t.Errorf("an unknown name answered %d Location %q, want 301 %q", got.code, got.header.Get("Location"), want)
	}
	// 301 for GET and HEAD, 308 for the rest, as the built-in proxy answers.
	ref := builtinRedirecting(t, tb, r.https)
	for _, tc := range []struct {
		method, host string
		code         int
	}{
		{http.MethodGet, "nobody.test", 301},
		{http.MethodHead, "nobody.test", 301},
		{http.MethodPost, "nobody.test", 308},
		{http.MethodGet, "fallback.test", 301},
		{http.MethodPost, "fallback.test", 308},
		{http.MethodDelete, "fallback.test", 308},
	} {
		want := "https://" + tc.host + ":" + port + "/f?g=2"
		for name, addr := range map[string]string{"haproxy": r.http, "builtin": ref} {
			got := request(t, tc.method, addr, tc.host, "/f?g=2", "")
			if got.code != tc.code || got.header.Get("Location") != want || got.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %s %s answered %d Location %q Cache-Control %q, want %d %q no-store",
					name, tc.method, tc.host, got.code, got.header.Get("Location"), got.header.Get("Cache-Control"), tc.code, want)
			}
		}
	}
	if got := request(t, http.MethodGet, r.http, "plain.test", "/", ""); got.code != 200 || got.from() != "b" {
		t.Errorf("plain.test answered %d %q", got.code, got.body)
	}
}

func TestRedirectHost(t *testing.T) {
	r := newRig(t, nil)
	a := newBackend(t, "a")
	tb := table(
		routing.Host{Name: "old.test", Aliases: []string{"www.old.test"}, RedirectTo: "https://new.test:8443"},
		routing.Host{Name: "new.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
	)
	r.apply(t, tb)
	ref := builtinProxy(t, tb)
	for _, tc := range []struct {
		method, host, path string
		code               int
	}{
		{method: http.MethodGet, host: "old.test", path: "/a%20b/c?x=1&y=%2F", code: 301},
		{method: http.MethodGet, host: "www.old.test", path: "/", code: 301},
		{method: http.MethodHead, host: "old.test", path: "/h?q", code: 301},
		{method: http.MethodPost, host: "old.test", path: "/form?next=/x", code: 308},
		{method: http.MethodPut, host: "old.test", path: "/p", code: 308},
		{method: http.MethodDelete, host: "old.test", path: "/d", code: 308},
	} {
		want := "https://new.test:8443" + tc.path
		for name, addr := range map[string]string{"haproxy": r.http, "builtin": ref} {
			got := request(t, tc.method, addr, tc.host, tc.path, "")
			if got.code != tc.code || got.header.Get("Location") != want || got.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %s %s%s answered %d Location %q Cache-Control %q, want %d %q no-store",
					name, tc.method, tc.host, tc.path, got.code, got.header.Get("Location"), got.header.Get("Cache-Control"), tc.code, want)
			}
		}
	}
	if got := request(t, http.MethodGet, r.http, "new.test", "/", ""); got.code != 200 || got.from() != "a" {
		t.Errorf("new.test answered %d %q", got.code, got.body)
	}
	if got := request(t, http.MethodGet, r.http, "nobody.test", "/", ""); got.code != 404 {
		t.Errorf("an unknown name answered %d, want 404", got.code)
	}
	// A redirecting default host redirects unknown names too.
	tb.Hosts[1].Default = true
	if tb.Hosts[1].Name != "old.test" {
		t.Fatalf("hosts %v", tb.Hosts)
	}
	r.apply(t, tb)
	if got := request(t, http.MethodPost, r.http, "nobody.test", "/x?y", ""); got.code != 308 || got.header.Get("Location") != "https://new.test:8443/x?y" {
		t.Errorf("an unknown name answered %d Location %q", got.code, got.header.Get("Location"))
	}
}

// stickyServer is a backend that names itself and holds /slow answers
// until release is closed.
type stickyServer struct {
	name    string
	srv     *httptest.Server
	release chan struct{}
}

func newStickyServer(t *testing.T, name string) *stickyServer {
	t.Helper()
	s := &stickyServer{name: name, release: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-s.release:
			case <-time.After(10 * time.Second):
			}
		}
		fmt.Fprintf(w, "%s %s cookie=%s", name, r.URL.RequestURI(), r.Header.Get("Cookie"))
	}))
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.srv.Close()
	})
	return s
}

func (s *stickyServer) rb() routing.Backend {
	return routing.Backend{Address: strings.TrimPrefix(s.srv.URL, "http://"), Name: s.name}
}

// cookie is the sticky cookie that names s.
func (s *stickyServer) cookie(name string) string { return name + "=" + cookieValue(s.rb().Address) }

// shopTable is one host with a sticky route "/" (SID) and a sticky,
// rewritten "/cart" (cart.id), both over the given servers.
func shopTable(servers ...*stickyServer) routing.Table {
	var bs []routing.Backend
	for _, s := range servers {
		bs = append(bs, s.rb())
	}
	return table(routing.Host{Name: "shop.test", Routes: []routing.Route{
		{Path: "/", StickyCookie: "SID", Backends: bs},
		{Path: "/cart", StripPath: true, StickyCookie: "cart.id", Backends: append([]routing.Backend(nil), bs...)},
	}})
}

// rootTable is one host with one sticky route "/" (SID).
func rootTable(servers ...*stickyServer) routing.Table {
	var bs []routing.Backend
	for _, s := range servers {
		bs = append(bs, s.rb())
	}
	return table(routing.Host{Name: "shop.test", Routes: []routing.Route{{Path: "/", StickyCookie: "SID", Backends: bs}}})
}

// pinned reports whether got sets exactly the cookie name=value of server
// from, for path.
func pinned(got reply, name, path string, s *stickyServer) error {
	if len(got.cookies) != 1 {
		return fmt.Errorf("%d cookies set (%v), want 1", len(got.cookies), got.header.Values("Set-Cookie"))
	}
	c := got.cookies[0]
	if c.Name != name || c.Value != cookieValue(s.rb().Address) || c.Path != path || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		return fmt.Errorf("set %q, want %s for %s with Path=%s; HttpOnly; SameSite=Lax", got.header.Get("Set-Cookie"), s.cookie(name), s.name, path)
	}
	return nil
}

func TestStickyCookie(t *testing.T) {
	r := newRig(t, nil)
	servers := map[string]*stickyServer{}
	for _, n := range []string{"a", "b", "c"} {
		servers[n] = newStickyServer(t, n)
	}
	all := shopTable(servers["a"], servers["b"], servers["c"])
	r.apply(t, all)

	t.Run("a cookieless client is balanced, and each answer pins it", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			got := request(t, http.MethodGet, r.http, "shop.test", "/", "")
			seen[got.from()]++
			if err := pinned(got, "SID", "/", servers[got.from()]); err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != 3 {
			t.Errorf("30 cookieless requests went to %v, want all three backends", seen)
		}
	})
	t.Run("the cookie keeps a client on its backend", func(t *testing.T) {
		for _, n := range []string{"a", "b", "c"} {
			for i := 0; i < 20; i++ {
				got := request(t, http.MethodGet, r.http, "shop.test", "/x", "theme=dark; "+servers[n].cookie("SID")+"; lang=en")
				if got.from() != n || len(got.cookies) != 0 {
					t.Fatalf("request %d with %s's cookie went to %q setting %v", i, n, got.from(), got.header.Values("Set-Cookie"))
				}
				// The server sees the cookie, as the built-in proxy passes it.
				if !strings.Contains(got.body, servers[n].cookie("SID")) {
					t.Fatalf("backend got %q", got.body)
				}
			}
		}
	})
	t.Run("a client that follows its Set-Cookie sticks", func(t *testing.T) {
		first := request(t, http.MethodGet, r.http, "shop.test", "/", "")
		c := first.cookies[0].Name + "=" + first.cookies[0].Value
		for i := 0; i < 30; i++ {
			if got := request(t, http.MethodGet, r.http, "shop.test", "/", c); got.from() != first.from() {
				t.Fatalf("request %d went to %s, first to %s", i, got.from(), first.from())
			}
		}
	})
	t.Run("an unknown value is balanced and pinned anew", func(t *testing.T) {
		got := request(t, http.MethodGet, r.http, "shop.test", "/", "SID=00bad")
		if err := pinned(got, "SID", "/", servers[got.from()]); got.code != 200 || err != nil {
			t.Fatalf("got %d: %v", got.code, err)
		}
	})
	t.Run("route path and rewrite", func(t *testing.T) {
		got := request(t, http.MethodGet, r.http, "shop.test", "/cart/items?n=2", servers["a"].cookie("SID"))
		if !strings.HasPrefix(got.body, got.from()+" /items?n=2 ") {
			t.Fatalf("got %q", got.body)
		}
		if err := pinned(got, "cart.id", "/cart", servers[got.from()]); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if got := request(t, http.MethodGet, r.http, "shop.test", "/cart", servers["c"].cookie("cart.id")); got.from() != "c" {
				t.Fatalf("cart.id of c went to %s", got.from())
			}
		}
	})
	t.Run("the same cookie as the built-in proxy", func(t *testing.T) {
		ref := builtinProxy(t, all)
		for i := 0; i < 6; i++ {
			want := request(t, http.MethodGet, ref, "shop.test", "/cart/x", "")
			if err := pinned(want, "cart.id", "/cart", servers[want.from()]); err != nil {
				t.Fatalf("builtin: %v", err)
			}
			// builtin's cookie pins the client in HAProxy.
			c := want.cookies[0].Name + "=" + want.cookies[0].Value
			if got := request(t, http.MethodGet, r.http, "shop.test", "/cart/x", c); got.from() != want.from() || len(got.cookies) != 0 {
				t.Fatalf("builtin's %q went to %s in haproxy, setting %v", c, got.from(), got.header.Values("Set-Cookie"))
			}
		}
	})
	t.Run("a dead pinned backend hands the client over", func(t *testing.T) {
		servers["c"].srv.Close()
		got := request(t, http.MethodGet, r.http, "shop.test", "/", servers["c"].cookie("SID"))
		if got.code != 200 || got.from() == "c" {
			t.Fatalf("got %d %q", got.code, got.body)
		}
		if err := pinned(got, "SID", "/", servers[got.from()]); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStickyCookieOverTheRuntimeAPI: HAProxy 2.6 cannot give a server added
// at run time its cookie value, so a new server of a sticky backend takes a
// reload; one that leaves goes to maintenance (not drain, which would still
// take the clients its cookie pins) without a reload, and one that comes
// back before it is deleted is made ready again, still without a reload.
func TestStickyCookieOverTheRuntimeAPI(t *testing.T) {
	r := newRig(t, nil)
	a, b := newStickyServer(t, "a"), newStickyServer(t, "b")
	plain := newBackend(t, "p")
	withPlain := func(tb routing.Table, bs ...*backend) routing.Table {
		h := routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/"}}}
		for _, x := range bs {
			h.Routes[0].Backends = append(h.Routes[0].Backends, x.rb())
		}
		tb.Hosts = append(tb.Hosts, h)
		tb.Normalize()
		return tb
	}
	r.apply(t, withPlain(rootTable(a), plain))
	p0 := proc(t, r)

	// b is new in a sticky backend: one reload, and b has its cookie.
	r.apply(t, withPlain(rootTable(a, b), plain))
	if s := r.d.Stats(); s.Reloads != 1 || s.RuntimeFallbacks != 1 || s.RuntimeApplies != 0 {
		t.Fatalf("adding b: stats %+v, want one reload after a runtime fallback", s)
	}
	for i := 0; i < 10; i++ {
		if got := request(t, http.MethodGet, r.http, "shop.test", "/", b.cookie("SID")); got.from() != "b" || len(got.cookies) != 0 {
			t.Fatalf("b's cookie went to %q setting %v", got.from(), got.header.Values("Set-Cookie"))
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		got := request(t, http.MethodGet, r.http, "shop.test", "/", "")
		seen[got.from()] = true
		if err := pinned(got, "SID", "/", map[string]*stickyServer{"a": a, "b": b}[got.from()]); err != nil {
			t.Fatal(err)
		}
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("cookieless requests went to %v, want a and b", seen)
	}

	// A backend without a sticky cookie still grows over the Runtime API.
	plain2 := newBackend(t, "p2")
	r.apply(t, withPlain(rootTable(a, b), plain, plain2))
	if s := r.d.Stats(); s.Reloads != 1 || s.RuntimeApplies != 1 {
		t.Fatalf("adding a plain server: stats %+v, want a runtime apply and no reload", s)
	}

	// b leaves while a request pinned to it runs: no reload, b in
	// maintenance at once, so its cookie brings the client to a.
	slow := make(chan reply, 1)
	go func() {
		got, err := tryRequest(http.MethodGet, r.http, "shop.test", "/slow", b.cookie("SID"))
		if err != nil {
			got.body = err.Error()
		}
		slow <- got
	}()
	waitFor(t, 5*time.Second, "b's slow request in flight", func() error {
		st, err := r.d.sup.admin.stats(context.Background(), "")
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Server == serverName(mustAddr(t, b.rb().Address)) && strings.HasPrefix(s.Backend, "be_shop.test") && s.Sessions > 0 {
				return nil
			}
		}
		return errors.New("no session on b yet")
	})
	r.apply(t, withPlain(rootTable(a), plain, plain2))
	if s := r.d.Stats(); s.Reloads != 1 || s.RuntimeApplies != 2 || s.Draining != 1 {
		t.Fatalf("b leaving: stats %+v, want a runtime apply, b draining, no reload", s)
	}
	for i := 0; i < 10; i++ {
		got := request(t, http.MethodGet, r.http, "shop.test", "/", b.cookie("SID"))
		if got.from() != "a" {
			t.Fatalf("request %d with b's cookie went to %q while b leaves", i, got.from())
		}
		if err := pinned(got, "SID", "/", a); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		st, err := r.d.sup.admin.stats(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Server == serverName(mustAddr(t, b.rb().Address)) && strings.HasPrefix(s.Backend, "be_shop.test_") {
				return s.Status
			}
		}
		return ""
	}
	if s := status(); s != "MAINT" {
		t.Errorf("b's status while it leaves is %q, want MAINT", s)
	}

	// b comes back before it is deleted: ready again, it has its cookie.
	r.apply(t, withPlain(rootTable(a, b), plain, plain2))
	if s := r.d.Stats(); s.Reloads != 1 || s.RuntimeApplies != 3 {
		t.Fatalf("b back: stats %+v, want a runtime apply and no reload", s)
	}
	for i := 0; i < 10; i++ {
		if got := request(t, http.MethodGet, r.http, "shop.test", "/", b.cookie("SID")); got.from() != "b" || len(got.cookies) != 0 {
			t.Fatalf("b's cookie after b came back went to %q setting %v", got.from(), got.header.Values("Set-Cookie"))
		}
	}
	close(b.release)
	if got := <-slow; got.from() != "b" {
		t.Errorf("the request in flight on b answered %q", got.body)
	}
	if p1 := proc(t, r); p1.Reloads != p0.Reloads+1 {
		t.Errorf("haproxy's own reloads (show proc): %d before, %d after; want exactly one", p0.Reloads, p1.Reloads)
	}
	// The live file gives every sticky server its cookie, for the next
	// reload or restart.
	conf, err := os.ReadFile(r.d.opts.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*stickyServer{a, b} {
		if want := " " + s.rb().Address + " cookie " + cookieValue(s.rb().Address); strings.Count(string(conf), want) != 1 {
			t.Errorf("the live file lists %q %d times, want once", want, strings.Count(string(conf), want))
		}
	}
}

// TestRuntimeAPIRefusesCookie is why new sticky servers take a reload:
// HAProxy 2.6's "add server" takes no cookie. Should a later HAProxy take
// one, this fails, and the driver could add sticky servers at run time.
func TestRuntimeAPIRefusesCookie(t *testing.T) {
	r := newRig(t, nil)
	a, b := newStickyServer(t, "a"), newStickyServer(t, "b")
	r.apply(t, shopTable(a))
	be := backendName("be", "shop.test", "/")
	err := r.d.sup.admin.expect(context.Background(), "New server registered.", "add server",
		be+"/"+serverName(mustAddr(t, b.rb().Address)), b.rb().Address, "cookie", cookieValue(b.rb().Address))
	var re *RuntimeError
	if !errors.As(err, &re) || !strings.Contains(re.Answer, "'cookie' option is not accepted for dynamic server") {
		t.Fatalf("add server with a cookie: %v; want HAProxy 2.6's refusal", err)
	}
}
