package main

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scripted benchmarks record their key figures for the one table that
// ends `make bench` (scripts/benchsummary): each figure is a JSON line
// appended to the file named by BENCH_SUMMARY. Without BENCH_SUMMARY (a
// benchmark run alone) nothing is written; the t.Logf lines stay the full
// account either way.

// benchRecord is one line of BENCH_SUMMARY; scripts/benchsummary reads the
// same fields.
type benchRecord struct {
	Area  string  `json:"area"`
	Name  string  `json:"name"`
	Mode  string  `json:"mode,omitempty"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Test  string  `json:"test,omitempty"`
}

var benchSummaryMu sync.Mutex

// recordBench records value (in unit) of the measurement name in area, for
// mode: the driver measured (builtin, builtin-fasthttp, nginx, haproxy), or
// "" when it is no one driver's.
func recordBench(t testing.TB, area, name, mode string, value float64, unit string) {
	t.Helper()
	path := os.Getenv("BENCH_SUMMARY")
	if path == "" {
		return
	}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		t.Logf("bench summary: %s %s %s: %v left out", area, name, mode, value)
		return
	}
	line, err := json.Marshal(benchRecord{Area: area, Name: name, Mode: mode, Value: value, Unit: unit, Test: t.Name()})
	if err != nil {
		t.Errorf("bench summary: %v", err)
		return
	}
	benchSummaryMu.Lock()
	defer benchSummaryMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Errorf("bench summary: %v", err)
		return
	}
	// One write per line: whole lines even if another process appends.
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Errorf("bench summary: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("bench summary: %v", err)
	}
}

// recordRatio records a ratio of mode's figure to vs's in the same run
// (unit "x vs").
func recordRatio(t testing.TB, area, name, mode string, ratio float64, vs string) {
	t.Helper()
	recordBench(t, area, name, mode, ratio, "x "+vs)
}

// recordDuration records d in milliseconds, or in seconds when unit is
// "s".
func recordDuration(t testing.TB, area, name, mode string, d time.Duration, unit string) {
	t.Helper()
	if unit == "s" {
		recordBench(t, area, name, mode, d.Seconds(), "s")
		return
	}
	recordBench(t, area, name, mode, float64(d)/float64(time.Millisecond), "ms")
}

// recordPercentiles records p50, p90, p99 and max of ds in milliseconds,
// as "name, p50" and so on.
func recordPercentiles(t testing.TB, area, name, mode string, ds []time.Duration) {
	t.Helper()
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	for _, q := range []struct {
		what string
		d    time.Duration
	}{{"p50", percentile(s, .5)}, {"p90", percentile(s, .9)}, {"p99", percentile(s, .99)}, {"max", s[len(s)-1]}} {
		recordDuration(t, area, name+", "+q.what, mode, q.d, "ms")
	}
}

func TestRecordBench(t *testing.T) {
	path := t.TempDir() + "/summary.jsonl"
	t.Setenv("BENCH_SUMMARY", path)
	recordBench(t, "convergence", "docker start -> first 200, p50", "builtin", 16.4, "ms")
	recordRatio(t, "dataplane", "HTTP keep-alive req/s", "haproxy", 0.99, "nginx")
	recordPercentiles(t, "convergence", "routed", "nginx", []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	recordBench(t, "idle", "nan", "", math.NaN(), "%")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []benchRecord
	for line := range strings.Lines(string(b)) {
		var r benchRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, r)
	}
	want := []benchRecord{
		{Area: "convergence", Name: "docker start -> first 200, p50", Mode: "builtin", Value: 16.4, Unit: "ms", Test: t.Name()},
		{Area: "dataplane", Name: "HTTP keep-alive req/s", Mode: "haproxy", Value: 0.99, Unit: "x nginx", Test: t.Name()},
		{Area: "convergence", Name: "routed, p50", Mode: "nginx", Value: 2, Unit: "ms", Test: t.Name()},
		{Area: "convergence", Name: "routed, p90", Mode: "nginx", Value: 2, Unit: "ms", Test: t.Name()},
		{Area: "convergence", Name: "routed, p99", Mode: "nginx", Value: 2, Unit: "ms", Test: t.Name()},
		{Area: "convergence", Name: "routed, max", Mode: "nginx", Value: 3, Unit: "ms", Test: t.Name()},
	}
	if !slices.Equal(got, want) {
		t.Errorf("recorded\n%+v\nwant\n%+v", got, want)
	}

	t.Setenv("BENCH_SUMMARY", "")
	recordBench(t, "idle", "cpu", "builtin", 1, "%") // a no-op: nothing to check but no failure
}
