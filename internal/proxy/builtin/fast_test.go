package builtin

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// endpoint is one engine serving a proxy of its own (same options, same
// table), so that ejections and round robin of one never leak into the
// other.
type endpoint struct {
	engine string
	p      *Proxy
	srv    *httptest.Server // only URL and Listener are set for fasthttp
	client *http.Client
	al     *AccessLog
	logBuf *syncBuffer
}

// newEndpoints serves tbl with opts through ServeHTTP on a net/http server
// and through a FastServer, each on its own loopback listener.
func newEndpoints(t *testing.T, opts Options, tbl routing.Table, maxHeader int) []*endpoint {
	t.Helper()
	var out []*endpoint
	for _, engine := range []string{"nethttp", "fasthttp"} {
		o := opts
		al, buf := memoryAccessLog(t, AccessLogJSON)
		o.AccessLog = al
		p := newTestProxy(t, o, nil)
		mustApply(t, p, tbl)
		e := &endpoint{engine: engine, p: p, al: al, logBuf: buf}
		if engine == "nethttp" {
			srv := httptest.NewUnstartedServer(p)
			srv.Config.MaxHeaderBytes = maxHeader
			srv.Start()
			t.Cleanup(srv.Close)
			e.srv = srv
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			fs := p.NewFastServer(FastOptions{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second, MaxHeaderBytes: maxHeader})
			done := make(chan error, 1)
			go func() { done <- fs.Serve(ln) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := fs.Shutdown(ctx); err != nil {
					t.Errorf("fast server shutdown: %v", err)
				}
				if err := <-done; err != http.ErrServerClosed {
					t.Errorf("fast server Serve returned %v, want http.ErrServerClosed", err)
				}
			})
			e.srv = &httptest.Server{URL: "http://" + ln.Addr().String(), Listener: ln}
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 8}
		e.client = &http.Client{Transport: tr, Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		t.Cleanup(tr.CloseIdleConnections)
		out = append(out, e)
	}
	return out
}

// slowBackend answers after delay.
func slowBackend(t *testing.T, delay time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
		io.WriteString(w, "late\n")
	}))
	t.Cleanup(srv.Close)
	return addr(srv)
}

// fastCase is one request, or a short series, sent to both engines.
type fastCase struct {
	name   string
	method string
	host   string
	target string
	body   string
	header http.Header
	// times sends the request this many times (default 1); every answer
	// must be the same.
	times int
}

// summary is what must be the same across engines.
type summary struct {
	status                                     int
	errKind, location, cacheControl, ctype, xc string
	body                                       string
	echo                                       echo
}

func summarize(r response) summary {
	s := summary{status: r.status, errKind: r.header.Get(errorHeader), location: r.header.Get("Location"),
		cacheControl: r.header.Get("Cache-Control"), ctype: r.header.Get("Content-Type"), xc: r.header.Get("X-Content-Type-Options"),
		echo: r.echo}
	if r.echo.Backend == "" {
		s.body = r.body
	}
	return s
}

// TestFastParity sends the same requests through the net/http engine and
// the fasthttp engine and wants the same answers: status codes, the
// proxy's own headers, what the backend saw (forwarded headers, path,
// body), retries, limits, sticky cookies, strip path, upgrades and access
// log fields.
func TestFastParity(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	dead := deadAddr(t)
	slow := slowBackend(t, 2*time.Second)
	up := newUpgradeBackend(t, "")

	stripped := routeOf("/app", addr(a))
	stripped.StripPath = true
	limited := routeOf("/small", addr(a))
	limited.Limits = &routing.Limits{MaxBodyBytes: 8}
	slowRoute := routeOf("/slow", slow)
	slowRoute.Limits = &routing.Limits{ResponseHeaderTimeout: 200 * time.Millisecond}
	sticky := routeOf("/sticky", addr(a), addr(b))
	sticky.StickyCookie = "pin"
	tlsOnly := hostOf("secure.example", routeOf("/", addr(a)))
	tlsOnly.TLS = &routing.TLS{Only: true}
	tlsServed := hostOf("both.example", routeOf("/", addr(a)))
	tlsServed.TLS = &routing.TLS{}
	tbl := tableOf(
		hostOf("app.example", routeOf("/", addr(a)), stripped, limited, slowRoute, sticky,
			routeOf("/retry", dead, addr(b)), routeOf("/down", dead), routeOf("/none"), routeOf("/socket", addr(up))),
		routing.Host{Name: "old.example", RedirectTo: "https://new.example"},
		tlsOnly, tlsServed,
	)

	cases := []fastCase{
		{name: "get", target: "/x/y?a=1&b=2"},
		{name: "head", method: http.MethodHead, target: "/x"},
		{name: "post body", method: http.MethodPost, target: "/form", body: "hello=world"},
		{name: "upper-case host with port", host: "APP.example:80", target: "/"},
		{name: "untrusted forwarded headers replaced", target: "/", header: http.Header{
			"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil"}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"for=6.6.6.6"}}},
		{name: "hop-by-hop removed", target: "/", header: http.Header{"Connection": {"X-Secret"}, "X-Secret": {"1"}, "Keep-Alive": {"timeout=5"}}},
		{name: "unknown host", host: "nope.example", target: "/"},
		{name: "no route for path", host: "old.example", target: "/x?y=1"},
		{name: "redirect post", method: http.MethodPost, host: "old.example", target: "/x", body: "b"},
		{name: "ssl_only get", host: "secure.example", target: "/p?q=1"},
		{name: "ssl_only post", method: http.MethodPost, host: "secure.example", target: "/p", body: "b"},
		{name: "tls host served over plain http", host: "both.example", target: "/z"},
		{name: "no backend", target: "/none"},
		{name: "strip path", target: "/app/x/y?q=1"},
		{name: "strip path to root", target: "/app"},
		{name: "escaped path falls back", target: "/app/a%2Fb"},
		{name: "dot segment falls back", target: "/app/./x"},
		{name: "dead backend retried", target: "/retry", times: 4},
		{name: "every backend dead", target: "/down"},
		{name: "post to dead backend retried", method: http.MethodPost, target: "/retry", body: "x", times: 2},
		{name: "body under route limit", method: http.MethodPost, target: "/small", body: "1234"},
		{name: "body over route limit", method: http.MethodPost, target: "/small", body: "0123456789"},
		{name: "response header timeout", target: "/slow"},
	}
	eps := newEndpoints(t, Options{}, tbl, 0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.method == "" {
				c.method = http.MethodGet
			}
			if c.host == "" {
				c.host = "app.example"
			}
			var got [2][]summary
			for k, e := range eps {
				for range max(c.times, 1) {
					var body io.Reader
					if c.body != "" {
						body = strings.NewReader(c.body)
					}
					r := do(t, e.client, e.srv, c.method, c.host, c.target, body, c.header)
					got[k] = append(got[k], summarize(r))
				}
			}
			for i := range got[0] {
				if got[0][i] != got[1][i] {
					t.Errorf("request %d:\nnethttp  %+v\nfasthttp %+v", i+1, got[0][i], got[1][i])
				}
			}
			if got[1][0].status == http.StatusOK && got[1][0].echo.Backend != "" && got[1][0].echo.XFF != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want 127.0.0.1", got[1][0].echo.XFF)
			}
		})
	}

	t.Run("fast path taken", func(t *testing.T) {
		tb := eps[1].p.table.Load()
		for path, want := range map[string]bool{"/": true, "/app": true, "/retry": true, "/down": true, "/small": true, "/slow": true, "/socket": false, "/none": false} {
			_, rt := tb.match("app.example", path)
			if got := rt.fast.Load() != nil; got != want {
				t.Errorf("route %s served on the fast path: %v, want %v", path, got, want)
			}
		}
	})

	t.Run("dead backend costs no idempotent request", func(t *testing.T) {
		for _, e := range eps {
			st := statsOf(t, e.p, dead)
			if !st.Ejected || st.Failures == 0 {
				t.Errorf("%s: dead backend stats %+v, want ejected with failures", e.engine, st)
			}
		}
	})

	t.Run("sticky cookie pins", func(t *testing.T) {
		for _, e := range eps {
			first, err := fetch(e.client, e.srv, http.MethodGet, "app.example", "/sticky", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cookies := (&http.Response{Header: first.header}).Cookies()
			if len(cookies) != 1 || cookies[0].Name != "pin" || cookies[0].Path != "/sticky" || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteLaxMode {
				t.Fatalf("%s: Set-Cookie %q, want pin=...; Path=/sticky; HttpOnly; SameSite=Lax", e.engine, first.header.Values("Set-Cookie"))
			}
			for range 6 {
				r := do(t, e.client, e.srv, http.MethodGet, "app.example", "/sticky", nil, http.Header{"Cookie": {"pin=" + cookies[0].Value}})
				if r.echo.Backend != first.echo.Backend {
					t.Fatalf("%s: pinned to %s, answered by %s", e.engine, first.echo.Backend, r.echo.Backend)
				}
				if len(r.header.Values("Set-Cookie")) != 0 {
					t.Fatalf("%s: pinned request got a new cookie %q", e.engine, r.header.Values("Set-Cookie"))
				}
			}
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		for _, e := range eps {
			conn, br, res := upgrade(t, e.srv, "app.example")
			if res.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("%s: upgrade answered %d", e.engine, res.StatusCode)
			}
			echoes(t, conn, br, "ping "+e.engine)
			echoes(t, conn, br, "again")
			conn.Close()
		}
	})

	t.Run("access log", func(t *testing.T) {
		var lines [2][]accessEntry
		for k, e := range eps {
			e.al.Flush()
			e.logBuf.mu.Lock()
			e.logBuf.buf.Reset()
			e.logBuf.mu.Unlock()
			do(t, e.client, e.srv, http.MethodGet, "app.example", "/app/x?q=1", nil, nil)
			do(t, e.client, e.srv, http.MethodPost, "app.example", "/small", strings.NewReader("0123456789"), nil)
			do(t, e.client, e.srv, http.MethodGet, "nope.example", "/", nil, nil)
			do(t, e.client, e.srv, http.MethodGet, "app.example", "/down", nil, nil)
			for _, l := range accessLines(t, e.al, e.logBuf) {
				en := parseJSONEntry(t, l)
				if en.Path == "/socket" {
					continue // the tunnel of the upgrade above, logged once it ends
				}
				en.Time, en.DurationMS = "", 0
				lines[k] = append(lines[k], en)
			}
		}
		if len(lines[0]) != 4 || len(lines[0]) != len(lines[1]) {
			t.Fatalf("lines: nethttp %d, fasthttp %d, want 4 each:\nnethttp  %+v\nfasthttp %+v", len(lines[0]), len(lines[1]), lines[0], lines[1])
		}
		for i := range lines[0] {
			if lines[0][i] != lines[1][i] {
				t.Errorf("line %d:\nnethttp  %+v\nfasthttp %+v", i+1, lines[0][i], lines[1][i])
			}
		}
	})
}

// TestFastTrustedForwarded: a trusted peer's forwarded headers are kept
// (the peer appended) by both engines.
func TestFastTrustedForwarded(t *testing.T) {
	a := newBackend(t, "a")
	eps := newEndpoints(t, Options{ForwardedTrusted: prefixes(t, "127.0.0.0/8")}, tableOf(hostOf("app.example", routeOf("/", addr(a)))), 0)
	for _, hdr := range []http.Header{
		{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"front.example"}, "X-Forwarded-Proto": {"https"}, "Forwarded": {"for=6.6.6.6;proto=https"}},
		{"X-Forwarded-For": {"6.6.6.6", "7.7.7.7"}},
		{},
	} {
		var got [2]echo
		for k, e := range eps {
			got[k] = do(t, e.client, e.srv, http.MethodGet, "app.example", "/", nil, hdr).echo
		}
		if got[0] != got[1] {
			t.Errorf("headers %v:\nnethttp  %+v\nfasthttp %+v", hdr, got[0], got[1])
		}
	}
}

// TestFastHeaderTooLarge: a head past MaxHeaderBytes gets 431 from both.
func TestFastHeaderTooLarge(t *testing.T) {
	a := newBackend(t, "a")
	eps := newEndpoints(t, Options{}, tableOf(hostOf("app.example", routeOf("/", addr(a)))), 4096)
	for _, e := range eps {
		req := "GET / HTTP/1.1\r\nHost: app.example\r\nX-Big: " + strings.Repeat("x", 20<<10) + "\r\n\r\n"
		out, _ := rawExchange(t, e.srv.Listener.Addr().String(), []byte(req), 5*time.Second)
		if !strings.HasPrefix(out, "HTTP/1.1 431 ") || strings.Contains(out, errorHeader) {
			t.Errorf("%s: answered %q, want a 431 without %s", e.engine, firstLine(out), errorHeader)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// TestFastShutdownDrains: Shutdown waits for a request in flight, which
// gets its answer.
func TestFastShutdownDrains(t *testing.T) {
	slow := slowBackend(t, 300*time.Millisecond)
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", slow))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := p.NewFastServer(FastOptions{})
	go fs.Serve(ln)
	srv := &httptest.Server{URL: "http://" + ln.Addr().String(), Listener: ln}
	var wg sync.WaitGroup
	var res response
	var ferr error
	wg.Go(func() {
		res, ferr = fetch(http.DefaultClient, srv, http.MethodGet, "app.example", "/", nil, nil)
	})
	time.Sleep(100 * time.Millisecond) // the request is at the backend
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	if ferr != nil || res.status != http.StatusOK || res.body != "late\n" {
		t.Fatalf("in-flight request: %d %q %v, want 200 late", res.status, res.body, ferr)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Errorf("listener still accepts after Shutdown")
	}
}
