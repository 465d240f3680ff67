package discovery

import (
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// published returns c publishing its port 80 on host port public instead.
func published(c docker.Container, public uint16) docker.Container {
	c.Ports = []docker.Port{{Private: 80, Proto: "tcp", HostIP: "0.0.0.0", Public: public}}
	return c
}

func TestBuildGrouping(t *testing.T) {
	host := func(name string) map[string]string { return map[string]string{LabelHostname: name} }
	tests := []struct {
		name       string
		containers []docker.Container
		want       routing.Table
		problems   []wantProblem
	}{
		{
			name: "one route, two backends",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(nil)), 1001),
				published(ctr("b", 1, appLabels(nil)), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:1001"), backend("b", "127.0.0.1:1002")),
			}}}},
		},
		{
			name: "one host, two routes",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(nil)), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelContextRoot: "/api", LabelBalanceAlgorithm: "leastconn"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{
				{Path: "/api", Protocol: routing.HTTP, Balance: routing.LeastConn, Backends: []routing.Backend{backend("b", "127.0.0.1:1002")}},
				defaultRoute(backend("a", "127.0.0.1:1001")),
			}}}},
		},
		{
			name: "two hosts",
			containers: []docker.Container{
				published(ctr("a", 0, host("x")), 1001),
				published(ctr("b", 0, host("y")), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{
				{Name: "x", Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:1001"))}},
				{Name: "y", Routes: []routing.Route{defaultRoute(backend("b", "127.0.0.1:1002"))}},
			}},
		},
		{
			name: "same container listed twice gives one backend",
			containers: []docker.Container{
				ctr("a", 0, appLabels(nil)),
				ctr("a", 0, appLabels(nil)),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:32768")),
			}}}},
		},
		{
			name: "aliases compared as sets",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelAliasDomain: "x.com", LabelAliasDomain + ".1": "y.com"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelAliasDomain + ".1": "y.com", LabelAliasDomain + ".2": "X.com"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Aliases: []string{"x.com", "y.com"}, Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:1001"), backend("b", "127.0.0.1:1002")),
			}}}},
		},
		{
			name: "unset and default agree",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelHealthCheck: "/hc"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{
					LabelHealthCheck: "/hc", LabelHealthCheckInterval: "5s", LabelBalanceAlgorithm: "roundrobin",
					LabelProtocol: "http", LabelContextRootRewrite: "false", LabelSSL: "false", LabelSSLBackend: "false",
				})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{{
				Path: "/", Protocol: routing.HTTP, Balance: routing.RoundRobin,
				HealthCheck: &routing.HealthCheck{Path: "/hc", Interval: defaultInterval},
				Backends:    []routing.Backend{backend("a", "127.0.0.1:1001"), backend("b", "127.0.0.1:1002")},
			}}}}},
		},
		{
			name: "host setting conflict: first created wins",
			containers: []docker.Container{
				published(ctr("a", 5, appLabels(nil)), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelSSL: "true"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", TLS: &routing.TLS{}, Routes: []routing.Route{
				defaultRoute(backend("b", "127.0.0.1:1002")),
			}}}},
			problems: []wantProblem{{id: "a", label: LabelSSL, reason: routing.ReasonConflict,
				msg: `host "app.example.com" is already defined by container c-b with interlock.ssl "true", this container has "false"`}},
		},
		{
			name: "equal creation times: lower ID wins",
			containers: []docker.Container{
				published(ctr("b", 0, appLabels(map[string]string{LabelSSLOnly: "true"})), 1002),
				published(ctr("a", 0, appLabels(map[string]string{LabelSSL: "true"})), 1001),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", TLS: &routing.TLS{}, Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:1001")),
			}}}},
			problems: []wantProblem{{id: "b", label: LabelSSLOnly, reason: routing.ReasonConflict, msg: `with interlock.ssl_only "false", this container has "true"`}},
		},
		{
			name: "ssl_acme is a host setting",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelSSLACME: "true"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelSSL: "true"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", TLS: &routing.TLS{ACME: true}, Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:1001")),
			}}}},
			problems: []wantProblem{{id: "b", label: LabelSSLACME, reason: routing.ReasonConflict,
				msg: `host "app.example.com" is already defined by container c-a with interlock.ssl_acme "true", this container has "false"`}},
		},
		{
			name: "ssl_acme against a certificate of another container",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelSSLCert: "c.pem", LabelSSLCertKey: "k.pem"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelSSLACME: "true"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", TLS: &routing.TLS{CertFile: "c.pem", KeyFile: "k.pem"}, Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:1001")),
			}}}},
			problems: []wantProblem{
				{id: "b", label: LabelSSLACME, reason: routing.ReasonConflict, msg: `with interlock.ssl_acme "false", this container has "true"`},
				{id: "b", label: LabelSSLCert, reason: routing.ReasonConflict, msg: `with interlock.ssl_cert "c.pem", this container has unset`},
				{id: "b", label: LabelSSLCertKey, reason: routing.ReasonConflict, msg: `with interlock.ssl_cert_key "k.pem", this container has unset`},
			},
		},
		{
			name: "alias set conflict",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelAliasDomain: "x.com", LabelAliasDomain + ".1": "y.com"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelAliasDomain: "x.com"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Aliases: []string{"x.com", "y.com"}, Routes: []routing.Route{
				defaultRoute(backend("a", "127.0.0.1:1001")),
			}}}},
			problems: []wantProblem{{id: "b", label: LabelAliasDomain, reason: routing.ReasonConflict, msg: `with interlock.alias_domain "x.com,y.com", this container has "x.com"`}},
		},
		{
			name: "route setting conflicts, one problem each",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelContextRoot: "/api", LabelBalanceAlgorithm: "leastconn"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelContextRoot: "/api/", LabelContextRootRewrite: "true", LabelBackendOption: "forwardfor"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{
				{Path: "/api", Protocol: routing.HTTP, Balance: routing.LeastConn, Backends: []routing.Backend{backend("a", "127.0.0.1:1001")}},
			}}}},
			problems: []wantProblem{
				{id: "b", label: LabelBackendOption, reason: routing.ReasonConflict, msg: `route "app.example.com/api" is already defined by container c-a with interlock.backend_option unset, this container has "forwardfor"`},
				{id: "b", label: LabelBalanceAlgorithm, reason: routing.ReasonConflict, msg: `with interlock.balance_algorithm "leastconn", this container has "roundrobin"`},
				{id: "b", label: LabelContextRootRewrite, reason: routing.ReasonConflict, msg: `with interlock.context_root_rewrite "false", this container has "true"`},
			},
		},
		{
			name: "dependent settings are not reported twice",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelHealthCheck: "/hc", LabelHealthCheckInterval: "1s", LabelSSLBackend: "true", LabelSSLBackendTLSVerify: "false"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelWebSocketEndpoint: "/ws"})), 1002),
				published(ctr("c", 2, appLabels(map[string]string{LabelHealthCheck: "/hc", LabelHealthCheckInterval: "2s", LabelSSLBackend: "true"})), 1003),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{{
				Path: "/", Protocol: routing.HTTP, Balance: routing.RoundRobin,
				HealthCheck: &routing.HealthCheck{Path: "/hc", Interval: time.Second},
				BackendTLS:  &routing.BackendTLS{Verify: false},
				Backends:    []routing.Backend{backend("a", "127.0.0.1:1001")},
			}}}}},
			problems: []wantProblem{
				{id: "b", label: LabelHealthCheck, reason: routing.ReasonConflict, msg: `with interlock.health_check "/hc", this container has unset`},
				{id: "b", label: LabelSSLBackend, reason: routing.ReasonConflict, msg: `with interlock.ssl_backend "true", this container has "false"`},
				{id: "b", label: LabelWebSocketEndpoint, reason: routing.ReasonConflict, msg: `with interlock.websocket_endpoint unset, this container has "/ws"`},
				{id: "c", label: LabelHealthCheckInterval, reason: routing.ReasonConflict, msg: `with interlock.health_check_interval "1s", this container has "2s"`},
				{id: "c", label: LabelSSLBackendTLSVerify, reason: routing.ReasonConflict, msg: `with interlock.ssl_backend_tls_verify "false", this container has "true"`},
			},
		},
		{
			name: "route settings may differ between routes",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelSSLBackend: "true"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelContextRoot: "/b", LabelBalanceAlgorithm: "random"})), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{
				{Path: "/b", Protocol: routing.HTTP, Balance: routing.Random, Backends: []routing.Backend{backend("b", "127.0.0.1:1002")}},
				{Path: "/", Protocol: routing.HTTP, Balance: routing.RoundRobin, BackendTLS: &routing.BackendTLS{Verify: true}, Backends: []routing.Backend{backend("a", "127.0.0.1:1001")}},
			}}}},
		},
		{
			name: "alias taken by another host's name",
			containers: []docker.Container{
				published(ctr("a", 0, host("x.com")), 1001),
				published(ctr("b", 1, map[string]string{LabelHostname: "y.com", LabelAliasDomain + ".4": "X.com"}), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "x.com", Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:1001"))}}}},
			problems: []wantProblem{{id: "b", label: LabelAliasDomain + ".4", reason: routing.ReasonConflict,
				msg: `name "x.com" is already the host name of host "x.com", defined by container c-a`}},
		},
		{
			name: "host name taken by another host's alias",
			containers: []docker.Container{
				published(ctr("a", 0, map[string]string{LabelHostname: "x.com", LabelAliasDomain: "y.com"}), 1001),
				published(ctr("b", 1, map[string]string{LabelDomain: "y.com"}), 1002),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "x.com", Aliases: []string{"y.com"}, Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:1001"))}}}},
			problems: []wantProblem{{id: "b", label: LabelDomain, reason: routing.ReasonConflict,
				msg: `name "y.com" is already an alias of host "x.com", defined by container c-a`}},
		},
		{
			name: "alias shared by two hosts",
			containers: []docker.Container{
				published(ctr("a", 0, map[string]string{LabelHostname: "x.com", LabelAliasDomain: "z.com"}), 1001),
				published(ctr("b", 1, map[string]string{LabelHostname: "y.com", LabelAliasDomain: "z.com"}), 1002),
			},
			want:     routing.Table{Hosts: []routing.Host{{Name: "x.com", Aliases: []string{"z.com"}, Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:1001"))}}}},
			problems: []wantProblem{{id: "b", label: LabelAliasDomain, reason: routing.ReasonConflict, msg: `name "z.com" is already an alias of host "x.com"`}},
		},
		{
			name: "tcp route shares its host with nothing",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelProtocol: "tcp"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelContextRoot: "/api"})), 1002),
				published(ctr("c", 2, appLabels(nil)), 1003),
			},
			want: routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{
				{Path: "/", Protocol: routing.TCP, Balance: routing.RoundRobin, Backends: []routing.Backend{backend("a", "127.0.0.1:1001")}},
			}}}},
			problems: []wantProblem{
				{id: "b", label: LabelProtocol, reason: routing.ReasonConflict, msg: `already has route "/" (protocol tcp), defined by container c-a; a tcp route must be the only route`},
				{id: "c", label: LabelProtocol, reason: routing.ReasonConflict, msg: `with interlock.protocol "tcp", this container has "http"`},
			},
		},
		{
			name: "a refused container claims no name",
			containers: []docker.Container{
				published(ctr("a", 0, host("x.com")), 1001),
				published(ctr("b", 1, map[string]string{LabelHostname: "x.com", LabelSSL: "true", LabelAliasDomain: "z.com"}), 1002),
				published(ctr("c", 2, host("z.com")), 1003),
			},
			want: routing.Table{Hosts: []routing.Host{
				{Name: "x.com", Routes: []routing.Route{defaultRoute(backend("a", "127.0.0.1:1001"))}},
				{Name: "z.com", Routes: []routing.Route{defaultRoute(backend("c", "127.0.0.1:1003"))}},
			}},
			problems: []wantProblem{
				{id: "b", label: LabelAliasDomain, reason: routing.ReasonConflict, msg: `unset, this container has "z.com"`},
				{id: "b", label: LabelSSL, reason: routing.ReasonConflict, msg: `"false", this container has "true"`},
			},
		},
		{
			name: "an invalid container defines nothing",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelSSL: "true", LabelPort: "x"})), 1001),
				published(ctr("b", 1, appLabels(nil)), 1002),
			},
			want:     routing.Table{Hosts: []routing.Host{{Name: "app.example.com", Routes: []routing.Route{defaultRoute(backend("b", "127.0.0.1:1002"))}}}},
			problems: []wantProblem{{id: "a", label: LabelPort, reason: routing.ReasonInvalidLabel, msg: "1-65535"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Build(docker.Snapshot{Containers: tc.containers}, Options{})
			checkProblems(t, problems, tc.problems)
			checkTable(t, got, tc.want)
		})
	}
}
