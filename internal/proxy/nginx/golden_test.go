package nginx

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current renderer")

func backends(addrs ...string) []routing.Backend {
	out := make([]routing.Backend, len(addrs))
	for i, a := range addrs {
		out[i] = routing.Backend{Address: a, Container: "c" + a, Name: "n" + a}
	}
	return out
}

func route(path string, addrs ...string) routing.Route {
	return routing.Route{Path: path, Backends: backends(addrs...)}
}

func host(name string, routes ...routing.Route) routing.Host {
	return routing.Host{Name: name, Routes: routes}
}

func table(hosts ...routing.Host) routing.Table {
	t := routing.Table{Hosts: hosts}
	t.Normalize()
	return t
}

// goldenSettings are fixed paths, so the golden files do not depend on the
// machine.
func goldenSettings() Settings {
	p, _ := tlsconf.Lookup(tlsconf.Intermediate)
	return Settings{
		HTTPAddr: ":80", HTTPSAddr: ":443",
		CertDir:     "/etc/interlock/certs",
		DefaultCert: "/var/lib/interlock/nginx/default.crt", DefaultKey: "/var/lib/interlock/nginx/default.key",
		Profile:      p,
		Runtime:      Runtime{PidFile: "/var/lib/interlock/nginx/nginx.pid", ErrorLog: "stderr", TempDir: "/var/lib/interlock/nginx/tmp"},
		StreamModule: DefaultStreamModule, SocketDir: "/var/lib/interlock/nginx",
	}
}

// goldenCase is one label feature: a table, and settings changes.
type goldenCase struct {
	name     string
	table    routing.Table
	settings func(*Settings)
}

func goldenCases() []goldenCase {
	withTLS := func(h routing.Host, tl routing.TLS) routing.Host { h.TLS = &tl; return h }
	ws := func(r routing.Route, paths ...string) routing.Route { r.WebSocketPaths = paths; return r }
	strip := func(r routing.Route) routing.Route { r.StripPath = true; return r }
	bal := func(r routing.Route, b routing.Balance) routing.Route { r.Balance = b; return r }
	btls := func(r routing.Route, verify bool) routing.Route {
		r.BackendTLS = &routing.BackendTLS{Verify: verify}
		return r
	}
	profile := func(name string) func(*Settings) {
		return func(s *Settings) { s.Profile, _ = tlsconf.Lookup(name) }
	}
	sslHost := withTLS(host("secure.example.com", route("/", "10.0.0.1:443")), routing.TLS{})
	return []goldenCase{
		{name: "empty", table: table()},
		{name: "hostname", table: table(host("web.example.com", route("/", "127.0.0.1:32768")))},
		{name: "round_robin_backends", table: table(host("web.example.com", route("/", "127.0.0.1:32769", "127.0.0.1:32768", "[::1]:32770")))},
		{name: "alias_domain", table: table(routing.Host{Name: "web.example.com", Aliases: []string{"www.example.com", "example.com"},
			Routes: []routing.Route{route("/", "127.0.0.1:32768")}})},
		{name: "context_root", table: table(host("app.example.com",
			route("/api", "127.0.0.1:9001"), route("/api/v2", "127.0.0.1:9002"), route("/", "127.0.0.1:9000")))},
		{name: "context_root_no_root_route", table: table(host("app.example.com", route("/app", "127.0.0.1:9001")))},
		{name: "context_root_rewrite", table: table(host("app.example.com", strip(route("/app", "127.0.0.1:9001"))))},
		{name: "context_root_escaped", table: table(host("app.example.com", route("/caf%C3%A9/%24x%22y", "127.0.0.1:9001")))},
		{name: "websocket_endpoint", table: table(host("chat.example.com",
			ws(route("/", "127.0.0.1:9001"), "/ws", "/socket/live")))},
		{name: "websocket_rewrite", table: table(host("chat.example.com",
			strip(ws(route("/chat", "127.0.0.1:9001"), "/chat", "/chat/ws")), route("/chat/ws/admin", "127.0.0.1:9002")))},
		{name: "websocket_shadowed", table: table(host("chat.example.com",
			ws(route("/api", "127.0.0.1:9001"), "/api/v1/ws"), route("/api/v1", "127.0.0.1:9002")))},
		{name: "balance_leastconn", table: table(host("web.example.com", bal(route("/", "127.0.0.1:1", "127.0.0.1:2"), routing.LeastConn)))},
		{name: "balance_source_ip_hash", table: table(host("web.example.com", bal(route("/", "127.0.0.1:1", "127.0.0.1:2"), routing.Source)))},
		{name: "balance_random", table: table(host("web.example.com", bal(route("/", "127.0.0.1:1", "127.0.0.1:2"), routing.Random)))},
		{name: "no_backend", table: table(host("web.example.com", route("/"), route("/x", "127.0.0.1:1")))},
		{name: "ssl_default_cert", table: table(sslHost)},
		{name: "ssl_only", table: table(withTLS(host("secure.example.com", route("/", "127.0.0.1:1")), routing.TLS{Only: true}))},
		{name: "ssl_only_other_port", table: table(withTLS(host("secure.example.com", route("/", "127.0.0.1:1")), routing.TLS{Only: true})),
			settings: func(s *Settings) { s.HTTPAddr, s.HTTPSAddr = "127.0.0.1:8080", "127.0.0.1:8443" }},
		{name: "ssl_cert", table: table(withTLS(host("secure.example.com", route("/", "127.0.0.1:1")),
			routing.TLS{CertFile: "secure/cert.pem", KeyFile: "secure/key.pem"}), host("plain.example.com", route("/", "127.0.0.1:2")))},
		{name: "ssl_cert_missing", table: table(withTLS(host("secure.example.com", route("/", "127.0.0.1:1")),
			routing.TLS{CertFile: "missing.pem", KeyFile: "missing.key"})),
			settings: func(s *Settings) { s.CertMissing = func(p string) bool { return filepath.Base(p) == "missing.pem" } }},
		{name: "ssl_backend_verify", table: table(host("web.example.com", btls(route("/", "10.0.0.1:8443"), true)))},
		{name: "ssl_backend_noverify", table: table(host("web.example.com", btls(route("/", "10.0.0.1:8443"), false)))},
		{name: "tcp_skipped", table: table(host("db.example.com", routing.Route{Path: "/", Protocol: routing.TCP, Backends: backends("127.0.0.1:5432")}),
			host("web.example.com", route("/", "127.0.0.1:1")))},
		{name: "health_check_and_options_ignored", table: table(host("web.example.com", routing.Route{Path: "/",
			HealthCheck: &routing.HealthCheck{Path: "/health", Interval: 5 * time.Second}, BackendOptions: []string{"forwardfor"},
			Backends: backends("127.0.0.1:1")}))},
		{name: "tls_modern", table: table(sslHost), settings: profile(tlsconf.Modern)},
		{name: "tls_old", table: table(sslHost), settings: profile(tlsconf.Old)},
		{name: "listen_ipv6", table: table(host("web.example.com", route("/", "[::1]:9000"))),
			settings: func(s *Settings) { s.HTTPAddr = "[::1]:8080" }},
		{name: "container_runtime", table: table(host("web.example.com", route("/", "172.17.0.3:80"))),
			settings: func(s *Settings) { s.Runtime = Runtime{} }},
		{name: "default_host", table: table(dflt(host("fallback.example.com", route("/", "127.0.0.1:1"), route("/api", "127.0.0.1:2"))),
			host("app.example.com", route("/app", "127.0.0.1:3")), host("web.example.com", route("/", "127.0.0.1:4")))},
		{name: "default_host_tls", table: table(dflt(withTLS(host("fallback.example.com", route("/", "127.0.0.1:1")), routing.TLS{})),
			withTLS(host("secure.example.com", route("/", "127.0.0.1:2")), routing.TLS{Only: true}),
			routing.Host{Name: "plain.example.com", Aliases: []string{"www.plain.example.com"}, Routes: []routing.Route{route("/", "127.0.0.1:3")}})},
		{name: "default_host_redirect", table: table(dflt(redirect("old.example.com", "https://new.example.com")),
			host("web.example.com", route("/", "127.0.0.1:1")))},
		{name: "redirect", table: table(redirect("old.example.com", "https://new.example.com:8443"),
			redirect("www.example.com", "http://example.com"), host("example.com", route("/", "127.0.0.1:1")))},
		{name: "redirect_tls", table: table(withTLS(redirect("old.example.com", "https://new.example.com"), routing.TLS{}))},
		{name: "sticky_cookie", table: table(host("shop.example.com",
			sticky(route("/", "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"), "SESSION"),
			sticky(strip(route("/cart.v2", "10.0.0.4:8080", "[fd00::5]:8080")), "cart-id.v2")))},
		{name: "sticky_cookie_source", table: table(host("shop.example.com", bal(sticky(route("/", "10.0.0.1:8080", "10.0.0.2:8080"), "SID"), routing.Source)))},
		{name: "sticky_cookie_leastconn", table: table(host("shop.example.com", bal(sticky(route("/", "10.0.0.1:8080", "10.0.0.2:8080"), "SID"), routing.LeastConn)))},
		{name: "sticky_cookie_no_backend", table: table(host("shop.example.com", sticky(route("/"), "SID")))},
		// SNI passthrough (com.docker.lb.ssl_passthrough): the stream block,
		// the HTTPS servers behind it on a unix socket, plain HTTP
		// redirected; the "/" route's backends take the connections.
		{name: "ssl_passthrough", table: table(
			withTLS(routing.Host{Name: "pass.example.com", Aliases: []string{"www.pass.example.com"},
				Routes: []routing.Route{route("/", "10.0.0.1:8443", "10.0.0.2:8443"), route("/api", "10.0.0.3:8443")}}, routing.TLS{Passthrough: true}),
			withTLS(host("secure.example.com", route("/", "127.0.0.1:1")), routing.TLS{Only: true}),
			host("plain.example.com", route("/", "127.0.0.1:2")))},
		// The shortest route when none is "/"; balance source hashes the
		// client's address; a passthrough host without backends is left
		// to the HTTPS servers (which refuse its handshake); a sticky
		// cookie cannot apply.
		{name: "ssl_passthrough_routes", table: table(
			withTLS(host("a.example.com", sticky(bal(route("/app", "10.0.0.1:443", "[fd00::2]:443"), routing.Source), "SID"), route("/app/v2", "10.0.0.3:443")), routing.TLS{Passthrough: true}),
			withTLS(host("b.example.com", bal(route("/", "10.0.0.4:443"), routing.LeastConn)), routing.TLS{Passthrough: true}),
			withTLS(host("c.example.com", bal(route("/", "10.0.0.5:443"), routing.Random)), routing.TLS{Passthrough: true}),
			withTLS(host("empty.example.com", route("/")), routing.TLS{Passthrough: true}))},
		{name: "ssl_passthrough_default_host", table: table(
			dflt(withTLS(host("pass.example.com", route("/", "10.0.0.1:8443")), routing.TLS{Passthrough: true})),
			withTLS(host("secure.example.com", route("/", "127.0.0.1:1")), routing.TLS{}),
			host("plain.example.com", route("/", "127.0.0.1:2"))),
			settings: func(s *Settings) { s.HTTPAddr, s.HTTPSAddr = "127.0.0.1:8080", "127.0.0.1:8443" }},
		{name: "ssl_passthrough_module_builtin", table: table(
			withTLS(host("pass.example.com", route("/", "10.0.0.1:8443")), routing.TLS{Passthrough: true})),
			settings: func(s *Settings) { s.StreamModule = "" }},
		// Without the stream module, passthrough is left out (reported),
		// not the whole file; plain HTTP is still redirected.
		// Every edge setting (PROXY protocol, forwarded headers, access
		// log, timeouts, limits) over a table with plain, TLS, ssl_only
		// and passthrough hosts and a route without backends.
		{name: "edge", table: table(
			host("app.example.com", route("/", "127.0.0.1:1"), route("/api", "127.0.0.1:2"), route("/empty")),
			withTLS(host("secure.example.com", route("/", "127.0.0.1:3")), routing.TLS{Only: true}),
			withTLS(host("pass.example.com", route("/", "10.0.0.1:8443")), routing.TLS{Passthrough: true})),
			settings: func(s *Settings) { s.Edge = goldenEdge() }},
		// The json access log on standard output, PROXY protocol without
		// passthrough (the HTTPS listener takes the header itself).
		{name: "edge_json", table: table(
			host("web.example.com", route("/", "127.0.0.1:1")),
			withTLS(host("secure.example.com", route("/", "127.0.0.1:2")), routing.TLS{})),
			settings: func(s *Settings) {
				s.Edge = Edge{ProxyProtocolTrusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
					AccessLog: AccessLogStdout, AccessLogFormat: AccessLogJSON, ClientIdleTimeout: 1500 * time.Millisecond}
			}},
		// ACME hosts (routing.TLS.ACME): each name's own certificate file
		// once issued (one file, chain and key), the default one until
		// then; HTTP-01 challenges passed to Interlock before the ssl_only
		// redirect.
		{name: "acme", table: table(
			withTLS(routing.Host{Name: "app.example.com", Aliases: []string{"www.app.example.com", "pending.example.com"},
				Routes: []routing.Route{route("/", "127.0.0.1:1")}}, routing.TLS{ACME: true, Only: true}),
			withTLS(host("api.example.com", route("/", "127.0.0.1:2"), route("/v1", "127.0.0.1:3")), routing.TLS{ACME: true}),
			withTLS(host("secure.example.com", route("/", "127.0.0.1:4")), routing.TLS{})),
			settings: func(s *Settings) {
				s.ACMEChallenge = "127.0.0.1:8082"
				s.ACMECert = func(name string) string {
					if name == "app.example.com" || name == "www.app.example.com" || name == "api.example.com" {
						return filepath.Join(s.CertDir, "acme-"+name+".pem")
					}
					return ""
				}
			}},
		// Trusted forwarded headers: ssl_only hosts serve what a trusted
		// peer says came over HTTPS and redirect the rest; an ACME host's
		// challenges are spared from the redirect, a redirecting ssl_only
		// host still redirects to its URL, a passthrough host always to
		// HTTPS (trustedProtoGoldenCases has more).
		{name: "edge_trusted_proto", table: table(
			dflt(withTLS(host("secure.example.com", route("/", "127.0.0.1:1"), route("/api", "127.0.0.1:2")), routing.TLS{Only: true})),
			withTLS(host("acme.example.com", route("/", "127.0.0.1:3")), routing.TLS{ACME: true, Only: true}),
			withTLS(redirect("old.example.com", "https://new.example.com"), routing.TLS{Only: true}),
			withTLS(redirect("old-acme.example.com", "https://new.example.com"), routing.TLS{Only: true, ACME: true}),
			withTLS(host("pass.example.com", route("/", "10.0.0.1:8443")), routing.TLS{Passthrough: true}),
			host("plain.example.com", route("/", "127.0.0.1:4"))),
			settings: func(s *Settings) {
				s.ACMEChallenge = "127.0.0.1:8082"
				s.Edge = Edge{ForwardedTrusted: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, MaxBodyBytes: 1 << 20}
			}},
		// Without a challenge address, no challenge location.
		{name: "acme_no_challenge", table: table(
			withTLS(host("app.example.com", route("/", "127.0.0.1:1")), routing.TLS{ACME: true, Only: true})),
			settings: func(s *Settings) {
				s.ACMECert = func(name string) string { return filepath.Join(s.CertDir, "acme-"+name+".pem") }
			}},
		{name: "ssl_passthrough_module_missing", table: table(
			withTLS(host("pass.example.com", route("/", "10.0.0.1:8443")), routing.TLS{Passthrough: true}),
			host("plain.example.com", route("/", "127.0.0.1:2"))),
			settings: func(s *Settings) { s.ModuleMissing = func(string) bool { return true } }},
	}
}

func dflt(h routing.Host) routing.Host { h.Default = true; return h }

// goldenEdge sets every edge setting.
func goldenEdge() Edge {
	return Edge{
		ProxyProtocolTrusted:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/8")},
		ForwardedTrusted:        []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("192.168.1.10/32")},
		AccessLog:               "/var/log/interlock/access.log",
		AccessLogFormat:         AccessLogCommon,
		ClientReadHeaderTimeout: 20 * time.Second, ClientReadTimeout: time.Minute, ClientIdleTimeout: 2 * time.Minute,
		BackendConnectTimeout: 2 * time.Second, BackendResponseHeaderTimeout: 45 * time.Second, BackendIdleTimeout: 90 * time.Second,
		MaxHeaderBytes: 64 << 10, MaxBodyBytes: 10 << 20,
	}
}

func redirect(name, to string) routing.Host { return routing.Host{Name: name, RedirectTo: to} }

func sticky(r routing.Route, cookie string) routing.Route { r.StickyCookie = cookie; return r }

func renderCase(t *testing.T, tc goldenCase, s Settings) []byte {
	t.Helper()
	if tc.settings != nil {
		tc.settings(&s)
	}
	v, err := NewView(tc.table, s)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		t.Fatal(err)
	}
	out, err := tmpl.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGolden compares every label feature's rendering with
// testdata/NAME.golden; go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	for _, tc := range append(goldenCases(), routeLimitGoldenCases()...) {
		t.Run(tc.name, func(t *testing.T) {
			got := renderCase(t, tc, goldenSettings())
			if again := renderCase(t, tc, goldenSettings()); !bytes.Equal(got, again) {
				t.Fatal("two renders of the same table differ")
			}
			checkStructure(t, got)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the rendering (go test -run TestGolden -update to accept):\n%s", path, got)
			}
		})
	}
}
