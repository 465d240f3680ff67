package discovery

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestRouteLimitLabels drives the override labels of both dialects through
// Build: each good value becomes the route's Limits, each bad one a
// problem naming the label, and the other object stays routed.
func TestRouteLimitLabels(t *testing.T) {
	type dialect struct {
		name                            string
		connect, respHeader, idle, body string
		build                           func(labels map[string]string) docker.Snapshot
		host                            string
	}
	dialects := []dialect{
		{
			name: "container", connect: LabelBackendConnectTimeout, respHeader: LabelBackendResponseHeaderTimeout,
			idle: LabelBackendIdleTimeout, body: LabelMaxBodyBytes, host: "app.example.com",
			build: func(labels map[string]string) docker.Snapshot {
				return docker.Snapshot{Containers: []docker.Container{
					published(ctr("a", 0, appLabels(labels)), 1001),
					// Another route of another host: never affected.
					published(ctr("z", 1, map[string]string{LabelHostname: "other.example.com"}), 1002),
				}}
			},
		},
		{
			name: "service", connect: LabelLBBackendConnectTimeout, respHeader: LabelLBBackendResponseHeaderTimeout,
			idle: LabelLBBackendIdleTimeout, body: LabelLBMaxBodyBytes, host: "shop.example.com",
			build: func(labels map[string]string) docker.Snapshot {
				return docker.Snapshot{Swarm: true,
					Containers: []docker.Container{published(ctr("z", 1, map[string]string{LabelHostname: "other.example.com"}), 1002)},
					Services:   []docker.Service{svc("a", 0, lb(labels), "10.0.1.5")}}
			},
		},
	}
	type labelsOf func(d dialect) map[string]string
	tests := []struct {
		name     string
		labels   labelsOf
		want     *routing.Limits
		problems func(d dialect) []wantProblem
	}{
		{name: "none", labels: func(dialect) map[string]string { return nil }},
		{
			name: "every override",
			labels: func(d dialect) map[string]string {
				return map[string]string{d.connect: "250ms", d.respHeader: "30s", d.idle: "5000", d.body: "64KiB"}
			},
			want: &routing.Limits{ConnectTimeout: 250 * time.Millisecond, ResponseHeaderTimeout: 30 * time.Second,
				IdleTimeout: 5 * time.Second, MaxBodyBytes: 64 << 10},
		},
		{
			name:   "zero lifts the response header and body limits",
			labels: func(d dialect) map[string]string { return map[string]string{d.respHeader: "0", d.body: "0"} },
			want:   &routing.Limits{ResponseHeaderTimeout: routing.Unlimited, MaxBodyBytes: routing.Unlimited},
		},
		{
			name:   "bytes without a unit, 0s as no limit",
			labels: func(d dialect) map[string]string { return map[string]string{d.body: "1000", d.respHeader: "0s"} },
			want:   &routing.Limits{MaxBodyBytes: 1000, ResponseHeaderTimeout: routing.Unlimited},
		},
		{
			name: "bad values, one problem per label",
			labels: func(d dialect) map[string]string {
				return map[string]string{d.connect: "0", d.respHeader: "fast", d.idle: "-1s", d.body: "10MB"}
			},
			problems: func(d dialect) []wantProblem {
				// Problems are sorted by label.
				return []wantProblem{
					{id: "a", label: d.connect, reason: routing.ReasonInvalidLabel, msg: `backend connect timeout "0" is out of range, use 1ms to 1m0s`},
					{id: "a", label: d.idle, reason: routing.ReasonInvalidLabel, msg: `backend idle timeout "-1s" is out of range, use 1ms to 24h0m0s`},
					{id: "a", label: d.respHeader, reason: routing.ReasonInvalidLabel, msg: `backend response header timeout "fast" is not a duration, use a Go duration such as 30s or 1500ms, or a number of milliseconds, or 0 for no limit`},
					{id: "a", label: d.body, reason: routing.ReasonInvalidLabel, msg: `body size "10MB" is not a size, use a whole number of bytes, or one with a unit B, KiB, MiB or GiB`},
				}
			},
		},
		{
			name:   "connect timeout too long",
			labels: func(d dialect) map[string]string { return map[string]string{d.connect: "2m"} },
			problems: func(d dialect) []wantProblem {
				return []wantProblem{{id: "a", label: d.connect, reason: routing.ReasonInvalidLabel, msg: "out of range, use 1ms to 1m0s, or remove the label"}}
			},
		},
		{
			name:   "milliseconds beyond any bound",
			labels: func(d dialect) map[string]string { return map[string]string{d.idle: "99999999999999999999"} },
			problems: func(d dialect) []wantProblem {
				return []wantProblem{{id: "a", label: d.idle, reason: routing.ReasonInvalidLabel, msg: "is out of range"}}
			},
		},
		{
			name:   "body limit too large",
			labels: func(d dialect) map[string]string { return map[string]string{d.body: "2048GiB"} },
			problems: func(d dialect) []wantProblem {
				return []wantProblem{{id: "a", label: d.body, reason: routing.ReasonInvalidLabel, msg: `body size "2048GiB" is more than 1024GiB`}}
			},
		},
		{
			name:   "hostile value is quoted and cut",
			labels: func(d dialect) map[string]string { return map[string]string{d.body: strings.Repeat("9;", 200)} },
			problems: func(d dialect) []wantProblem {
				return []wantProblem{{id: "a", label: d.body, reason: routing.ReasonInvalidLabel, msg: `body size "9;9;`}}
			},
		},
	}
	for _, d := range dialects {
		for _, tc := range tests {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				tb, problems := Build(d.build(tc.labels(d)), Options{})
				var want []wantProblem
				if tc.problems != nil {
					want = tc.problems(d)
				}
				checkProblems(t, problems, want)
				if _, ok := tb.Lookup("other.example.com"); !ok {
					t.Errorf("the other container's host is missing: %+v", tb)
				}
				h, ok := tb.Lookup(d.host)
				if len(want) > 0 {
					if ok {
						t.Errorf("host %s is routed despite its bad labels: %+v", d.host, h)
					}
					for _, p := range problems {
						if len(p.Message) > 400 {
							t.Errorf("message is not cut: %d bytes", len(p.Message))
						}
					}
					return
				}
				if !ok || len(h.Routes) != 1 {
					t.Fatalf("host %s: %+v", d.host, h)
				}
				if got := h.Routes[0].Limits; !reflect.DeepEqual(got, tc.want) {
					t.Errorf("Limits = %+v, want %+v", got, tc.want)
				}
			})
		}
	}
}

// TestRouteLimitLabelsTCP: a tcp route keeps only the connect timeout.
func TestRouteLimitLabelsTCP(t *testing.T) {
	tcp := map[string]string{LabelProtocol: "tcp"}
	tb, problems := Build(docker.Snapshot{Containers: []docker.Container{
		published(ctr("a", 0, appLabels(with(tcp, map[string]string{LabelBackendConnectTimeout: "300ms"}))), 1001),
		published(ctr("b", 1, map[string]string{LabelHostname: "b.example.com", LabelProtocol: "tcp",
			LabelMaxBodyBytes: "1KiB", LabelBackendIdleTimeout: "1s", LabelBackendResponseHeaderTimeout: "1s"}), 1002),
	}}, Options{})
	checkProblems(t, problems, []wantProblem{
		{id: "b", label: LabelBackendIdleTimeout, reason: routing.ReasonInvalidLabel, msg: "has no meaning for protocol tcp"},
		{id: "b", label: LabelBackendResponseHeaderTimeout, reason: routing.ReasonInvalidLabel, msg: "has no meaning for protocol tcp"},
		{id: "b", label: LabelMaxBodyBytes, reason: routing.ReasonInvalidLabel, msg: "has no meaning for protocol tcp"},
	})
	h, ok := tb.Lookup("app.example.com")
	if !ok || h.Routes[0].Limits == nil || h.Routes[0].Limits.ConnectTimeout != 300*time.Millisecond {
		t.Errorf("tcp route with a connect timeout: %+v", h)
	}
}

// TestRouteLimitConflicts: replicas of one route must agree on every
// override, by effective value, as on the other route settings; a
// disagreeing one is left out with a conflict naming its own dialect's
// label, and routes of their own may differ freely.
func TestRouteLimitConflicts(t *testing.T) {
	tests := []struct {
		name       string
		containers []docker.Container
		services   []docker.Service
		backends   int // of app.example.com/
		problems   []wantProblem
	}{
		{
			name: "same values in another spelling agree",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelMaxBodyBytes: "1MiB", LabelBackendConnectTimeout: "1500ms"})), 1001),
				published(ctr("b", 1, appLabels(map[string]string{LabelMaxBodyBytes: "1048576", LabelBackendConnectTimeout: "1500"})), 1002),
			},
			backends: 2,
		},
		{
			name: "an override against none",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelBackendResponseHeaderTimeout: "2s"})), 1001),
				published(ctr("b", 1, appLabels(nil)), 1002),
				published(ctr("c", 2, appLabels(map[string]string{LabelBackendResponseHeaderTimeout: "0"})), 1003),
			},
			backends: 1,
			problems: []wantProblem{
				{id: "b", label: LabelBackendResponseHeaderTimeout, reason: routing.ReasonConflict, msg: `with interlock.backend_response_header_timeout "2s", this container has unset`},
				{id: "c", label: LabelBackendResponseHeaderTimeout, reason: routing.ReasonConflict, msg: `with interlock.backend_response_header_timeout "2s", this container has "0"`},
			},
		},
		{
			name: "a service disagreeing with a container",
			containers: []docker.Container{
				published(ctr("a", 0, appLabels(map[string]string{LabelMaxBodyBytes: "1KiB", LabelBackendIdleTimeout: "10s"})), 1001),
			},
			services: []docker.Service{svc("s", 1, map[string]string{LabelLBHosts: "app.example.com", LabelLBPort: "8080",
				LabelLBMaxBodyBytes: "2KiB", LabelLBBackendIdleTimeout: "10s"}, "10.0.1.5")},
			backends: 1,
			problems: []wantProblem{
				{id: "s", label: LabelLBMaxBodyBytes, reason: routing.ReasonConflict, msg: `with interlock.max_body_bytes "1KiB", this service has "2KiB"`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb, problems := Build(docker.Snapshot{Swarm: len(tc.services) > 0, Containers: tc.containers, Services: tc.services}, Options{})
			checkProblems(t, problems, tc.problems)
			h, ok := tb.Lookup("app.example.com")
			if !ok || len(h.Routes) != 1 || len(h.Routes[0].Backends) != tc.backends {
				t.Errorf("app.example.com = %+v, want one route with %d backends", h, tc.backends)
			}
		})
	}

	// Routes of their own may differ.
	tb, problems := Build(docker.Snapshot{Containers: []docker.Container{
		published(ctr("a", 0, appLabels(map[string]string{LabelMaxBodyBytes: "1KiB"})), 1001),
		published(ctr("b", 1, appLabels(map[string]string{LabelContextRoot: "/upload", LabelMaxBodyBytes: "0"})), 1002),
	}}, Options{})
	checkProblems(t, problems, nil)
	h, _ := tb.Lookup("app.example.com")
	if len(h.Routes) != 2 || h.Routes[0].Limits.MaxBodyBytes != routing.Unlimited || h.Routes[1].Limits.MaxBodyBytes != 1<<10 {
		t.Errorf("routes = %+v", h.Routes)
	}
}

// TestLimitsCanonical: an all-zero Limits is nil after Normalize, so an
// empty override hashes like none.
func TestLimitsCanonical(t *testing.T) {
	a := routing.Table{Hosts: []routing.Host{{Name: "a", Routes: []routing.Route{{Path: "/", Limits: &routing.Limits{}}}}}}
	b := routing.Table{Hosts: []routing.Host{{Name: "a", Routes: []routing.Route{{Path: "/"}}}}}
	a.Normalize()
	b.Normalize()
	if a.Hosts[0].Routes[0].Limits != nil || a.Hash() != b.Hash() {
		t.Errorf("empty Limits not canonical: %+v", a.Hosts[0].Routes[0])
	}
	c := routing.Table{Hosts: []routing.Host{{Name: "a", Routes: []routing.Route{{Path: "/", Limits: &routing.Limits{MaxBodyBytes: 1}}}}}}
	c.Normalize()
	if c.Hash() == b.Hash() {
		t.Error("a table with an override hashes like one without")
	}
}

// FuzzLimitParsers: the override parsers never panic, and what they accept
// is within bounds (or Unlimited where that is allowed).
func FuzzLimitParsers(f *testing.F) {
	for _, s := range []string{"0", "0s", "1ms", "1500", "30s", "1m", "24h", "-1s", "1KiB", "10MiB", "1024GiB", "9999999999999999999", "1e3", " 1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, p := range []struct {
			parse     func(string) (time.Duration, error)
			max       time.Duration
			unlimited bool
		}{
			{timeoutParser("connect", maxConnectTimeout, false), maxConnectTimeout, false},
			{timeoutParser("response", maxLimitTimeout, true), maxLimitTimeout, true},
		} {
			d, err := p.parse(v)
			if err == nil && !(p.unlimited && d == routing.Unlimited) && (d < minLimitTimeout || d > p.max) {
				t.Errorf("%q accepted as %v, out of bounds", v, d)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\n\r\x00") {
				t.Errorf("error for %q has a control character", v)
			}
		}
		n, err := parseBodyLimit(v)
		if err == nil && n != routing.Unlimited && (n < 1 || n > int64(maxBodyLimit)) {
			t.Errorf("%q accepted as %d bytes, out of bounds", v, n)
		}
	})
}
