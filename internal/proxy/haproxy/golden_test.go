package haproxy

import (
	"bytes"
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCase is one table rendered with the built-in template.
type goldenCase struct {
	name  string
	table routing.Table
	// settings changes the default golden settings.
	settings func(*Settings)
}

func be(addrs ...string) []routing.Backend {
	var out []routing.Backend
	for i, a := range addrs {
		out = append(out, routing.Backend{Address: a, Container: "c" + string(rune('0'+i)), Name: "app-" + string(rune('1'+i))})
	}
	return out
}

func table(hosts ...routing.Host) routing.Table {
	t := routing.Table{Hosts: hosts}
	t.Normalize()
	return t
}

func profile(t testing.TB, name string) tlsconf.Profile {
	t.Helper()
	p, err := tlsconf.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func goldenCases(t testing.TB) []goldenCase {
	web := func(routes ...routing.Route) routing.Host {
		return routing.Host{Name: "web.example.com", Routes: routes}
	}
	return []goldenCase{
		{name: "empty", table: table()},
		// Swarm: com.docker.lb.default_backend, redirects, sticky_session_cookie.
		{name: "default_host", table: table(
			routing.Host{Name: "fallback.example.com", Default: true, Routes: []routing.Route{
				{Path: "/", Backends: be("127.0.0.1:32768")}, {Path: "/api", Backends: be("127.0.0.1:32769")}}},
			routing.Host{Name: "app.example.com", Routes: []routing.Route{{Path: "/app", Backends: be("127.0.0.1:32770")}}},
			web(routing.Route{Path: "/", Backends: be("127.0.0.1:32771")}))},
		{name: "default_host_no_root_route", table: table(
			routing.Host{Name: "fallback.example.com", Default: true, Routes: []routing.Route{{Path: "/api", Backends: be("127.0.0.1:32768")}}},
			web(routing.Route{Path: "/", Backends: be("127.0.0.1:32771")}))},
		{name: "default_host_tls", table: table(
			routing.Host{Name: "fallback.example.com", Default: true, TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}},
			routing.Host{Name: "secure.example.com", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/app", Backends: be("127.0.0.1:32769")}}},
			routing.Host{Name: "plain.example.com", Aliases: []string{"www.plain.example.com"}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32770")}}})},
		{name: "default_host_ssl_only", table: table(
			routing.Host{Name: "fallback.example.com", Default: true, TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}},
			web(routing.Route{Path: "/app", Backends: be("127.0.0.1:32771")}))},
		{name: "default_host_redirect", table: table(
			routing.Host{Name: "old.example.com", Default: true, RedirectTo: "https://new.example.com"},
			web(routing.Route{Path: "/", Backends: be("127.0.0.1:32771")}))},
		{name: "redirect", table: table(
			routing.Host{Name: "old.example.com", Aliases: []string{"www.old.example.com"}, RedirectTo: "https://new.example.com:8443"},
			routing.Host{Name: "www.example.com", RedirectTo: "http://example.com"},
			routing.Host{Name: "example.com", Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}})},
		{name: "redirect_tls", table: table(routing.Host{Name: "old.example.com", TLS: &routing.TLS{}, RedirectTo: "https://new.example.com"})},
		{name: "sticky_cookie", table: table(routing.Host{Name: "shop.example.com", Routes: []routing.Route{
			{Path: "/", StickyCookie: "SESSION", Backends: be("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")},
			{Path: "/cart.v2", StripPath: true, StickyCookie: "-cart.id", Balance: routing.Source, Backends: be("10.0.0.4:8080", "[fd00::5]:8080")},
			{Path: "/empty", StickyCookie: "SESSION"}}})},
		{name: "sticky_cookie_tcp_ignored", table: table(routing.Host{Name: "db.example.com", Routes: []routing.Route{
			{Path: "/", Protocol: routing.TCP, StickyCookie: "SID", Backends: be("127.0.0.1:5432")}}})},
		{name: "hostname", table: table(web(routing.Route{Path: "/", Backends: be("127.0.0.1:32768")}))},
		{name: "round_robin_backends", table: table(web(routing.Route{Path: "/", Backends: be("127.0.0.1:32770", "127.0.0.1:32768", "127.0.0.1:32769")}))},
		{name: "alias_domain", table: table(routing.Host{Name: "web.example.com", Aliases: []string{"www.example.com", "example.com"},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}})},
		{name: "context_root", table: table(web(
			routing.Route{Path: "/", Backends: be("127.0.0.1:32768")},
			routing.Route{Path: "/api", Backends: be("127.0.0.1:32769")},
			routing.Route{Path: "/api/v2", Backends: be("127.0.0.1:32770")}))},
		{name: "context_root_no_root_route", table: table(web(routing.Route{Path: "/app", Backends: be("127.0.0.1:32768")}))},
		{name: "context_root_rewrite", table: table(web(routing.Route{Path: "/app.v1", StripPath: true, Backends: be("127.0.0.1:32768")}))},
		{name: "context_root_escaped", table: table(web(routing.Route{Path: "/caf%C3%A9/a%20b%27c", StripPath: true, Backends: be("127.0.0.1:32768")}))},
		{name: "websocket_endpoint", table: table(web(routing.Route{Path: "/app", WebSocketPaths: []string{"/app/ws", "/app/live"}, Backends: be("127.0.0.1:32768")}))},
		{name: "balance_leastconn", table: table(web(routing.Route{Path: "/", Balance: routing.LeastConn, Backends: be("127.0.0.1:32768", "127.0.0.1:32769")}))},
		{name: "balance_source", table: table(web(routing.Route{Path: "/", Balance: routing.Source, Backends: be("127.0.0.1:32768", "127.0.0.1:32769")}))},
		{name: "balance_random", table: table(web(routing.Route{Path: "/", Balance: routing.Random, Backends: be("127.0.0.1:32768", "127.0.0.1:32769")}))},
		{name: "backend_options", table: table(web(routing.Route{Path: "/", BackendOptions: []string{"redispatch", "forwardfor", "http-server-close", "abortonclose"},
			Backends: be("127.0.0.1:32768")}))},
		{name: "health_check", table: table(web(routing.Route{Path: "/", HealthCheck: &routing.HealthCheck{Path: "/healthz", Interval: 1500 * time.Millisecond},
			Backends: be("127.0.0.1:32768", "127.0.0.1:32769")}))},
		{name: "no_backend", table: table(web(routing.Route{Path: "/"}))},
		{name: "backend_ipv6_and_name", table: table(web(routing.Route{Path: "/", Backends: be("[::1]:32768", "backend.local:8080")}))},
		{name: "ssl_backend_verify", table: table(web(routing.Route{Path: "/", BackendTLS: &routing.BackendTLS{Verify: true},
			HealthCheck: &routing.HealthCheck{Path: "/health", Interval: 5 * time.Second}, Backends: be("127.0.0.1:32768")}))},
		{name: "ssl_backend_noverify", table: table(web(routing.Route{Path: "/", BackendTLS: &routing.BackendTLS{}, Backends: be("127.0.0.1:32768")}))},
		{name: "ssl_default_cert", table: table(routing.Host{Name: "web.example.com", TLS: &routing.TLS{},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}})},
		{name: "ssl_cert", table: table(
			routing.Host{Name: "a.example.com", TLS: &routing.TLS{CertFile: "a/cert.pem", KeyFile: "a/key.pem"}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}},
			routing.Host{Name: "b.example.com", TLS: &routing.TLS{CertFile: "b.pem", KeyFile: "b.pem"}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32769")}}},
			routing.Host{Name: "plain.example.com", Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32770")}}})},
		{name: "ssl_cert_missing", table: table(routing.Host{Name: "web.example.com", TLS: &routing.TLS{CertFile: "missing/cert.pem", KeyFile: "missing/key.pem"},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}})},
		// ACME hosts: each name's exported file once issued (HAProxy picks
		// it by SNI), the default certificate until then; HTTP-01
		// challenges to Interlock before the ssl_only redirect.
		{name: "acme", table: table(
			routing.Host{Name: "app.example.com", Aliases: []string{"www.app.example.com", "pending.example.com"}, TLS: &routing.TLS{ACME: true, Only: true},
				Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}},
			routing.Host{Name: "api.example.com", TLS: &routing.TLS{ACME: true}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32769")}}},
			routing.Host{Name: "a.example.com", TLS: &routing.TLS{CertFile: "a/cert.pem", KeyFile: "a/key.pem"}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32770")}}}),
			settings: func(s *Settings) {
				s.ACMEChallenge = "127.0.0.1:8082"
				s.ACMECert = func(name string) string {
					if name == "pending.example.com" {
						return ""
					}
					return filepath.Join(s.CertDir, "acme", name+".pem")
				}
			}},
		{name: "acme_no_challenge", table: table(
			routing.Host{Name: "app.example.com", TLS: &routing.TLS{ACME: true, Only: true}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}}),
			settings: func(s *Settings) {
				s.ACMECert = func(name string) string { return filepath.Join(s.CertDir, "acme", name+".pem") }
			}},
		{name: "ssl_only", table: table(routing.Host{Name: "web.example.com", TLS: &routing.TLS{Only: true},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}})},
		{name: "ssl_only_port_443", table: table(routing.Host{Name: "web.example.com", TLS: &routing.TLS{Only: true},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}}),
			settings: func(s *Settings) { s.HTTPAddr, s.HTTPSAddr = ":80", ":443" }},
		{name: "tls_modern", table: table(routing.Host{Name: "web.example.com", TLS: &routing.TLS{},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}}),
			settings: func(s *Settings) { s.Profile = profile(t, tlsconf.Modern) }},
		{name: "tls_old", table: table(routing.Host{Name: "web.example.com", TLS: &routing.TLS{},
			Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}}),
			settings: func(s *Settings) { s.Profile = profile(t, tlsconf.Old) }},
		{name: "tcp", table: table(
			routing.Host{Name: "db.example.com", Aliases: []string{"pg.example.com"}, Routes: []routing.Route{{Path: "/", Protocol: routing.TCP, Balance: routing.Source, Backends: be("127.0.0.1:5432", "127.0.0.1:5433")}}},
			web(routing.Route{Path: "/", Backends: be("127.0.0.1:32768")}))},
		{name: "tcp_skipped", table: table(routing.Host{Name: "db.example.com", Routes: []routing.Route{{Path: "/", Protocol: routing.TCP, Backends: be("127.0.0.1:5432")}}}),
			settings: func(s *Settings) { s.TCPAddr = "" }},
		{name: "stats_and_ipv6_listen", table: table(web(routing.Route{Path: "/", Backends: be("127.0.0.1:32768")})),
			settings: func(s *Settings) { s.HTTPAddr, s.StatsAddr = "[::1]:8080", "[::1]:8404" }},
		{name: "sample", table: SampleTable()},
		// SNI passthrough (com.docker.lb.ssl_passthrough): the SNI frontend
		// on the HTTPS address, the https frontend behind it on a unix
		// socket, plain HTTP redirected; the "/" route's servers take the
		// connections, checked over TLS.
		{name: "ssl_passthrough", table: table(
			routing.Host{Name: "pass.example.com", Aliases: []string{"www.pass.example.com"}, TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{
				{Path: "/", HealthCheck: &routing.HealthCheck{Path: "/healthz", Interval: 2 * time.Second}, Backends: be("10.0.0.1:8443", "10.0.0.2:8443")},
				{Path: "/api", Backends: be("10.0.0.3:8443")}}},
			routing.Host{Name: "secure.example.com", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}},
			routing.Host{Name: "plain.example.com", Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32769")}}})},
		// The shortest route when none is "/"; balance source hashes the
		// client's address; a host without backends keeps its (empty)
		// backend for the Runtime API; what only HTTP has is ignored.
		{name: "ssl_passthrough_routes", table: table(
			routing.Host{Name: "a.example.com", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{
				{Path: "/app", Balance: routing.Source, StickyCookie: "SID", BackendOptions: []string{"httpclose"}, BackendTLS: &routing.BackendTLS{},
					Backends: be("10.0.0.1:443", "[fd00::2]:443")},
				{Path: "/app/v2", Backends: be("10.0.0.3:443")}}},
			routing.Host{Name: "empty.example.com", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/"}}})},
		{name: "ssl_passthrough_default_host", table: table(
			routing.Host{Name: "pass.example.com", Default: true, TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/", Backends: be("10.0.0.1:8443")}}},
			routing.Host{Name: "secure.example.com", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32768")}}},
			web(routing.Route{Path: "/app", Backends: be("127.0.0.1:32769")}))},
		{name: "ssl_passthrough_containers", table: table(
			routing.Host{Name: "pass.example.com", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/", Backends: be("10.0.0.1:8443")}}}),
			settings: func(s *Settings) {
				dir := filepath.Dir(s.AdminSocket)
				s.AdminSocket, s.StateFile, s.TLSSocket = adminSocketFor(dir, InstanceVar), stateFileFor(dir, InstanceVar), tlsSocketFor(dir, InstanceVar)
			}},
		// Every edge setting (PROXY protocol, forwarded headers, access
		// log, timeouts, limits) over plain, TLS, ssl_only, passthrough
		// and tcp hosts, a route without backends and a default host.
		{name: "edge", table: table(
			routing.Host{Name: "app.example.com", Default: true, Routes: []routing.Route{
				{Path: "/", Backends: be("127.0.0.1:32768")}, {Path: "/api", Backends: be("[::1]:32769")}, {Path: "/empty"}}},
			routing.Host{Name: "secure.example.com", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32770")}}},
			routing.Host{Name: "pass.example.com", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/", Backends: be("10.0.0.1:8443")}}},
			routing.Host{Name: "db.example.com", Routes: []routing.Route{{Path: "/", Protocol: routing.TCP, Backends: be("127.0.0.1:5432")}}}),
			settings: func(s *Settings) { s.Edge = goldenEdge() }},
		// The json access log, PROXY protocol without passthrough (the
		// https frontend expects the header itself), a small header limit
		// that fits HAProxy's own buffer.
		{name: "edge_json", table: table(
			web(routing.Route{Path: "/", Backends: be("127.0.0.1:32768")}),
			routing.Host{Name: "secure.example.com", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32770")}}}),
			settings: func(s *Settings) {
				s.Edge = Edge{ProxyProtocolTrusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
					AccessLog: AccessLogStdout, AccessLogFormat: AccessLogJSON, ClientIdleTimeout: 1500 * time.Millisecond, MaxHeaderBytes: 4 << 10}
			}},
		// Trusted forwarded headers: ssl_only hosts serve what a trusted
		// peer says came over HTTPS (their rules after a conditional
		// redirect), the default host among them, with unknown names and
		// a path none of a host's rules take; ACME challenges first; a
		// redirecting ssl_only host to its URL; passthrough always to HTTPS.
		{name: "edge_trusted_proto", table: table(
			routing.Host{Name: "secure.example.com", Default: true, TLS: &routing.TLS{Only: true}, Routes: []routing.Route{
				{Path: "/", Backends: be("127.0.0.1:32768")}, {Path: "/api", Backends: be("127.0.0.1:32769")}}},
			routing.Host{Name: "app.example.com", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/app", Backends: be("127.0.0.1:32770")}}},
			routing.Host{Name: "acme.example.com", TLS: &routing.TLS{ACME: true, Only: true}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:32771")}}},
			routing.Host{Name: "old.example.com", TLS: &routing.TLS{Only: true}, RedirectTo: "https://new.example.com"},
			routing.Host{Name: "pass.example.com", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/", Backends: be("10.0.0.1:8443")}}},
			web(routing.Route{Path: "/", Backends: be("127.0.0.1:32772")})),
			settings: func(s *Settings) {
				s.ACMEChallenge = "127.0.0.1:8082"
				s.Edge = Edge{ForwardedTrusted: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}}
			}},
		// Side-loaded containers: each expands its own admin socket and
		// server-state file from its HOSTNAME.
		{name: "containers", table: table(web(routing.Route{Path: "/", Backends: be("127.0.0.1:32768")})),
			settings: func(s *Settings) {
				dir := filepath.Dir(s.AdminSocket)
				s.AdminSocket, s.StateFile = adminSocketFor(dir, InstanceVar), stateFileFor(dir, InstanceVar)
			}},
	}
}

// goldenEdge sets every edge setting.
func goldenEdge() Edge {
	return Edge{
		ProxyProtocolTrusted:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/8")},
		ForwardedTrusted:        []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("192.168.1.10/32")},
		AccessLog:               AccessLogStdout,
		AccessLogFormat:         AccessLogCommon,
		ClientReadHeaderTimeout: 20 * time.Second, ClientReadTimeout: time.Minute, ClientIdleTimeout: 2 * time.Minute,
		BackendConnectTimeout: 2 * time.Second, BackendResponseHeaderTimeout: 45 * time.Second, BackendIdleTimeout: 90 * time.Second,
		MaxHeaderBytes: 64 << 10, MaxBodyBytes: 10 << 20,
	}
}

// goldenSettings are fixed paths, so the golden files do not depend on the
// machine; validSettings puts the same files in dir, for haproxy -c.
func goldenSettings(dir string) Settings {
	return Settings{
		HTTPAddr: "127.0.0.1:8080", HTTPSAddr: "127.0.0.1:8443", TCPAddr: "127.0.0.1:8444",
		CertDir: filepath.Join(dir, "certs"), DefaultCert: filepath.Join(dir, "state", defaultCertName),
		BundleDir: filepath.Join(dir, "state", "certs"), AdminSocket: filepath.Join(dir, "state", "admin.sock"),
		StateFile: filepath.Join(dir, "state", "servers.state"), HardStopAfter: 30 * time.Second,
		TLSSocket:   tlsSocketFor(filepath.Join(dir, "state"), ""),
		CertMissing: func(p string) bool { return filepath.Base(filepath.Dir(p)) == "missing" },
	}
}

func renderCase(t *testing.T, c goldenCase, s Settings) ([]byte, View) {
	t.Helper()
	if c.settings != nil {
		c.settings(&s)
	}
	v, err := NewView(c.table, s)
	if err != nil {
		t.Fatalf("NewView: %v", err)
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := tmpl.Render(v)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return conf, v
}

func TestGolden(t *testing.T) {
	for _, c := range append(goldenCases(t), routeLimitGoldenCases()...) {
		t.Run(c.name, func(t *testing.T) {
			conf, _ := renderCase(t, c, goldenSettings("/var/lib/interlock"))
			again, _ := renderCase(t, c, goldenSettings("/var/lib/interlock"))
			if !bytes.Equal(conf, again) {
				t.Fatal("two renders of the same table differ")
			}
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, conf, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(conf, want) {
				t.Errorf("render differs from %s (go test -update rewrites it):\n%s", path, diffLines(string(want), string(conf)))
			}
		})
	}
}

// TestGoldenValid runs the real haproxy -c on every golden case, rendered
// with paths in a scratch directory where the certificates exist.
func TestGoldenValid(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	for _, sub := range []string{"certs/a", "state/certs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, err := tlsconf.SelfSigned("a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{
		"certs/a/cert.pem": cert, "certs/a/key.pem": key, "certs/b.pem": append(cert, key...),
		"certs/named/cert.pem": cert, "certs/named/key.pem": key,
		"certs/acme/app.example.com.pem": append(cert, key...), "certs/acme/www.app.example.com.pem": append(cert, key...),
		"certs/acme/api.example.com.pem": append(cert, key...),
	} {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := ensureDefaultCert(filepath.Join(dir, "state", defaultCertName)); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(goldenCases(t), routeLimitGoldenCases()...) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			conf, v := renderCase(t, c, goldenSettings(dir))
			if err := writeBundles(v.TLS.Certs); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, c.name+".cfg")
			if err := os.WriteFile(file, conf, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Validate(context.Background(), bin, file); err != nil {
				t.Fatalf("%v\n%s", err, conf)
			}
		})
	}
}
