package builtin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

func TestName(t *testing.T) {
	if got := New(Options{}).Name(); got != "builtin" {
		t.Errorf("Name() = %q, want builtin", got)
	}
}

func TestRouting(t *testing.T) {
	web, api, static := newBackend(t, "web"), newBackend(t, "api"), newBackend(t, "static")
	apiRoute := routeOf("/api", addr(api))
	apiRoute.StripPath = true
	app := hostOf("app.example", apiRoute, routeOf("/", addr(web)))
	app.Aliases = []string{"www.app.example"}
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(
		app,
		hostOf("other.example", routeOf("/static", addr(static))),
		hostOf("empty.example", routeOf("/")),
	))
	srv := serve(t, p)

	tests := []struct {
		name        string
		host        string
		target      string
		wantStatus  int
		wantBackend string
		wantPath    string
		wantQuery   string
		wantKind    string // X-Interlock-Error
		wantBody    string // exact body of the proxy's own answers
	}{
		{name: "primary name", host: "app.example", target: "/", wantStatus: 200, wantBackend: "web", wantPath: "/"},
		{name: "alias", host: "www.app.example", target: "/x", wantStatus: 200, wantBackend: "web", wantPath: "/x"},
		{name: "case port and trailing dot", host: "WWW.App.Example.:8080", target: "/", wantStatus: 200, wantBackend: "web", wantPath: "/"},
		{name: "prefix itself stripped to root", host: "app.example", target: "/api", wantStatus: 200, wantBackend: "api", wantPath: "/"},
		{name: "prefix with slash stripped to root", host: "app.example", target: "/api/", wantStatus: 200, wantBackend: "api", wantPath: "/"},
		{name: "under prefix stripped, query kept", host: "app.example", target: "/api/users/7?x=1&y=a%20b", wantStatus: 200, wantBackend: "api", wantPath: "/users/7", wantQuery: "x=1&y=a%20b"},
		{name: "not on a segment boundary", host: "app.example", target: "/apis", wantStatus: 200, wantBackend: "web", wantPath: "/apis"},
		{name: "query kept without strip", host: "app.example", target: "/q?a=1&a=2", wantStatus: 200, wantBackend: "web", wantPath: "/q", wantQuery: "a=1&a=2"},
		{name: "no strip keeps prefix", host: "other.example", target: "/static/x.css", wantStatus: 200, wantBackend: "static", wantPath: "/static/x.css"},
		{
			name: "known host, no route for path", host: "other.example", target: "/staticx",
			wantStatus: 404, wantKind: kindNoRoute, wantBody: "interlock: no route for host \"other.example\" path \"/staticx\"\n",
		},
		{
			name: "unknown host", host: "Unknown.Example:81", target: "/",
			wantStatus: 404, wantKind: kindNoRoute, wantBody: "interlock: no route for host \"unknown.example\"\n",
		},
		{
			name: "route without backends", host: "empty.example", target: "/x",
			wantStatus: 503, wantKind: kindNoLiveBackend, wantBody: "interlock: no live backend for host \"empty.example\" path \"/\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := get(t, srv, tt.host, tt.target)
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", res.status, tt.wantStatus, res.body)
			}
			if got := res.header.Get(errorHeader); got != tt.wantKind {
				t.Errorf("%s = %q, want %q", errorHeader, got, tt.wantKind)
			}
			if tt.wantBody != "" {
				if res.body != tt.wantBody {
					t.Errorf("body = %q, want %q", res.body, tt.wantBody)
				}
				if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type = %q, want text/plain", ct)
				}
				return
			}
			if res.echo.Backend != tt.wantBackend || res.echo.Path != tt.wantPath || res.echo.RawQuery != tt.wantQuery {
				t.Errorf("reached %s path %q query %q, want %s path %q query %q",
					res.echo.Backend, res.echo.Path, res.echo.RawQuery, tt.wantBackend, tt.wantPath, tt.wantQuery)
			}
		})
	}
}

func TestStripPathEscaped(t *testing.T) {
	api := newBackend(t, "api")
	r := routeOf("/api", addr(api))
	r.StripPath = true
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", r)))
	srv := serve(t, p)

	res := get(t, srv, "app.example", "/api/a%2Fb/c")
	if res.echo.Path != "/a/b/c" || res.echo.RawPath != "/a%2Fb/c" {
		t.Errorf("backend saw path %q raw %q, want /a/b/c raw /a%%2Fb/c", res.echo.Path, res.echo.RawPath)
	}
}

func TestForwardedHeaders(t *testing.T) {
	b := newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	srv := serve(t, p)

	tests := []struct {
		name   string
		host   string
		header http.Header
	}{
		{name: "no incoming headers", host: "app.example"},
		{name: "host with port", host: "app.example:8080"},
		{
			name: "forged incoming headers",
			host: "app.example",
			header: http.Header{
				"X-Forwarded-For":   {"6.6.6.6, 7.7.7.7"},
				"X-Forwarded-Host":  {"evil.example"},
				"X-Forwarded-Proto": {"https"},
				"Forwarded":         {"for=6.6.6.6;proto=https"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, srv.Client(), srv, http.MethodGet, tt.host, "/", nil, tt.header)
			want := echo{Backend: "b", Method: "GET", Host: tt.host, Path: "/", XFF: "127.0.0.1", XFHost: tt.host, XFProto: "http"}
			if res.echo != want {
				t.Errorf("backend saw\n %+v\nwant\n %+v", res.echo, want)
			}
		})
	}
}

func TestApplyRejectsInvalidTableAndKeepsOld(t *testing.T) {
	b := newBackend(t, "old")
	good := tableOf(hostOf("app.example", routeOf("/", addr(b))))
	withAlias := func(h routing.Host, aliases ...string) routing.Host { h.Aliases = aliases; return h }
	withBalance := func(r routing.Route, bal routing.Balance) routing.Route { r.Balance = bal; return r }

	tests := []struct {
		name  string
		table routing.Table
		want  []string // substrings of the error
	}{
		{
			name:  "unparsable backend address",
			table: tableOf(hostOf("app.example", routeOf("/api", "127.0.0.1:80", "not-an-address"))),
			want:  []string{`host "app.example"`, `route "/api"`, `backend "not-an-address"`, "ip:port"},
		},
		{
			name:  "host name instead of ip",
			table: tableOf(hostOf("app.example", routeOf("/", "backend.local:80"))),
			want:  []string{`backend "backend.local:80"`, "ip:port"},
		},
		{
			name:  "port zero",
			table: tableOf(hostOf("app.example", routeOf("/", "10.0.0.1:0"))),
			want:  []string{`backend "10.0.0.1:0"`, "1-65535"},
		},
		{
			name:  "relative path",
			table: tableOf(hostOf("app.example", routeOf("api", "10.0.0.1:80"))),
			want:  []string{`route "api"`, "absolute"},
		},
		{
			name:  "trailing slash",
			table: tableOf(hostOf("app.example", routeOf("/api/", "10.0.0.1:80"))),
			want:  []string{`route "/api/"`, "trailing slash"},
		},
		{
			name:  "unknown balance",
			table: tableOf(hostOf("app.example", withBalance(routeOf("/", "10.0.0.1:80"), "fastest"))),
			want:  []string{`route "/"`, `"fastest"`, "roundrobin"},
		},
		{
			name: "alias claimed by another host",
			table: tableOf(
				hostOf("a.example", routeOf("/", "10.0.0.1:80")),
				withAlias(hostOf("b.example", routeOf("/", "10.0.0.2:80")), "a.example"),
			),
			want: []string{`"a.example"`, `"b.example"`, "one host"},
		},
		{
			name:  "empty host name",
			table: tableOf(hostOf("", routeOf("/", "10.0.0.1:80"))),
			want:  []string{"empty name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t, Options{}, nil)
			mustApply(t, p, good)
			srv := serve(t, p)

			err := p.Apply(context.Background(), tt.table)
			if err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if res := get(t, srv, "app.example", "/"); res.status != 200 || res.echo.Backend != "old" {
				t.Errorf("after a failed Apply: status %d backend %q, want the old table serving", res.status, res.echo.Backend)
			}
			if s := p.Stats(); len(s) != 1 || s[0].Address != addr(b) {
				t.Errorf("after a failed Apply Stats() = %+v, want only the old backend", s)
			}
		})
	}
}

func TestApplyCanceledContext(t *testing.T) {
	p := newTestProxy(t, Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Apply(ctx, tableOf(hostOf("app.example", routeOf("/", "10.0.0.1:80"))))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a canceled context = %v, want context.Canceled", err)
	}
}

func TestApplySkipsTCPRoutes(t *testing.T) {
	web := newBackend(t, "web")
	tcp := func(path string) routing.Route {
		r := routeOf(path, "10.0.0.9:5432")
		r.Protocol = routing.TCP
		return r
	}
	log := &syncBuffer{}
	p := newTestProxy(t, Options{}, log)
	mustApply(t, p, tableOf(
		hostOf("db.example", tcp("/")),
		hostOf("mixed.example", tcp("/db"), routeOf("/", addr(web))),
	))
	srv := serve(t, p)

	warns := log.lines("tcp routes skipped")
	if len(warns) != 1 || !strings.Contains(warns[0], "db.example") || !strings.Contains(warns[0], "mixed.example") || !strings.Contains(warns[0], "level=WARN") {
		t.Errorf("want one warning naming both hosts, got %q", warns)
	}
	if res := get(t, srv, "db.example", "/"); res.status != 404 {
		t.Errorf("tcp-only host: status %d, want 404", res.status)
	}
	if res := get(t, srv, "mixed.example", "/db"); res.status != 200 || res.echo.Backend != "web" {
		t.Errorf("mixed host: status %d backend %q, want the http route", res.status, res.echo.Backend)
	}
	if s := p.Stats(); len(s) != 1 {
		t.Errorf("Stats() = %+v, want only the http backend", s)
	}
}

func TestBackendStateSurvivesApply(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	both := tableOf(hostOf("app.example", routeOf("/", addr(a), addr(b))))
	onlyA := tableOf(hostOf("app.example", routeOf("/", addr(a))))
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, both)
	srv := serve(t, p)
	for range 4 {
		get(t, srv, "app.example", "/")
	}
	if sa, sb := statsOf(t, p, addr(a)), statsOf(t, p, addr(b)); sa.Requests != 2 || sb.Requests != 2 {
		t.Fatalf("after 4 requests: a=%d b=%d, want 2 each", sa.Requests, sb.Requests)
	}

	t.Run("kept across a swap", func(t *testing.T) {
		mustApply(t, p, onlyA)
		if s := p.Stats(); len(s) != 1 || s[0].Address != addr(a) || s[0].Requests != 2 {
			t.Errorf("Stats() = %+v, want only a with its 2 requests", s)
		}
	})
	t.Run("pruned address starts afresh", func(t *testing.T) {
		mustApply(t, p, both)
		if sb := statsOf(t, p, addr(b)); sb.Requests != 0 {
			t.Errorf("b came back with %d requests, want 0", sb.Requests)
		}
		if sa := statsOf(t, p, addr(a)); sa.Requests != 2 {
			t.Errorf("a has %d requests, want 2", sa.Requests)
		}
	})
}

func TestStatsSortedByAddress(t *testing.T) {
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(
		hostOf("z.example", routeOf("/", "10.0.0.3:80", "10.0.0.1:80")),
		hostOf("a.example", routeOf("/", "10.0.0.2:80", "10.0.0.1:80")),
	))
	var got []string
	for _, s := range p.Stats() {
		got = append(got, s.Address)
	}
	want := []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Stats() addresses = %v, want %v (shared address listed once)", got, want)
	}
}

func TestKeepAliveToClient(t *testing.T) {
	b := newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	srv := serve(t, p)

	var conns atomic.Int32
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			conns.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, address)
		},
	}}
	t.Cleanup(client.CloseIdleConnections)
	for range 5 {
		if res := do(t, client, srv, http.MethodGet, "app.example", "/", nil, nil); res.status != 200 {
			t.Fatalf("status %d", res.status)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 sequential requests used %d client connections, want 1 (keep-alive)", n)
	}
}
