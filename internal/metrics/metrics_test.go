package metrics

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/feed"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

type fakeDocker struct{ st docker.Status }

func (f fakeDocker) Status() docker.Status { return f.st }

type fakeController struct{ st controller.Status }

func (f fakeController) Status() controller.Status { return f.st }

type fakeBuiltin struct {
	stats []builtin.BackendStats
	errs  builtin.ErrorStats
}

func (f fakeBuiltin) Stats() []builtin.BackendStats { return f.stats }
func (f fakeBuiltin) Errors() builtin.ErrorStats    { return f.errs }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sampleTable() routing.Table {
	t := routing.Table{Hosts: []routing.Host{
		{Name: "a.example", Routes: []routing.Route{
			{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2"}}},
			{Path: "/api", Backends: []routing.Backend{{Address: "127.0.0.1:3"}}},
		}},
		{Name: "b.example", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:4"}}}}},
	}}
	t.Normalize()
	return t
}

// everything returns Metrics with every source watched and some of each
// kind of series present.
func everything(t *testing.T) *Metrics {
	t.Helper()
	m := New(Options{Version: "test", Driver: "builtin", Reloads: true, Logger: quiet()})
	m.WatchDocker(fakeDocker{docker.Status{Connected: true, Connects: 1, EventsByKind: map[string]int64{"container/start": 2}}})
	m.WatchController(fakeController{controller.Status{Applied: true, Table: sampleTable(), LastApply: controller.Apply{At: time.Unix(100, 0)}}})
	m.WatchBuiltin(fakeBuiltin{stats: []builtin.BackendStats{{Address: "127.0.0.1:1", Requests: 3}}})
	m.Applied("builtin", time.Millisecond, nil, 5*time.Millisecond)
	m.Reloaded("builtin", time.Millisecond, nil)
	m.Requests().Host("a.example").Observe(200, time.Millisecond)
	return m
}

func TestLint(t *testing.T) {
	m := everything(t)
	problems, err := promlint.NewWithMetricFamilies(gather(t, m.Registry())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	families := gather(t, m.Registry())
	for _, mf := range families {
		name := mf.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		if !strings.HasPrefix(name, "interlock_") {
			t.Errorf("metric %s is not under interlock_", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
	}
}

type dtoFamily = dto.MetricFamily

func gather(t *testing.T, g prometheus.Gatherer) []*dtoFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

func TestDockerCollector(t *testing.T) {
	c := dockerCollector{fakeDocker{docker.Status{
		Connected: true, Connects: 3, Disconnects: 2, Resyncs: 7,
		EventsByKind: map[string]int64{"container/start": 4, "container/health_status": 1, "network/connect": 2},
	}}}
	want := `
# HELP interlock_docker_connected 1 while connected to the Docker engine, else 0.
# TYPE interlock_docker_connected gauge
interlock_docker_connected 1
# HELP interlock_docker_connects_total Successful connections (and reconnections) to the Docker engine.
# TYPE interlock_docker_connects_total counter
interlock_docker_connects_total 3
# HELP interlock_docker_disconnects_total Connections to the Docker engine that were lost.
# TYPE interlock_docker_disconnects_total counter
interlock_docker_disconnects_total 2
# HELP interlock_docker_events_total Events received from the Docker engine, by type (container, network, ...) and action (start, die, health_status, ...).
# TYPE interlock_docker_events_total counter
interlock_docker_events_total{action="connect",type="network"} 2
interlock_docker_events_total{action="health_status",type="container"} 1
interlock_docker_events_total{action="start",type="container"} 4
# HELP interlock_docker_resyncs_total Periodic full lists of the engine (on top of the list at every connect).
# TYPE interlock_docker_resyncs_total counter
interlock_docker_resyncs_total 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestControllerCollector(t *testing.T) {
	problems := []routing.Problem{
		{Kind: "container", ID: "a", Reason: routing.ReasonInvalidLabel, Label: "interlock.port"},
		// Two bad labels on one container count once.
		{Kind: "container", ID: "a", Reason: routing.ReasonInvalidLabel, Label: "interlock.hostname"},
		{Kind: "container", ID: "b", Reason: routing.ReasonInvalidLabel},
		{Kind: "service", ID: "c", Reason: routing.ReasonConflict},
	}
	c := controllerCollector{fakeController{controller.Status{
		Applied: true, Table: sampleTable(), Problems: problems,
		LastApply: controller.Apply{At: time.Unix(1700000000, 500000000), Error: "boom"},
	}}}
	want := `
# HELP interlock_routing_hosts Hosts in the live routing table.
# TYPE interlock_routing_hosts gauge
interlock_routing_hosts 2
# HELP interlock_routing_routes Routes (host and path prefix) in the live routing table.
# TYPE interlock_routing_routes gauge
interlock_routing_routes 3
# HELP interlock_routing_backends Backends over all routes of the live routing table.
# TYPE interlock_routing_backends gauge
interlock_routing_backends 4
# HELP interlock_routing_left_out Containers and services left out of the table, by kind and reason (invalid_label, conflict, no_port, no_network).
# TYPE interlock_routing_left_out gauge
interlock_routing_left_out{kind="container",reason="conflict"} 0
interlock_routing_left_out{kind="container",reason="invalid_label"} 2
interlock_routing_left_out{kind="container",reason="no_network"} 0
interlock_routing_left_out{kind="container",reason="no_port"} 0
interlock_routing_left_out{kind="service",reason="conflict"} 1
interlock_routing_left_out{kind="service",reason="invalid_label"} 0
interlock_routing_left_out{kind="service",reason="no_network"} 0
interlock_routing_left_out{kind="service",reason="no_port"} 0
# HELP interlock_controller_last_apply_success 1 when the last attempt to apply a table succeeded, 0 when it failed.
# TYPE interlock_controller_last_apply_success gauge
interlock_controller_last_apply_success 0
# HELP interlock_controller_last_apply_timestamp_seconds When the last attempt to apply a table started, as a Unix time.
# TYPE interlock_controller_last_apply_timestamp_seconds gauge
interlock_controller_last_apply_timestamp_seconds 1.7000000005e+09
# HELP interlock_controller_table_applied 1 once a routing table has been put live.
# TYPE interlock_controller_table_applied gauge
interlock_controller_table_applied 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestBuiltinCollector(t *testing.T) {
	c := builtinCollector{fakeBuiltin{
		stats: []builtin.BackendStats{
			{Address: "127.0.0.1:1", Requests: 10, Failures: 1, InFlight: 2},
			{Address: "127.0.0.1:2", Requests: 1, Failures: 1, Ejected: true},
		},
		errs: builtin.ErrorStats{NoRoute: 4, NoLiveBackend: 3, BackendUnavailable: 2, ClientCanceled: 1},
	}}
	want := `
# HELP interlock_builtin_backend_ejected 1 while a backend is passively ejected after a connect failure.
# TYPE interlock_builtin_backend_ejected gauge
interlock_builtin_backend_ejected{backend="127.0.0.1:1"} 0
interlock_builtin_backend_ejected{backend="127.0.0.1:2"} 1
# HELP interlock_builtin_backend_failures_total Attempts to a backend that failed at the transport level (connect failures, resets, timeouts); HTTP 5xx answers are not failures.
# TYPE interlock_builtin_backend_failures_total counter
interlock_builtin_backend_failures_total{backend="127.0.0.1:1"} 1
interlock_builtin_backend_failures_total{backend="127.0.0.1:2"} 1
# HELP interlock_builtin_backend_in_flight_requests Requests and upgraded tunnels open to a backend now.
# TYPE interlock_builtin_backend_in_flight_requests gauge
interlock_builtin_backend_in_flight_requests{backend="127.0.0.1:1"} 2
interlock_builtin_backend_in_flight_requests{backend="127.0.0.1:2"} 0
# HELP interlock_builtin_backend_requests_total Attempts the built-in proxy sent to a backend, retries included. Resets when the address leaves the table.
# TYPE interlock_builtin_backend_requests_total counter
interlock_builtin_backend_requests_total{backend="127.0.0.1:1"} 10
interlock_builtin_backend_requests_total{backend="127.0.0.1:2"} 1
# HELP interlock_builtin_errors_total Answers the built-in proxy gave itself, by kind: no_route (404), no_live_backend (503), backend_unavailable (502), client_canceled.
# TYPE interlock_builtin_errors_total counter
interlock_builtin_errors_total{kind="backend_unavailable"} 2
interlock_builtin_errors_total{kind="client_canceled"} 1
interlock_builtin_errors_total{kind="no_live_backend"} 3
interlock_builtin_errors_total{kind="no_route"} 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestCertCollector(t *testing.T) {
	c := certCollector{func() []builtin.CertProblem {
		return []builtin.CertProblem{
			{Host: "a.example", Path: "a/cert.pem", Reason: builtin.CertNameMismatch},
			{Host: "a.example", Path: "a/other.pem", Reason: builtin.CertNameMismatch},
			{Host: "b.example", Path: "b/cert.pem", Reason: builtin.CertExpired},
			{Host: "c.example", Path: "c.example", Reason: builtin.CertACMEFailed},
		}
	}}
	want := `
# HELP interlock_certificate_problems 1 for each host whose certificate cannot be served (it gets the default certificate), by reason: missing, unreadable, not_pem, invalid, key_mismatch, expired, not_yet_valid, name_mismatch, outside_cert_dir, acme_off, acme_failed.
# TYPE interlock_certificate_problems gauge
interlock_certificate_problems{host="a.example",reason="name_mismatch"} 1
interlock_certificate_problems{host="b.example",reason="expired"} 1
interlock_certificate_problems{host="c.example",reason="acme_failed"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestFeedCollector(t *testing.T) {
	c := feedCollector{func() feed.ServerStats {
		return feed.ServerStats{Version: "abc", Size: 1581871, GzipSize: 91204, Versions: 3, Sent: 7, SentBytes: 638428, NotModified: 2, Waiting: 4,
			EdgesConnected: 3, EdgesCurrent: 2}
	}}
	want := `
# HELP interlock_feed_edges_connected Edges following this controller now.
# TYPE interlock_feed_edges_connected gauge
interlock_feed_edges_connected 3
# HELP interlock_feed_edges_current Edges following this controller that have applied its live version.
# TYPE interlock_feed_edges_current gauge
interlock_feed_edges_current 2
# HELP interlock_feed_not_modified_total Long polls of edges that ended without a change (304).
# TYPE interlock_feed_not_modified_total counter
interlock_feed_not_modified_total 2
# HELP interlock_feed_sent_bytes_total Bytes of the snapshots sent to edges, as sent (gzipped for edges that accept it).
# TYPE interlock_feed_sent_bytes_total counter
interlock_feed_sent_bytes_total 638428
# HELP interlock_feed_snapshot_bytes Size of the live snapshot: what one change costs per edge, by encoding (json, gzip).
# TYPE interlock_feed_snapshot_bytes gauge
interlock_feed_snapshot_bytes{encoding="gzip"} 91204
interlock_feed_snapshot_bytes{encoding="json"} 1.581871e+06
# HELP interlock_feed_snapshots_sent_total Snapshots sent to edges.
# TYPE interlock_feed_snapshots_sent_total counter
interlock_feed_snapshots_sent_total 7
# HELP interlock_feed_versions_total Tables a controller made available to its edges.
# TYPE interlock_feed_versions_total counter
interlock_feed_versions_total 3
# HELP interlock_feed_waiting_edges Long polls of edges held now, waiting for a change.
# TYPE interlock_feed_waiting_edges gauge
interlock_feed_waiting_edges 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestEdgeCollector(t *testing.T) {
	for _, tc := range []struct {
		name      string
		following bool
		want      string
	}{
		{"following", true, "1"},
		{"serving its last table", false, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := edgeCollector{
				status: func() feed.Status {
					return feed.Status{Following: tc.following, Updates: 12, Switches: 3, Refused: 1}
				},
				certs: func() int { return 2 },
			}
			want := `
# HELP interlock_edge_acme_certificates ACME certificates the controllers sent that this edge holds.
# TYPE interlock_edge_acme_certificates gauge
interlock_edge_acme_certificates 2
# HELP interlock_edge_controller_switches_total Moves to another controller after a failure.
# TYPE interlock_edge_controller_switches_total counter
interlock_edge_controller_switches_total 3
# HELP interlock_edge_following 1 while this edge follows a controller, 0 while it serves its last table with none reachable.
# TYPE interlock_edge_following gauge
interlock_edge_following ` + tc.want + `
# HELP interlock_edge_refused_snapshots_total Snapshots refused (corrupt, truncated, too large, another protocol); the table in use was kept.
# TYPE interlock_edge_refused_snapshots_total counter
interlock_edge_refused_snapshots_total 1
# HELP interlock_edge_updates_total Tables received from the controllers and applied.
# TYPE interlock_edge_updates_total counter
interlock_edge_updates_total 12
`
			if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestObserver(t *testing.T) {
	m := New(Options{Driver: "nginx", Reloads: true, Logger: quiet()})
	var obs controller.Observer = m
	obs.Built(sampleTable(), nil)
	obs.Built(sampleTable(), nil)
	obs.Applied("nginx", 20*time.Millisecond, nil, 300*time.Millisecond)
	obs.Applied("nginx", 2*time.Second, errors.New("nginx -t failed"), 0)
	m.Reloaded("nginx", 150*time.Millisecond, nil)

	want := `
# HELP interlock_controller_applies_total Attempts to put a changed routing table live, by driver and result (success or error).
# TYPE interlock_controller_applies_total counter
interlock_controller_applies_total{driver="nginx",result="error"} 1
interlock_controller_applies_total{driver="nginx",result="success"} 1
# HELP interlock_controller_builds_total Routing tables built from Docker snapshots, applied or not (an unchanged table is not applied).
# TYPE interlock_controller_builds_total counter
interlock_controller_builds_total 2
# HELP interlock_proxy_reloads_total Reloads of a side-loaded proxy (nginx, haproxy), by driver and result. The built-in proxy never reloads.
# TYPE interlock_proxy_reloads_total counter
interlock_proxy_reloads_total{driver="nginx",result="error"} 0
interlock_proxy_reloads_total{driver="nginx",result="success"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"interlock_controller_applies_total", "interlock_controller_builds_total", "interlock_proxy_reloads_total"); err != nil {
		t.Error(err)
	}
	for name, wantCount := range map[string]int{
		"interlock_controller_apply_duration_seconds": 2, // failures included
		"interlock_controller_convergence_seconds":    1, // successes only
		"interlock_proxy_reload_duration_seconds":     1,
	} {
		if got := histogramCount(t, m.Registry(), name, nil); got != wantCount {
			t.Errorf("%s count = %d, want %d", name, got, wantCount)
		}
	}
	if m.Reloads() != 1 {
		t.Errorf("Reloads() = %d, want 1", m.Reloads())
	}
}

func TestDriverSeriesExistFromTheStart(t *testing.T) {
	m := New(Options{Driver: "builtin", Logger: quiet()})
	want := `
# HELP interlock_controller_applies_total Attempts to put a changed routing table live, by driver and result (success or error).
# TYPE interlock_controller_applies_total counter
interlock_controller_applies_total{driver="builtin",result="error"} 0
interlock_controller_applies_total{driver="builtin",result="success"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "interlock_controller_applies_total", "interlock_proxy_reloads_total"); err != nil {
		t.Error(err)
	}
}

func TestRequests(t *testing.T) {
	now := time.Unix(1000, 0)
	rm := newRequestMetrics(time.Minute, func() time.Time { return now })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(rm.total, rm.duration)

	web := rm.Host("web.example")
	if again := rm.Host("web.example"); again != web {
		t.Error("Host returned a new recorder for a known host")
	}
	unknown := rm.Host(builtin.UnknownHost)
	web.Observe(200, 2*time.Millisecond)
	web.Observe(200, 3*time.Millisecond)
	web.Observe(503, time.Millisecond)
	web.Observe(101, time.Hour) // a tunnel: counted, not timed
	web.Observe(999, time.Millisecond)
	unknown.Observe(404, time.Millisecond)

	want := `
# HELP interlock_builtin_requests_total Requests the built-in proxy answered, by host (the route's primary host name, "unknown" when no host matched) and status code.
# TYPE interlock_builtin_requests_total counter
interlock_builtin_requests_total{code="101",host="web.example"} 1
interlock_builtin_requests_total{code="200",host="web.example"} 2
interlock_builtin_requests_total{code="404",host="unknown"} 1
interlock_builtin_requests_total{code="503",host="web.example"} 1
interlock_builtin_requests_total{code="999",host="web.example"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "interlock_builtin_requests_total"); err != nil {
		t.Error(err)
	}
	if got := histogramCount(t, reg, "interlock_builtin_request_duration_seconds", map[string]string{"host": "web.example"}); got != 4 {
		t.Errorf("web.example duration count = %d, want 4 (the 101 is not timed)", got)
	}

	t.Run("a host that comes back within retain keeps its series", func(t *testing.T) {
		rm.Forget("web.example")
		now = now.Add(30 * time.Second)
		if rm.Host("web.example") != web {
			t.Error("host back within retain got a new recorder")
		}
		if n := testutil.CollectAndCount(rm.total, "interlock_builtin_requests_total"); n != 5 {
			t.Errorf("%d request series, want 5", n)
		}
	})
	t.Run("a host gone for longer than retain loses its series", func(t *testing.T) {
		rm.Forget("web.example")
		rm.Forget(builtin.UnknownHost) // never forgotten
		now = now.Add(2 * time.Minute)
		rm.Host("other.example")
		if n := testutil.CollectAndCount(rm.total, "interlock_builtin_requests_total"); n != 1 {
			t.Errorf("%d request series after the host left, want 1 (unknown)", n)
		}
		web.Observe(200, time.Millisecond) // a request in flight on the old table
		if n := testutil.CollectAndCount(rm.total, "interlock_builtin_requests_total"); n != 1 {
			t.Errorf("a late request brought back the series of a deleted host (%d series)", n)
		}
		if rm.Host("web.example") == web {
			t.Error("a deleted host's recorder was reused")
		}
	})
}

func TestObserveDoesNotAllocate(t *testing.T) {
	rm := newRequestMetrics(0, time.Now)
	rec := rm.Host("web.example")
	rec.Observe(200, time.Millisecond) // first use of a code fills the cache
	if n := testing.AllocsPerRun(1000, func() { rec.Observe(200, time.Millisecond) }); n != 0 {
		t.Errorf("Observe allocates %.1f times per request, want 0", n)
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	m := everything(t)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for _, name := range []string{"interlock_build_info", "interlock_docker_events_total", "interlock_routing_hosts",
		"interlock_builtin_requests_total", "go_goroutines", "process_cpu_seconds_total"} {
		if families[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

// histogramCount returns the sample count of the histogram name whose
// labels include want, summed over matching series.
func histogramCount(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) int {
	t.Helper()
	n := 0
	for _, mf := range gather(t, g) {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			n += int(m.GetHistogram().GetSampleCount())
		}
	}
	return n
}
