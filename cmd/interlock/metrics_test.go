package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// scrape fetches /metrics and parses it with the Prometheus text parser.
func (in *instance) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, err := httpGet(in.api+"/metrics", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return families
}

// sample returns the value of the series of name whose labels include
// want (a counter or gauge value, or a histogram's sample count), summed
// over every matching series; found is false when none matches.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, found bool) {
	mf := families[name]
	if mf == nil {
		return 0, false
	}
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, w := range want {
			if labels[k] != w {
				continue series
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, found
}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestMetricsMoveWithRealEvents(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	before := in.scrape(t)
	startsBefore, _ := sample(before, "interlock_docker_events_total", labels("type", "container", "action", "start"))
	appliesBefore, _ := sample(before, "interlock_controller_applies_total", labels("driver", "builtin", "result", "success"))
	if v, ok := sample(before, "interlock_docker_connected", nil); !ok || v != 1 {
		t.Errorf("interlock_docker_connected = %v (found %v), want 1", v, ok)
	}

	host := hostFor(t, "metrics")
	c := e.Run(t, testenv.ContainerSpec{Name: "metrics", Labels: labelsFor(host), PublishPort: 8000})
	e.Run(t, testenv.ContainerSpec{Name: "badmetrics", Labels: labelsFor(hostFor(t, "bad"), "interlock.port", "eighty"), PublishPort: 8000})
	in.waitStatus(t, host, "/", http.StatusOK)
	for range 3 {
		if r, err := in.get(host, "/x"); err != nil || r.code != 200 {
			t.Fatalf("GET through the proxy: %v %d", err, r.code)
		}
	}
	unknownHost := "nobody-" + fmt.Sprint(time.Now().UnixNano()) + ".test"
	if r, _ := in.get(unknownHost, "/"); r.code != http.StatusNotFound {
		t.Fatalf("unknown host answered %d", r.code)
	}
	backend := fmt.Sprintf("127.0.0.1:%d", c.HostPort)

	checks := []struct {
		what    string
		name    string
		labels  map[string]string
		atLeast float64
	}{
		{"container start events", "interlock_docker_events_total", labels("type", "container", "action", "start"), startsBefore + 2},
		{"successful applies", "interlock_controller_applies_total", labels("driver", "builtin", "result", "success"), appliesBefore + 1},
		{"apply durations", "interlock_controller_apply_duration_seconds", labels("driver", "builtin"), 1},
		{"convergence times", "interlock_controller_convergence_seconds", labels("driver", "builtin"), 1},
		{"builds", "interlock_controller_builds_total", nil, 1},
		{"hosts", "interlock_routing_hosts", nil, 1},
		{"routes", "interlock_routing_routes", nil, 1},
		{"backends", "interlock_routing_backends", nil, 1},
		{"left out for a bad label", "interlock_routing_left_out", labels("kind", "container", "reason", "invalid_label"), 1},
		{"requests by host and status", "interlock_builtin_requests_total", labels("host", host, "code", "200"), 3},
		{"unknown host requests", "interlock_builtin_requests_total", labels("host", "unknown", "code", "404"), 1},
		{"request durations", "interlock_builtin_request_duration_seconds", labels("host", host), 3},
		{"backend attempts", "interlock_builtin_backend_requests_total", labels("backend", backend), 3},
		{"no-route answers", "interlock_builtin_errors_total", labels("kind", "no_route"), 1},
		{"table applied", "interlock_controller_table_applied", nil, 1},
		{"last apply succeeded", "interlock_controller_last_apply_success", nil, 1},
		{"build info", "interlock_build_info", nil, 1},
	}
	testenv.WaitFor(t, 10*time.Second, "metrics to move", func() error {
		families := in.scrape(t)
		var missing []string
		for _, c := range checks {
			if v, _ := sample(families, c.name, c.labels); v < c.atLeast {
				missing = append(missing, fmt.Sprintf("%s: %s%v = %v, want >= %v", c.what, c.name, c.labels, v, c.atLeast))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("\n%s", strings.Join(missing, "\n"))
		}
		return nil
	})
	if _, found := sample(in.scrape(t), "interlock_builtin_requests_total", labels("host", unknownHost)); found {
		t.Error("a raw Host header became a label value")
	}

	_, body, err := httpGet(in.api+"/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint on the live /metrics: %s: %s", p.Metric, p.Text)
	}
}
