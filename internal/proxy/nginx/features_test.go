package nginx

// Integration tests of the Swarm features against the real nginx: the
// default host, redirects and sticky cookies. Each one also asks the
// built-in proxy the same questions, since its answers are the contract.

import (
	"crypto/tls"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// answer is one response, read whole.
type answer struct {
	code   int
	body   string
	header http.Header
}

// from is the backend that answered (backend() sets X-Backend).
func (a answer) from() string { return a.header.Get("X-Backend") }

var noFollow = &http.Client{
	Timeout:       5 * time.Second,
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// send makes one request to addr for host, with a Cookie header unless
// cookie is "".
func send(t testing.TB, method, addr, host, path, cookie string) answer {
	t.Helper()
	a, err := trySend(method, addr, host, path, cookie)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	return a
}

func trySend(method, addr, host, path, cookie string) (answer, error) {
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut {
		body = strings.NewReader("payload")
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return answer{}, err
	}
	req.Host = host
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: string(b), header: resp.Header}, err
}

// sendTLS makes a GET over TLS with the given SNI and Host.
func sendTLS(addr, sni, host, path string) (answer, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{ServerName: sni, InsecureSkipVerify: true},
	}}
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return answer{}, err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: string(b), header: resp.Header}, err
}

// builtinProxy serves tb with the built-in proxy on a loopback address.
func builtinProxy(t testing.TB, tb routing.Table) string {
	t.Helper()
	p := builtin.New(builtin.Options{Logger: quietLog()})
	if err := p.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); _ = p.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

// apply puts tb live and waits until host answers on path with code.
func (l *localNginx) apply(t *testing.T, tb routing.Table, host, path string, code int) {
	t.Helper()
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	l.want(t, host, path, code, "")
}

// cookieValue is the sticky cookie value that names the backend at addr:
// the built-in proxy's, 64-bit FNV-1a of the address in hex.
func cookieValue(addr string) string {
	h := fnv.New64a()
	h.Write([]byte(addr))
	return strconv.FormatUint(h.Sum64(), 16)
}

func TestDefaultHostServesUnknownNames(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	// Without a default host, unknown names keep their 404.
	l.apply(t, table(host("web.test", route("/", c))), "web.test", "/", 200)
	l.want(t, "nobody.test", "/", 404, "no route for host")

	tb := table(
		dflt(host("fallback.test", route("/", a), route("/api", b))),
		host("app.test", route("/app", c)),
		host("web.test", route("/", c)),
	)
	l.apply(t, tb, "fallback.test", "/", 200)
	ref := builtinProxy(t, tb)
	for _, tc := range []struct {
		host, path string
		code       int
		body       string
	}{
		{host: "nobody.test", path: "/x?q=1", code: 200, body: "a /x?q=1 "},
		{host: "NoBody.Test:8080", path: "/", code: 200, body: "a / "},
		{host: "nobody.test", path: "/api/v1", code: 200, body: "b /api/v1 "},
		{host: "fallback.test", path: "/api", code: 200, body: "b /api "},
		{host: "web.test", path: "/", code: 200, body: "c / "},
		// A known host's request that none of its routes takes is its own
		// 404, not the default host's.
		{host: "app.test", path: "/other", code: 404, body: "no route for"},
		{host: "app.test", path: "/app/x", code: 200, body: "c /app/x "},
	} {
		for name, addr := range map[string]string{"nginx": l.http, "builtin": ref} {
			got := send(t, http.MethodGet, addr, tc.host, tc.path, "")
			if got.code != tc.code || !strings.Contains(got.body, tc.body) {
				t.Errorf("%s: %s%s answered %d %q, want %d %q", name, tc.host, tc.path, got.code, got.body, tc.code, tc.body)
			}
		}
	}
	// The backend sees the name the client asked for.
	if got := send(t, http.MethodGet, l.http, "nobody.test", "/", ""); !strings.Contains(got.body, "host=nobody.test") {
		t.Errorf("the default host's backend got %q, want the client's own Host", got.body)
	}
	// A request with no Host header at all (HTTP/1.0) is an unknown name too.
	conn, err := net.DialTimeout("tcp", l.http, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /api/raw HTTP/1.0\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(raw), "HTTP/1.1 200") || !strings.Contains(string(raw), "b /api/raw") {
		t.Errorf("a request without Host answered %q, want the default host's /api route", raw)
	}

	// Taking the default away brings the 404 back.
	tb.Hosts[1].Default = false
	if tb.Hosts[1].Name != "fallback.test" {
		t.Fatalf("hosts are %v", tb.Hosts)
	}
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	l.want(t, "nobody.test", "/", 404, "no route for host")
}

func TestDefaultHostOverHTTPS(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	a, b := backend(t, "a"), backend(t, "b")
	tb := table(
		routing.Host{Name: "fallback.test", Default: true, TLS: &routing.TLS{}, Routes: []routing.Route{route("/", a)}},
		host("plain.test", route("/", b)),
	)
	l.apply(t, tb, "fallback.test", "/", 200)
	testenv.WaitFor(t, 10*time.Second, "an unknown name over HTTPS answered by the default host", func() error {
		got, err := sendTLS(l.https, "nobody.test", "nobody.test", "/s")
		if err != nil {
			return err
		}
		if got.code != 200 || !strings.HasPrefix(got.body, "a /s ") || !strings.Contains(got.body, "proto=https") {
			return fmt.Errorf("got %d %q", got.code, got.body)
		}
		return nil
	})
	// A host without TLS is not served over HTTPS, default host or not.
	if got, err := sendTLS(l.https, "plain.test", "plain.test", "/"); err == nil {
		t.Errorf("plain.test over HTTPS answered %d %q, want a refused handshake", got.code, got.body)
	}
	if got, err := sendTLS(l.https, "nobody.test", "plain.test", "/"); err != nil || got.code != 404 {
		t.Errorf("Host plain.test over HTTPS: %+v %v, want 404", got, err)
	}
	if got := send(t, http.MethodGet, l.http, "plain.test", "/", ""); got.code != 200 || !strings.HasPrefix(got.body, "b /") {
		t.Errorf("plain.test over HTTP: %d %q", got.code, got.body)
	}

	// An ssl_only default host sends unknown names to HTTPS, by their own name.
	tb.Hosts[0].TLS.Only = true
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.https)
	testenv.WaitFor(t, 10*time.Second, "an unknown name redirected to HTTPS", func() error {
		got, err := trySend(http.MethodGet, l.http, "nobody.test", "/x?y=1", "")
		if err != nil {
			return err
		}
		if want := "https://nobody.test:" + port + "/x?y=1"; got.code != 301 || got.header.Get("Location") != want {
			return fmt.Errorf("got %d Location %q, want 301 %q", got.code, got.header.Get("Location"), want)
		}
		return nil
	})
	// 301 for GET and HEAD, 308 for the rest, as the built-in proxy answers.
	n, _ := strconv.Atoi(port)
	ref := builtinRedirecting(t, tb, n)
	for _, tc := range []struct {
		method, host string
		code         int
	}{
		{http.MethodGet, "nobody.test", 301},
		{http.MethodHead, "nobody.test", 301},
		{http.MethodPost, "nobody.test", 308},
		{http.MethodGet, "fallback.test", 301},
		{http.MethodPost, "fallback.test", 308},
		{http.MethodPut, "fallback.test", 308},
	} {
		want := "https://" + tc.host + ":" + port + "/f?g=2"
		for name, addr := range map[string]string{"nginx": l.http, "builtin": ref} {
			got := send(t, tc.method, addr, tc.host, "/f?g=2", "")
			if got.code != tc.code || got.header.Get("Location") != want || got.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %s %s answered %d Location %q Cache-Control %q, want %d %q no-store",
					name, tc.method, tc.host, got.code, got.header.Get("Location"), got.header.Get("Cache-Control"), tc.code, want)
			}
		}
	}
}

func TestRedirectHost(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	a := backend(t, "a")
	tb := table(
		routing.Host{Name: "old.test", Aliases: []string{"www.old.test"}, RedirectTo: "https://new.test:8443"},
		host("new.test", route("/", a)),
	)
	l.apply(t, tb, "new.test", "/", 200)
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
		for name, addr := range map[string]string{"nginx": l.http, "builtin": ref} {
			got := send(t, tc.method, addr, tc.host, tc.path, "")
			if got.code != tc.code || got.header.Get("Location") != want || got.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %s %s%s answered %d Location %q Cache-Control %q, want %d %q no-store",
					name, tc.method, tc.host, tc.path, got.code, got.header.Get("Location"), got.header.Get("Cache-Control"), tc.code, want)
			}
		}
	}
	if got := send(t, http.MethodGet, l.http, "new.test", "/", ""); got.code != 200 || !strings.HasPrefix(got.body, "a /") {
		t.Errorf("new.test answered %d %q", got.code, got.body)
	}
	if got := send(t, http.MethodGet, l.http, "nobody.test", "/", ""); got.code != 404 {
		t.Errorf("an unknown name answered %d, want 404", got.code)
	}

	// A redirecting default host redirects unknown names too.
	tb.Hosts[1].Default = true
	if tb.Hosts[1].Name != "old.test" {
		t.Fatalf("hosts are %v", tb.Hosts)
	}
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "an unknown name redirected", func() error {
		got, err := trySend(http.MethodPost, l.http, "nobody.test", "/x?y", "")
		if err != nil {
			return err
		}
		if got.code != 308 || got.header.Get("Location") != "https://new.test:8443/x?y" {
			return fmt.Errorf("got %d Location %q", got.code, got.header.Get("Location"))
		}
		return nil
	})
}

// stickyBackend is a backend that can be stopped.
func stickyBackend(t *testing.T, name string) (*httptest.Server, routing.Backend) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s cookie=%s", name, r.URL.RequestURI(), r.Header.Get("Cookie"))
	}))
	t.Cleanup(srv.Close)
	return srv, routing.Backend{Address: strings.TrimPrefix(srv.URL, "http://"), Name: name}
}

func TestStickyCookie(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	addr := map[string]string{}
	srvs := map[string]*httptest.Server{}
	rb := map[string]routing.Backend{}
	var bs []routing.Backend
	for _, n := range []string{"a", "b", "c"} {
		s, b := stickyBackend(t, n)
		srvs[n], addr[n], rb[n] = s, b.Address, b
		bs = append(bs, b)
	}
	shop := func(bs ...routing.Backend) routing.Table {
		return table(host("shop.test",
			routing.Route{Path: "/", StickyCookie: "SID", Backends: slices.Clone(bs)},
			routing.Route{Path: "/cart", StripPath: true, StickyCookie: "cart.id", Backends: slices.Clone(bs)}))
	}
	pin := func(cookie, name, path string) string {
		return cookie + "=" + cookieValue(addr[name]) + "; Path=" + path + "; HttpOnly; SameSite=Lax"
	}
	l.apply(t, shop(bs...), "shop.test", "/", 200)

	t.Run("a cookieless client is balanced, and each answer pins it", func(t *testing.T) {
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			got := send(t, http.MethodGet, l.http, "shop.test", "/", "")
			seen[got.from()]++
			if sc := got.header.Get("Set-Cookie"); sc != pin("SID", got.from(), "/") {
				t.Fatalf("answer from %s set %q, want %q", got.from(), sc, pin("SID", got.from(), "/"))
			}
		}
		if len(seen) != 3 {
			t.Errorf("30 cookieless requests went to %v, want all three backends", seen)
		}
	})
	t.Run("the cookie keeps a client on its backend", func(t *testing.T) {
		for _, n := range []string{"a", "b", "c"} {
			for i := 0; i < 20; i++ {
				got := send(t, http.MethodGet, l.http, "shop.test", "/x", "theme=dark; SID="+cookieValue(addr[n])+"; lang=en")
				if got.from() != n || got.header.Get("Set-Cookie") != "" {
					t.Fatalf("request %d with %s's cookie went to %q setting %q", i, n, got.from(), got.header.Get("Set-Cookie"))
				}
				// The backend sees the cookie, as the built-in proxy passes it.
				if !strings.Contains(got.body, "SID="+cookieValue(addr[n])) {
					t.Fatalf("backend got %q", got.body)
				}
			}
		}
	})
	t.Run("a client that follows its Set-Cookie sticks", func(t *testing.T) {
		first := send(t, http.MethodGet, l.http, "shop.test", "/", "")
		c := strings.SplitN(first.header.Get("Set-Cookie"), ";", 2)[0]
		for i := 0; i < 30; i++ {
			if got := send(t, http.MethodGet, l.http, "shop.test", "/", c); got.from() != first.from() {
				t.Fatalf("request %d went to %s, first to %s", i, got.from(), first.from())
			}
		}
	})
	t.Run("an unknown value is balanced and pinned anew", func(t *testing.T) {
		got := send(t, http.MethodGet, l.http, "shop.test", "/", "SID=00bad")
		if got.code != 200 || got.header.Get("Set-Cookie") != pin("SID", got.from(), "/") {
			t.Fatalf("got %d from %s setting %q", got.code, got.from(), got.header.Get("Set-Cookie"))
		}
	})
	t.Run("route path and rewrite", func(t *testing.T) {
		got := send(t, http.MethodGet, l.http, "shop.test", "/cart/items?n=2", "SID="+cookieValue(addr["a"]))
		if !strings.HasPrefix(got.body, got.from()+" /items?n=2 ") || got.header.Get("Set-Cookie") != pin("cart.id", got.from(), "/cart") {
			t.Fatalf("got %q setting %q", got.body, got.header.Get("Set-Cookie"))
		}
		for i := 0; i < 10; i++ {
			if got := send(t, http.MethodGet, l.http, "shop.test", "/cart", "cart.id="+cookieValue(addr["c"])); got.from() != "c" {
				t.Fatalf("cart.id of c went to %s", got.from())
			}
		}
	})
	t.Run("the same cookie as the built-in proxy", func(t *testing.T) {
		ref := builtinProxy(t, shop(bs...))
		for i := 0; i < 6; i++ {
			want := send(t, http.MethodGet, ref, "shop.test", "/cart/x", "")
			got := send(t, http.MethodGet, l.http, "shop.test", "/cart/x", "cart.id="+cookieValue(addr[want.from()])+"x")
			if got.header.Get("Set-Cookie") != pin("cart.id", got.from(), "/cart") || want.header.Get("Set-Cookie") != pin("cart.id", want.from(), "/cart") {
				t.Fatalf("nginx set %q (from %s), builtin %q (from %s)", got.header.Get("Set-Cookie"), got.from(), want.header.Get("Set-Cookie"), want.from())
			}
			// builtin's cookie pins the client in nginx too.
			c := strings.SplitN(want.header.Get("Set-Cookie"), ";", 2)[0]
			if again := send(t, http.MethodGet, l.http, "shop.test", "/cart/x", c); again.from() != want.from() || again.header.Get("Set-Cookie") != "" {
				t.Fatalf("builtin's %q went to %s in nginx, setting %q", c, again.from(), again.header.Get("Set-Cookie"))
			}
		}
	})
	t.Run("a dead pinned backend hands the client over", func(t *testing.T) {
		srvs["c"].Close()
		got := send(t, http.MethodGet, l.http, "shop.test", "/", "SID="+cookieValue(addr["c"]))
		if got.code != 200 || got.from() == "c" || got.header.Get("Set-Cookie") != pin("SID", got.from(), "/") {
			t.Fatalf("got %d from %q setting %q", got.code, got.from(), got.header.Get("Set-Cookie"))
		}
	})
	t.Run("a pinned backend that leaves the table hands the client over", func(t *testing.T) {
		if err := l.d.Apply(t.Context(), shop(rb["a"])); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "b's client moved to a", func() error {
			got, err := trySend(http.MethodGet, l.http, "shop.test", "/", "SID="+cookieValue(addr["b"]))
			if err != nil {
				return err
			}
			if got.from() != "a" || got.header.Get("Set-Cookie") != pin("SID", "a", "/") {
				return fmt.Errorf("got %d from %q setting %q", got.code, got.from(), got.header.Get("Set-Cookie"))
			}
			return nil
		})
	})
}

// TestStickyCookieFallbackBalance: a sticky route keeps its algorithm for
// requests without the cookie where nginx can (source hashes the client
// address; leastconn cannot be combined and is reported).
func TestStickyCookieFallbackBalance(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	addr := map[string]string{}
	var bs []routing.Backend
	for _, n := range []string{"a", "b", "c"} {
		_, b := stickyBackend(t, n)
		addr[n] = b.Address
		bs = append(bs, b)
	}
	l.apply(t, table(host("shop.test", routing.Route{Path: "/", Balance: routing.Source, StickyCookie: "SID", Backends: bs})), "shop.test", "/", 200)
	first := send(t, http.MethodGet, l.http, "shop.test", "/", "").from()
	for i := 0; i < 20; i++ {
		if got := send(t, http.MethodGet, l.http, "shop.test", "/", ""); got.from() != first {
			t.Fatalf("source: cookieless request %d from the same address went to %s, first to %s", i, got.from(), first)
		}
	}
	other := "a"
	if first == "a" {
		other = "b"
	}
	for i := 0; i < 10; i++ {
		if got := send(t, http.MethodGet, l.http, "shop.test", "/", "SID="+cookieValue(addr[other])); got.from() != other {
			t.Fatalf("source: the cookie of %s went to %s", other, got.from())
		}
	}
	if err := l.d.Apply(t.Context(), table(host("shop.test", routing.Route{Path: "/", Balance: routing.LeastConn, StickyCookie: "SID", Backends: bs}))); err != nil {
		t.Fatal(err)
	}
	if s := l.d.Stats(); len(s.Skipped) != 1 || !strings.Contains(s.Skipped[0].Reason, "round robin, not leastconn") {
		t.Errorf("skipped %+v, want the leastconn fallback reported", s.Skipped)
	}
}

// TestStickyCookieScale: many sticky routes (seven variables each) and a
// sticky route of many backends (maps that list them all) pass nginx -t
// without its "could not build optimal ... hash" warnings.
func TestStickyCookieScale(t *testing.T) {
	bin := testenv.NginxBinary(t)
	dir := t.TempDir()
	var hosts []routing.Host
	for i := 0; i < 300; i++ {
		hosts = append(hosts, host(fmt.Sprintf("h%d.example.com", i), sticky(route("/", fmt.Sprintf("10.0.%d.%d:80", i/250, i%250+1), "10.9.0.1:80"), "SID")))
	}
	var many []string
	for i := 0; i < 3000; i++ {
		many = append(many, fmt.Sprintf("10.1.%d.%d:8080", i/256, i%256))
	}
	hosts = append(hosts, host("big.example.com", sticky(route("/", many...), "SID")))
	s := goldenSettings()
	s.HTTPAddr, s.HTTPSAddr = "127.0.0.1:8080", "127.0.0.1:8443"
	s.Runtime = Runtime{PidFile: filepath.Join(dir, "nginx.pid"), ErrorLog: "stderr", TempDir: dir}
	conf := renderCase(t, goldenCase{table: table(hosts...)}, s)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-p", dir+"/", "-e", "stderr", "-c", file).CombinedOutput()
	if err != nil || strings.Contains(string(out), "could not build") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}
