package discovery

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// svc returns a service created `created` seconds after epoch on network
// "app-net" (VIP 10.0.1.2) with one running task per IP.
func svc(id string, created int, labels map[string]string, taskIPs ...string) docker.Service {
	s := docker.Service{
		ID: id, Name: "svc-" + id, Created: epoch.Add(time.Duration(created) * time.Second),
		Labels:   labels,
		Networks: []string{"app-net", "ingress"},
		VIPs:     map[string]string{"app-net": "10.0.1.2", "ingress": "10.0.0.2"},
		Ports:    []docker.ServicePort{{Target: 8080, Published: 30080, Proto: "tcp", Mode: "ingress"}},
	}
	for i, ip := range taskIPs {
		s.Tasks = append(s.Tasks, docker.Task{
			ID: id + "-t" + string(rune('a'+i)), Slot: i + 1, Node: "node-1",
			State: "running", DesiredState: "running",
			Networks:    map[string]string{"app-net": ip, "ingress": "10.0.0.9"},
			ContainerID: "c" + id + string(rune('a'+i)),
		})
	}
	return s
}

func lb(extra map[string]string) map[string]string {
	return with(map[string]string{LabelLBHosts: "shop.example.com", LabelLBPort: "8080"}, extra)
}

func backendAddrs(t routing.Table, host string) []string {
	h, ok := t.Lookup(host)
	if !ok {
		return nil
	}
	var out []string
	for _, r := range h.Routes {
		for _, b := range r.Backends {
			out = append(out, r.Path+"="+b.Address)
		}
	}
	return out
}

func TestServiceLabels(t *testing.T) {
	tests := []struct {
		name     string
		services []docker.Service
		opts     Options
		host     string
		want     []string // route=backend of host
		problems []wantProblem
		check    func(t *testing.T, tb routing.Table)
	}{
		{
			name:     "tasks by IP on the only network",
			services: []docker.Service{svc("s1", 0, lb(nil), "10.0.1.5", "10.0.1.6")},
			host:     "shop.example.com", want: []string{"/=10.0.1.5:8080", "/=10.0.1.6:8080"},
			check: func(t *testing.T, tb routing.Table) {
				b := tb.Hosts[0].Routes[0].Backends[0]
				if b.Task != "s1-ta" || b.Node != "node-1" || b.Name != "svc-s1.1" || b.Container != "cs1a" {
					t.Errorf("backend identity = %+v", b)
				}
			},
		},
		{
			name:     "vip mode",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBBackendMode: "vip"}), "10.0.1.5")},
			host:     "shop.example.com", want: []string{"/=10.0.1.2:8080"},
		},
		{
			name:     "published mode",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBBackendMode: "published"}), "10.0.1.5")},
			opts:     Options{BackendAddress: "192.0.2.1"},
			host:     "shop.example.com", want: []string{"/=192.0.2.1:30080"},
		},
		{
			name:     "published mode, port not published",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBBackendMode: "published", LabelLBPort: "9000"}))},
			problems: []wantProblem{{label: LabelLBBackendMode, reason: routing.ReasonNoPort, msg: "does not publish target port 9000"}},
		},
		{
			name: "draining and stopping tasks are left out",
			services: func() []docker.Service {
				s := svc("s1", 0, lb(nil), "10.0.1.5", "10.0.1.6", "10.0.1.7")
				s.Tasks[0].Draining = true
				s.Tasks[1].DesiredState = "shutdown"
				return []docker.Service{s}
			}(),
			host: "shop.example.com", want: []string{"/=10.0.1.7:8080"},
		},
		{
			name:     "no running task: the host stays, with no backend",
			services: []docker.Service{svc("s1", 0, lb(nil))},
			check: func(t *testing.T, tb routing.Table) {
				if len(tb.Hosts) != 1 || len(tb.Hosts[0].Routes[0].Backends) != 0 {
					t.Errorf("want the host with an empty route, got %+v", tb.Hosts)
				}
			},
		},
		{
			name:     "several hosts",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBHosts: "a.example.com, B.example.com"}), "10.0.1.5")},
			host:     "b.example.com", want: []string{"/=10.0.1.5:8080"},
			check: func(t *testing.T, tb routing.Table) {
				if len(tb.Hosts) != 2 {
					t.Errorf("want 2 hosts, got %d", len(tb.Hosts))
				}
			},
		},
		{
			name:     "context root, rewrite, websocket, ip_hash, sticky cookie, backend tls",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBContextRoot: "/api", LabelLBContextRootRewrite: "true", LabelLBWebSocketEndpoints: "/api/ws", LabelLBIPHash: "true", LabelLBStickyCookie: "session_id", LabelLBSSLBackend: "true", LabelLBSSLBackendTLSVerify: "none"}), "10.0.1.5")},
			host:     "shop.example.com", want: []string{"/api=10.0.1.5:8080"},
			check: func(t *testing.T, tb routing.Table) {
				r := tb.Hosts[0].Routes[0]
				if !r.StripPath || !slices.Equal(r.WebSocketPaths, []string{"/api/ws"}) || r.Balance != routing.Source ||
					r.StickyCookie != "session_id" || r.BackendTLS == nil || r.BackendTLS.Verify {
					t.Errorf("route = %+v", r)
				}
			},
		},
		{
			name:     "certificates and ssl_only",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLCert: "shop/cert.pem", LabelLBSSLKey: "shop/key.pem", LabelLBSSLOnly: "true"}), "10.0.1.5")},
			check: func(t *testing.T, tb routing.Table) {
				if tls := tb.Hosts[0].TLS; tls == nil || tls.CertFile != "shop/cert.pem" || tls.KeyFile != "shop/key.pem" || !tls.Only {
					t.Errorf("tls = %+v", tls)
				}
			},
		},
		{
			name:     "passthrough",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLPassthrough: "true"}), "10.0.1.5")},
			check: func(t *testing.T, tb routing.Table) {
				if tls := tb.Hosts[0].TLS; tls == nil || !tls.Passthrough {
					t.Errorf("tls = %+v", tls)
				}
			},
		},
		{
			name:     "passthrough with a certificate",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLPassthrough: "true", LabelLBSSLCert: "c.pem", LabelLBSSLKey: "k.pem"}), "10.0.1.5")},
			problems: []wantProblem{{label: LabelLBSSLPassthrough, reason: routing.ReasonInvalidLabel, msg: "holds no certificate"}},
		},
		{
			name:     "ssl_acme",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLACME: "true", LabelLBSSLOnly: "true"}), "10.0.1.5")},
			check: func(t *testing.T, tb routing.Table) {
				if tls := tb.Hosts[0].TLS; tls == nil || !tls.ACME || !tls.Only || tls.CertFile != "" {
					t.Errorf("tls = %+v", tls)
				}
			},
		},
		{
			name:     "ssl_acme alone asks for TLS",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLACME: "true"}), "10.0.1.5")},
			check: func(t *testing.T, tb routing.Table) {
				if tls := tb.Hosts[0].TLS; tls == nil || !tls.ACME {
					t.Errorf("tls = %+v", tls)
				}
			},
		},
		{
			name:     "ssl_acme with a certificate",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLACME: "true", LabelLBSSLCert: "c.pem", LabelLBSSLKey: "k.pem"}), "10.0.1.5")},
			problems: []wantProblem{{label: LabelLBSSLACME, reason: routing.ReasonInvalidLabel, msg: "names a certificate"}},
		},
		{
			name:     "ssl_acme with passthrough",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLACME: "true", LabelLBSSLPassthrough: "true"}), "10.0.1.5")},
			problems: []wantProblem{{label: LabelLBSSLACME, reason: routing.ReasonInvalidLabel, msg: "holds no certificate"}},
		},
		{
			name:     "loose ssl_acme",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLACME: "1"}), "10.0.1.5")},
			problems: []wantProblem{{label: LabelLBSSLACME, reason: routing.ReasonInvalidLabel, msg: "exactly true or false"}},
		},
		{
			name:     "ACME by default: an ssl_only service without a certificate",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBSSLOnly: "true"}), "10.0.1.5")},
			opts:     Options{ACMEDefault: true},
			check: func(t *testing.T, tb routing.Table) {
				if tls := tb.Hosts[0].TLS; tls == nil || !tls.ACME || !tls.Only {
					t.Errorf("tls = %+v", tls)
				}
			},
		},
		{
			name:     "ACME by default: the http->https redirect is ssl_only too",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBRedirects: "http://shop.example.com,https://shop.example.com"}), "10.0.1.5")},
			opts:     Options{ACMEDefault: true},
			check: func(t *testing.T, tb routing.Table) {
				if tls := tb.Hosts[0].TLS; tls == nil || !tls.ACME || !tls.Only {
					t.Errorf("tls = %+v", tls)
				}
			},
		},
		{
			name: "ACME by default: not for a certificate, a passthrough, an opt-out or a plain host",
			services: []docker.Service{
				svc("s1", 0, lb(map[string]string{LabelLBHosts: "cert.example.com", LabelLBSSLCert: "c.pem", LabelLBSSLKey: "k.pem"}), "10.0.1.5"),
				svc("s2", 1, lb(map[string]string{LabelLBHosts: "pass.example.com", LabelLBSSLPassthrough: "true"}), "10.0.1.6"),
				svc("s3", 2, lb(map[string]string{LabelLBHosts: "out.example.com", LabelLBSSLOnly: "true", LabelLBSSLACME: "false"}), "10.0.1.7"),
				svc("s4", 3, lb(map[string]string{LabelLBHosts: "plain.example.com"}), "10.0.1.8"),
			},
			opts: Options{ACMEDefault: true},
			check: func(t *testing.T, tb routing.Table) {
				for _, h := range tb.Hosts {
					if h.TLS != nil && h.TLS.ACME {
						t.Errorf("host %s: tls = %+v, want no ACME", h.Name, h.TLS)
					}
				}
				if h, _ := tb.Lookup("plain.example.com"); h.TLS != nil {
					t.Errorf("plain host got TLS %+v: ACME never turns TLS on", h.TLS)
				}
			},
		},
		{
			name:     "redirect to another host",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBRedirects: "http://old.example.com,https://shop.example.com"}), "10.0.1.5")},
			check: func(t *testing.T, tb routing.Table) {
				h, ok := tb.Lookup("old.example.com")
				if !ok || h.RedirectTo != "https://shop.example.com" || len(h.Routes) != 0 {
					t.Errorf("redirect host = %+v, %v", h, ok)
				}
			},
		},
		{
			name:     "redirect http to https of the same host is ssl_only",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBRedirects: "http://shop.example.com,https://shop.example.com"}), "10.0.1.5")},
			check: func(t *testing.T, tb routing.Table) {
				if len(tb.Hosts) != 1 || tb.Hosts[0].TLS == nil || !tb.Hosts[0].TLS.Only {
					t.Errorf("hosts = %+v", tb.Hosts)
				}
			},
		},
		{
			name:     "redirect with a path",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBRedirects: "http://old.example.com/x,https://shop.example.com"}))},
			problems: []wantProblem{{label: LabelLBRedirects, reason: routing.ReasonInvalidLabel, msg: "no path"}},
		},
		{
			name: "one default backend",
			services: []docker.Service{
				svc("s1", 0, lb(map[string]string{LabelLBDefaultBackend: "true"}), "10.0.1.5"),
				svc("s2", 1, lb(map[string]string{LabelLBHosts: "other.example.com", LabelLBDefaultBackend: "true"}), "10.0.1.6"),
			},
			problems: []wantProblem{{id: "s2", label: LabelLBDefaultBackend, reason: routing.ReasonConflict, msg: "already host \"shop.example.com\" of service svc-s1"}},
			check: func(t *testing.T, tb routing.Table) {
				if len(tb.Hosts) != 1 || !tb.Hosts[0].Default {
					t.Errorf("hosts = %+v, want shop.example.com as the default", tb.Hosts)
				}
			},
		},
		{
			name:     "missing port",
			services: []docker.Service{svc("s1", 0, map[string]string{LabelLBHosts: "shop.example.com"}, "10.0.1.5")},
			problems: []wantProblem{{label: LabelLBPort, reason: routing.ReasonNoPort, msg: "set it to the port its tasks listen on"}},
		},
		{
			name: "several networks need a label",
			services: func() []docker.Service {
				s := svc("s1", 0, lb(nil), "10.0.1.5")
				s.Networks = []string{"a", "b", "ingress"}
				return []docker.Service{s}
			}(),
			problems: []wantProblem{{label: LabelLBNetwork, reason: routing.ReasonNoNetwork, msg: "several networks (a, b)"}},
		},
		{
			name:     "network label names a network the service is not on",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBNetwork: "elsewhere"}), "10.0.1.5")},
			problems: []wantProblem{{label: LabelLBNetwork, reason: routing.ReasonNoNetwork, msg: "not attached to network \"elsewhere\""}},
		},
		{
			name:     "bad values are each reported",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{LabelLBHosts: "shop.example.com;", LabelLBPort: "0", LabelLBBackendMode: "dns", LabelLBStickyCookie: "a=b", LabelLBIPHash: "yes"}))},
			problems: []wantProblem{
				{label: LabelLBBackendMode, reason: routing.ReasonInvalidLabel, msg: "not one of task, vip, published"},
				{label: LabelLBHosts, reason: routing.ReasonInvalidLabel, msg: ""},
				{label: LabelLBIPHash, reason: routing.ReasonInvalidLabel, msg: ""},
				{label: LabelLBPort, reason: routing.ReasonInvalidLabel, msg: ""},
				{label: LabelLBStickyCookie, reason: routing.ReasonInvalidLabel, msg: "only letters"},
			},
		},
		{
			name:     "unknown label with a suggestion",
			services: []docker.Service{svc("s1", 0, lb(map[string]string{"com.docker.lb.hostz": "x"}), "10.0.1.5")},
			problems: []wantProblem{{label: "com.docker.lb.hostz", reason: routing.ReasonInvalidLabel, msg: "did you mean com.docker.lb.hosts?"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, probs := Build(docker.Snapshot{Swarm: true, Services: tc.services}, tc.opts)
			checkProblems(t, probs, tc.problems)
			if tc.host != "" {
				if got := backendAddrs(tb, tc.host); !slices.Equal(got, tc.want) {
					t.Errorf("backends of %s = %v, want %v", tc.host, got, tc.want)
				}
			}
			if tc.check != nil {
				tc.check(t, tb)
			}
			for _, p := range probs {
				if p.Kind != "service" {
					t.Errorf("problem kind %q, want service", p.Kind)
				}
			}
		})
	}
}

// Containers (Interlock 1 labels) and services (com.docker.lb.*) share one
// table: the same host can have a container route and a service route.
func TestContainersAndServicesShareHosts(t *testing.T) {
	c := ctr("c1", 0, map[string]string{LabelHostname: "shop.example.com"})
	s := svc("s1", 1, lb(map[string]string{LabelLBContextRoot: "/api"}), "10.0.1.5")
	snap := docker.Snapshot{Containers: []docker.Container{c}, Swarm: true, Services: []docker.Service{s}}
	tb, probs := Build(snap, Options{})
	if len(probs) != 0 {
		t.Fatalf("problems: %s", describe(probs))
	}
	got := backendAddrs(tb, "shop.example.com")
	if want := []string{"/api=10.0.1.5:8080", "/=127.0.0.1:32768"}; !slices.Equal(got, want) {
		t.Errorf("backends = %v, want %v", got, want)
	}
	// A service that disagrees with the container on a host setting loses,
	// being the later one, and says why.
	s2 := svc("s2", 2, lb(map[string]string{LabelLBContextRoot: "/v2", LabelLBSSLOnly: "true"}), "10.0.1.6")
	snap.Services = append(snap.Services, s2)
	_, probs = Build(snap, Options{})
	if len(probs) != 1 || probs[0].Kind != "service" || probs[0].Reason != routing.ReasonConflict || !strings.Contains(probs[0].Message, "container c-c1") {
		t.Errorf("problems = %s, want one conflict of service s2 naming container c-c1", describe(probs))
	}
}
