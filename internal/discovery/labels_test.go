package discovery

import (
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestBuildLabels drives each label through Build on one container "a":
// either the resulting host equals the default app.example.com host after
// edit, or the container is left out with exactly the listed problems.
func TestBuildLabels(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name   string
		labels map[string]string
		// edit turns the default expected host into the expected one.
		edit     func(h *routing.Host)
		problems []wantProblem
	}{
		{name: "hostname and domain", labels: appLabels(nil)},
		{name: "hostname only", labels: map[string]string{LabelHostname: "Web"},
			edit: func(h *routing.Host) { h.Name = "web" }},
		{name: "domain only", labels: map[string]string{LabelDomain: "Example.ORG"},
			edit: func(h *routing.Host) { h.Name = "example.org" }},
		{name: "multi-label hostname", labels: appLabels(map[string]string{LabelHostname: "www.app"}),
			edit: func(h *routing.Host) { h.Name = "www.app.example.com" }},
		{name: "bad hostname", labels: appLabels(map[string]string{LabelHostname: "a_b"}),
			problems: []wantProblem{{label: LabelHostname, reason: routing.ReasonInvalidLabel, msg: `contains "_"`}}},
		{name: "empty hostname", labels: appLabels(map[string]string{LabelHostname: ""}),
			problems: []wantProblem{{label: LabelHostname, reason: routing.ReasonInvalidLabel, msg: "empty"}}},
		{name: "wildcard domain", labels: appLabels(map[string]string{LabelDomain: "*.example.com"}),
			problems: []wantProblem{{label: LabelDomain, reason: routing.ReasonInvalidLabel, msg: "wildcards are not supported"}}},
		{name: "hostname and domain both bad", labels: map[string]string{LabelHostname: "a;b", LabelDomain: "c}d"},
			problems: []wantProblem{
				{label: LabelDomain, reason: routing.ReasonInvalidLabel, msg: `contains "}"`},
				{label: LabelHostname, reason: routing.ReasonInvalidLabel, msg: `contains ";"`},
			}},
		{name: "joined name too long", labels: map[string]string{LabelHostname: long + "." + long + "." + long, LabelDomain: long},
			problems: []wantProblem{{label: LabelHostname, reason: routing.ReasonInvalidLabel, msg: "(hostname.domain) is 255 bytes long"}}},
		{name: "aliases", labels: appLabels(map[string]string{
			LabelAliasDomain:        "www.example.com",
			LabelAliasDomain + ".1": "Example.com",
			LabelAliasDomain + ".2": "www.example.com",
		}), edit: func(h *routing.Host) { h.Aliases = []string{"example.com", "www.example.com"} }},
		{name: "alias equal to host name dropped", labels: appLabels(map[string]string{LabelAliasDomain: "APP.example.com"})},
		{name: "bad alias", labels: appLabels(map[string]string{LabelAliasDomain + ".3": "a;b.com"}),
			problems: []wantProblem{{label: LabelAliasDomain + ".3", reason: routing.ReasonInvalidLabel, msg: `contains ";"`}}},
		{name: "port", labels: appLabels(map[string]string{LabelPort: "80"})},
		{name: "bad port", labels: appLabels(map[string]string{LabelPort: "http"}),
			problems: []wantProblem{{label: LabelPort, reason: routing.ReasonInvalidLabel, msg: "1-65535"}}},
		{name: "port not exposed", labels: appLabels(map[string]string{LabelPort: "8080"}),
			problems: []wantProblem{{label: LabelPort, reason: routing.ReasonInvalidLabel, msg: "port 8080 is not a TCP port the container exposes (exposed: 80)"}}},
		{name: "context root", labels: appLabels(map[string]string{LabelContextRoot: "/api/"}),
			edit: func(h *routing.Host) { h.Routes[0].Path = "/api" }},
		{name: "bad context root", labels: appLabels(map[string]string{LabelContextRoot: "api"}),
			problems: []wantProblem{{label: LabelContextRoot, reason: routing.ReasonInvalidLabel, msg: "does not start with '/'"}}},
		{name: "context root injection", labels: appLabels(map[string]string{LabelContextRoot: "/a { return 200; }"}),
			problems: []wantProblem{{label: LabelContextRoot, reason: routing.ReasonInvalidLabel, msg: `contains " "`}}},
		{name: "context root rewrite", labels: appLabels(map[string]string{LabelContextRoot: "/api", LabelContextRootRewrite: "true"}),
			edit: func(h *routing.Host) { h.Routes[0].Path, h.Routes[0].StripPath = "/api", true }},
		{name: "context root rewrite false", labels: appLabels(map[string]string{LabelContextRootRewrite: "false"})},
		{name: "loose boolean", labels: appLabels(map[string]string{LabelContextRootRewrite: "yes"}),
			problems: []wantProblem{{label: LabelContextRootRewrite, reason: routing.ReasonInvalidLabel, msg: "exactly true or false"}}},
		{name: "websocket endpoints", labels: appLabels(map[string]string{LabelWebSocketEndpoint: "/ws, /io"}),
			edit: func(h *routing.Host) { h.Routes[0].WebSocketPaths = []string{"/io", "/ws"} }},
		{name: "websocket endpoint under context root", labels: appLabels(map[string]string{LabelContextRoot: "/app", LabelWebSocketEndpoint: "/app/ws"}),
			edit: func(h *routing.Host) { h.Routes[0].Path, h.Routes[0].WebSocketPaths = "/app", []string{"/app/ws"} }},
		{name: "websocket endpoint outside context root", labels: appLabels(map[string]string{LabelContextRoot: "/app", LabelWebSocketEndpoint: "/ws"}),
			problems: []wantProblem{{label: LabelWebSocketEndpoint, reason: routing.ReasonInvalidLabel, msg: `path "/ws" is not under the context root "/app"`}}},
		{name: "bad websocket endpoint", labels: appLabels(map[string]string{LabelWebSocketEndpoint: "/ws,"}),
			problems: []wantProblem{{label: LabelWebSocketEndpoint, reason: routing.ReasonInvalidLabel, msg: "empty item"}}},
		{name: "ssl", labels: appLabels(map[string]string{LabelSSL: "true"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{} }},
		{name: "ssl false", labels: appLabels(map[string]string{LabelSSL: "false"})},
		{name: "ssl only implies ssl", labels: appLabels(map[string]string{LabelSSLOnly: "true"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{Only: true} }},
		{name: "ssl only false", labels: appLabels(map[string]string{LabelSSL: "true", LabelSSLOnly: "false"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{} }},
		{name: "ssl false contradicts ssl only", labels: appLabels(map[string]string{LabelSSL: "false", LabelSSLOnly: "true"}),
			problems: []wantProblem{{label: LabelSSL, reason: routing.ReasonInvalidLabel, msg: "is false, but"}}},
		{name: "certificate", labels: appLabels(map[string]string{LabelSSLCert: "app/cert.pem", LabelSSLCertKey: "app/key.pem"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{CertFile: "app/cert.pem", KeyFile: "app/key.pem"} }},
		{name: "certificate without key", labels: appLabels(map[string]string{LabelSSL: "true", LabelSSLCert: "cert.pem"}),
			problems: []wantProblem{{label: LabelSSLCert, reason: routing.ReasonInvalidLabel, msg: "without " + LabelSSLCertKey}}},
		{name: "key without certificate", labels: appLabels(map[string]string{LabelSSLCertKey: "key.pem"}),
			problems: []wantProblem{{label: LabelSSLCertKey, reason: routing.ReasonInvalidLabel, msg: "without " + LabelSSLCert}}},
		{name: "certificate traversal", labels: appLabels(map[string]string{LabelSSLCert: "../../etc/passwd", LabelSSLCertKey: "/etc/shadow"}),
			problems: []wantProblem{
				{label: LabelSSLCert, reason: routing.ReasonInvalidLabel, msg: `".." segment`},
				{label: LabelSSLCertKey, reason: routing.ReasonInvalidLabel, msg: "absolute"},
			}},
		{name: "ssl acme implies ssl", labels: appLabels(map[string]string{LabelSSLACME: "true"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{ACME: true} }},
		{name: "ssl acme with ssl only", labels: appLabels(map[string]string{LabelSSLACME: "true", LabelSSLOnly: "true"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{ACME: true, Only: true} }},
		{name: "ssl acme false", labels: appLabels(map[string]string{LabelSSLACME: "false"})},
		{name: "ssl acme false with ssl", labels: appLabels(map[string]string{LabelSSLACME: "false", LabelSSL: "true"}),
			edit: func(h *routing.Host) { h.TLS = &routing.TLS{} }},
		{name: "loose ssl acme", labels: appLabels(map[string]string{LabelSSLACME: "yes"}),
			problems: []wantProblem{{label: LabelSSLACME, reason: routing.ReasonInvalidLabel, msg: "exactly true or false"}}},
		{name: "ssl acme with a certificate", labels: appLabels(map[string]string{LabelSSLACME: "true", LabelSSLCert: "app/cert.pem", LabelSSLCertKey: "app/key.pem"}),
			problems: []wantProblem{{label: LabelSSLACME, reason: routing.ReasonInvalidLabel, msg: "names a certificate; a host gets its certificate from a file or over ACME, not both"}}},
		{name: "ssl false contradicts ssl acme", labels: appLabels(map[string]string{LabelSSL: "false", LabelSSLACME: "true"}),
			problems: []wantProblem{{label: LabelSSL, reason: routing.ReasonInvalidLabel, msg: "is false, but"}}},
		{name: "backend tls", labels: appLabels(map[string]string{LabelSSLBackend: "true"}),
			edit: func(h *routing.Host) { h.Routes[0].BackendTLS = &routing.BackendTLS{Verify: true} }},
		{name: "backend tls verify none", labels: appLabels(map[string]string{LabelSSLBackend: "true", LabelSSLBackendTLSVerify: "none"}),
			edit: func(h *routing.Host) { h.Routes[0].BackendTLS = &routing.BackendTLS{Verify: false} }},
		{name: "backend tls verify required", labels: appLabels(map[string]string{LabelSSLBackend: "true", LabelSSLBackendTLSVerify: "required"}),
			edit: func(h *routing.Host) { h.Routes[0].BackendTLS = &routing.BackendTLS{Verify: true} }},
		{name: "backend tls false", labels: appLabels(map[string]string{LabelSSLBackend: "false"})},
		{name: "verify without backend tls", labels: appLabels(map[string]string{LabelSSLBackendTLSVerify: "false"}),
			problems: []wantProblem{{label: LabelSSLBackendTLSVerify, reason: routing.ReasonInvalidLabel, msg: "is not true"}}},
		{name: "verify with backend tls off", labels: appLabels(map[string]string{LabelSSLBackend: "false", LabelSSLBackendTLSVerify: "true"}),
			problems: []wantProblem{{label: LabelSSLBackendTLSVerify, reason: routing.ReasonInvalidLabel, msg: "is not true"}}},
		{name: "bad verify", labels: appLabels(map[string]string{LabelSSLBackend: "true", LabelSSLBackendTLSVerify: "maybe"}),
			problems: []wantProblem{{label: LabelSSLBackendTLSVerify, reason: routing.ReasonInvalidLabel, msg: "not a verify mode"}}},
		{name: "health check", labels: appLabels(map[string]string{LabelHealthCheck: "/healthz"}),
			edit: func(h *routing.Host) {
				h.Routes[0].HealthCheck = &routing.HealthCheck{Path: "/healthz", Interval: 5 * time.Second}
			}},
		{name: "health check interval in milliseconds", labels: appLabels(map[string]string{LabelHealthCheck: "/healthz", LabelHealthCheckInterval: "2000"}),
			edit: func(h *routing.Host) {
				h.Routes[0].HealthCheck = &routing.HealthCheck{Path: "/healthz", Interval: 2 * time.Second}
			}},
		{name: "health check interval duration", labels: appLabels(map[string]string{LabelHealthCheck: "/healthz", LabelHealthCheckInterval: "750ms"}),
			edit: func(h *routing.Host) {
				h.Routes[0].HealthCheck = &routing.HealthCheck{Path: "/healthz", Interval: 750 * time.Millisecond}
			}},
		{name: "interval without health check", labels: appLabels(map[string]string{LabelHealthCheckInterval: "5s"}),
			problems: []wantProblem{{label: LabelHealthCheckInterval, reason: routing.ReasonInvalidLabel, msg: "without " + LabelHealthCheck}}},
		{name: "interval too short", labels: appLabels(map[string]string{LabelHealthCheck: "/", LabelHealthCheckInterval: "1ms"}),
			problems: []wantProblem{{label: LabelHealthCheckInterval, reason: routing.ReasonInvalidLabel, msg: "out of range, use 100ms to 1h0m0s"}}},
		{name: "bad health check path", labels: appLabels(map[string]string{LabelHealthCheck: "/health?full=1"}),
			problems: []wantProblem{{label: LabelHealthCheck, reason: routing.ReasonInvalidLabel, msg: `contains "?"`}}},
		{name: "balance", labels: appLabels(map[string]string{LabelBalanceAlgorithm: "leastconn"}),
			edit: func(h *routing.Host) { h.Routes[0].Balance = routing.LeastConn }},
		{name: "bad balance", labels: appLabels(map[string]string{LabelBalanceAlgorithm: "fastest"}),
			problems: []wantProblem{{label: LabelBalanceAlgorithm, reason: routing.ReasonInvalidLabel, msg: "use one of roundrobin, leastconn, source, random"}}},
		{name: "ip hash", labels: appLabels(map[string]string{LabelIPHash: "true"}),
			edit: func(h *routing.Host) { h.Routes[0].Balance = routing.Source }},
		{name: "ip hash with source", labels: appLabels(map[string]string{LabelIPHash: "true", LabelBalanceAlgorithm: "source"}),
			edit: func(h *routing.Host) { h.Routes[0].Balance = routing.Source }},
		{name: "ip hash false with leastconn", labels: appLabels(map[string]string{LabelIPHash: "false", LabelBalanceAlgorithm: "leastconn"}),
			edit: func(h *routing.Host) { h.Routes[0].Balance = routing.LeastConn }},
		{name: "ip hash against balance", labels: appLabels(map[string]string{LabelIPHash: "true", LabelBalanceAlgorithm: "leastconn"}),
			problems: []wantProblem{{label: LabelIPHash, reason: routing.ReasonInvalidLabel, msg: `but interlock.balance_algorithm is "leastconn"`}}},
		{name: "bad ip hash", labels: appLabels(map[string]string{LabelIPHash: "1"}),
			problems: []wantProblem{{label: LabelIPHash, reason: routing.ReasonInvalidLabel, msg: "exactly true or false"}}},
		{name: "backend options", labels: appLabels(map[string]string{
			LabelBackendOption:        "redispatch",
			LabelBackendOption + ".1": "forwardfor",
			LabelBackendOption + ".2": "redispatch",
		}), edit: func(h *routing.Host) { h.Routes[0].BackendOptions = []string{"forwardfor", "redispatch"} }},
		{name: "bad backend option", labels: appLabels(map[string]string{LabelBackendOption + ".7": "httpchk GET /"}),
			problems: []wantProblem{{label: LabelBackendOption + ".7", reason: routing.ReasonInvalidLabel, msg: "not allowed, use one of abortonclose"}}},
		{name: "protocol tcp", labels: appLabels(map[string]string{LabelProtocol: "tcp"}),
			edit: func(h *routing.Host) { h.Routes[0].Protocol = routing.TCP }},
		{name: "protocol http", labels: appLabels(map[string]string{LabelProtocol: "http"})},
		{name: "tcp with http settings", labels: appLabels(map[string]string{LabelProtocol: "tcp", LabelContextRoot: "/api", LabelWebSocketEndpoint: "/api/ws"}),
			problems: []wantProblem{
				{label: LabelContextRoot, reason: routing.ReasonInvalidLabel, msg: "no meaning for protocol tcp"},
				{label: LabelWebSocketEndpoint, reason: routing.ReasonInvalidLabel, msg: "no meaning for protocol tcp"},
			}},
		{name: "tcp with neutral http settings", labels: appLabels(map[string]string{LabelProtocol: "tcp", LabelContextRoot: "/", LabelContextRootRewrite: "false"}),
			edit: func(h *routing.Host) { h.Routes[0].Protocol = routing.TCP }},
		{name: "tcp with rewrite", labels: appLabels(map[string]string{LabelProtocol: "tcp", LabelContextRootRewrite: "true"}),
			problems: []wantProblem{{label: LabelContextRootRewrite, reason: routing.ReasonInvalidLabel, msg: "no meaning for protocol tcp"}}},
		{name: "bad protocol", labels: appLabels(map[string]string{LabelProtocol: "udp"}),
			problems: []wantProblem{{label: LabelProtocol, reason: routing.ReasonInvalidLabel, msg: "use http or tcp"}}},
		{name: "unknown label", labels: appLabels(map[string]string{"interlock.hostnmae": "x"}),
			problems: []wantProblem{{label: "interlock.hostnmae", reason: routing.ReasonInvalidLabel, msg: "unknown label (did you mean interlock.hostname?); known labels are"}}},
		{name: "unknown label with hostile name", labels: appLabels(map[string]string{"interlock.x\nevil": "x"}),
			problems: []wantProblem{{label: `"interlock.x\nevil"`, reason: routing.ReasonInvalidLabel, msg: "unknown label"}}},
		{name: "no reserved test namespace", labels: appLabels(map[string]string{"interlock.test.run": "r1"}),
			problems: []wantProblem{{label: "interlock.test.run", reason: routing.ReasonInvalidLabel, msg: "unknown label"}}},
		{name: "foreign labels ignored", labels: appLabels(map[string]string{"com.docker.compose.project": "x\n;{}"})},
		{name: "newline in value", labels: appLabels(map[string]string{LabelContextRoot: "/a\n/b"}),
			problems: []wantProblem{{label: LabelContextRoot, reason: routing.ReasonInvalidLabel, msg: "control character U+000A"}}},
		{name: "NUL in value", labels: appLabels(map[string]string{LabelHostname: "app\x00"}),
			problems: []wantProblem{{label: LabelHostname, reason: routing.ReasonInvalidLabel, msg: "control character U+0000"}}},
		{name: "oversized value", labels: appLabels(map[string]string{LabelBackendOption: strings.Repeat("x", 2000)}),
			problems: []wantProblem{{label: LabelBackendOption, reason: routing.ReasonInvalidLabel, msg: "2000 bytes long, the limit is 1024"}}},
		{name: "every bad label is reported", labels: appLabels(map[string]string{
			LabelPort:             "0",
			LabelSSL:              "on",
			LabelBalanceAlgorithm: "fair",
			"interlock.sslonly":   "true",
		}), problems: []wantProblem{
			{label: LabelBalanceAlgorithm, reason: routing.ReasonInvalidLabel, msg: "unknown"},
			{label: LabelPort, reason: routing.ReasonInvalidLabel, msg: "1-65535"},
			{label: LabelSSL, reason: routing.ReasonInvalidLabel, msg: "not a boolean"},
			{label: "interlock.sslonly", reason: routing.ReasonInvalidLabel, msg: "did you mean interlock.ssl_only?"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := docker.Snapshot{Containers: []docker.Container{ctr("a", 0, tc.labels)}}
			got, problems := Build(snap, Options{})
			checkProblems(t, problems, tc.problems)
			var want routing.Table
			if len(tc.problems) == 0 {
				h := routing.Host{Name: "app.example.com", Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:32768"))}}
				if tc.edit != nil {
					tc.edit(&h)
				}
				want.Hosts = []routing.Host{h}
			}
			checkTable(t, got, want)
		})
	}
}

// TestBuildParticipation checks which containers take part at all.
func TestBuildParticipation(t *testing.T) {
	withState := func(c docker.Container, f func(*docker.Container)) docker.Container {
		f(&c)
		return c
	}
	// bad carries a bad label: had the container been read, there would be
	// a problem, so "no problem" proves it was skipped.
	bad := appLabels(map[string]string{LabelPort: "nope"})
	tests := []struct {
		name      string
		container docker.Container
		routed    bool
	}{
		{name: "routed", container: ctr("a", 0, appLabels(nil)), routed: true},
		{name: "healthy", container: withState(ctr("a", 0, appLabels(nil)), func(c *docker.Container) { c.Health = "healthy" }), routed: true},
		{name: "no interlock labels", container: ctr("a", 0, map[string]string{"interlock.port": "nope"})},
		{name: "no labels", container: ctr("a", 0, nil)},
		{name: "side-loaded proxy", container: ctr("a", 0, with(bad, map[string]string{LabelExtName: "nginx"}))},
		{name: "exited", container: withState(ctr("a", 0, bad), func(c *docker.Container) { c.State = "exited" })},
		{name: "paused", container: withState(ctr("a", 0, bad), func(c *docker.Container) { c.State = "paused" })},
		{name: "draining", container: withState(ctr("a", 0, bad), func(c *docker.Container) { c.Draining = true })},
		{name: "unhealthy", container: withState(ctr("a", 0, bad), func(c *docker.Container) { c.Health = "unhealthy" })},
		{name: "health starting", container: withState(ctr("a", 0, bad), func(c *docker.Container) { c.Health = "starting" })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Build(docker.Snapshot{Containers: []docker.Container{tc.container}}, Options{})
			checkProblems(t, problems, nil)
			if routed := got.BackendCount() == 1; routed != tc.routed {
				t.Fatalf("routed = %v, want %v (table %+v)", routed, tc.routed, got)
			}
		})
	}
}

// TestBuildACMEDefault checks Options.ACMEDefault (acme_hosts=all) on
// containers: every TLS host without a certificate of its own gets ACME,
// unless interlock.ssl_acme=false opts it out; it never turns TLS on.
func TestBuildACMEDefault(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   *routing.TLS
	}{
		{name: "ssl", labels: appLabels(map[string]string{LabelSSL: "true"}), want: &routing.TLS{ACME: true}},
		{name: "ssl only", labels: appLabels(map[string]string{LabelSSLOnly: "true"}), want: &routing.TLS{Only: true, ACME: true}},
		{name: "opted out", labels: appLabels(map[string]string{LabelSSL: "true", LabelSSLACME: "false"}), want: &routing.TLS{}},
		{name: "own certificate", labels: appLabels(map[string]string{LabelSSLCert: "c.pem", LabelSSLCertKey: "k.pem"}),
			want: &routing.TLS{CertFile: "c.pem", KeyFile: "k.pem"}},
		{name: "plain HTTP", labels: appLabels(nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Build(docker.Snapshot{Containers: []docker.Container{ctr("a", 0, tc.labels)}}, Options{ACMEDefault: true})
			checkProblems(t, problems, nil)
			h := routing.Host{Name: "app.example.com", TLS: tc.want, Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:32768"))}}
			checkTable(t, got, routing.Table{Hosts: []routing.Host{h}})
		})
	}
}
