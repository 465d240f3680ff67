package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/summary.golden")

// TestGolden renders the summary of the saved outputs in testdata: JSON
// records (with a broken line), `go test -bench` output (with a split
// benchmark line, a failed benchmark, a build failure and a timeout) and
// `go test -v` output (failed and skipped tests).
func TestGolden(t *testing.T) {
	s := &Summary{}
	f, err := os.Open(filepath.Join("testdata", "records.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.AddRecords(f, "records.jsonl")
	for _, name := range []string{"bench-go.txt", "convergence.txt"} {
		f, err := os.Open(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		s.AddGoTest(f)
		f.Close()
	}
	s.Parts = []Part{{"bench-go", 2}, {"bench-convergence", 1}, {"bench-dataplane", 0}}
	got := s.Render(Meta{Cores: 2, Date: time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC), Took: 9*time.Minute + 41*time.Second,
		Machine: "go1.26.8 linux/amd64, Intel(R) Xeon(R) Processor, load average 1.00 0.50 0.25"})
	golden := filepath.Join("testdata", "summary.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("summary differs from %s (go test -update to rewrite it):\n%s", golden, got)
	}
}

func TestAddGoTest(t *testing.T) {
	const pkg = "pkg: github.com/interlock-proxy/interlock/internal/proxy/builtin\n"
	for _, tc := range []struct {
		name, out string
		want      []Record
		failed    []string
		skipped   []string
	}{
		{
			name: "standard metrics",
			out:  pkg + "BenchmarkServeHTTP/handler-2   \t   82706\t     14737 ns/op\t    3974 B/op\t      51 allocs/op\n",
			want: []Record{
				{Area: "go proxy/builtin", Name: "ServeHTTP/handler", Mode: "builtin", Value: 14737, Unit: "ns/op", Test: "BenchmarkServeHTTP/handler"},
				{Area: "go proxy/builtin", Name: "ServeHTTP/handler", Mode: "builtin", Value: 3974, Unit: "B/op", Test: "BenchmarkServeHTTP/handler"},
				{Area: "go proxy/builtin", Name: "ServeHTTP/handler", Mode: "builtin", Value: 51, Unit: "allocs/op", Test: "BenchmarkServeHTTP/handler"},
			},
		},
		{
			name: "custom metrics, variants in the unit, no package",
			out:  "BenchmarkEdgeInterleaved-4 1 20048693898 ns/op 31829 json-req/s 0.964 json-x-plain 12.34 MB-live\n",
			want: []Record{
				{Area: "go", Name: "EdgeInterleaved", Value: 20048693898, Unit: "ns/op", Test: "BenchmarkEdgeInterleaved"},
				{Area: "go", Name: "EdgeInterleaved json", Value: 31829, Unit: "req/s", Test: "BenchmarkEdgeInterleaved"},
				{Area: "go", Name: "EdgeInterleaved json", Value: 0.964, Unit: "x plain", Test: "BenchmarkEdgeInterleaved"},
				{Area: "go", Name: "EdgeInterleaved", Value: 12.34, Unit: "MB-live", Test: "BenchmarkEdgeInterleaved"},
			},
		},
		{
			name: "GOMAXPROCS 1: no suffix; a dash in the name stays",
			out:  "pkg: example.com/m/internal/proxy/nginx\nBenchmarkRender/hosts=10-x \t 5\t 100 ns/op\n",
			want: []Record{{Area: "go proxy/nginx", Name: "Render/hosts=10-x", Mode: "nginx", Value: 100, Unit: "ns/op", Test: "BenchmarkRender/hosts=10-x"}},
		},
		{
			name: "figures on a later line than the name",
			out:  pkg + "BenchmarkServeFast-2 \tprinted by the benchmark\n    bench_test.go:40: logged\n   81432\t     14806 ns/op\n",
			want: []Record{{Area: "go proxy/builtin", Name: "ServeFast", Mode: "builtin", Value: 14806, Unit: "ns/op", Test: "BenchmarkServeFast"}},
		},
		{
			name:   "not figures: a name alone, an odd field count, a word for a value",
			out:    pkg + "BenchmarkA-2\nBenchmarkB-2  10  5 ns/op 7\nBenchmarkC-2  10  fast ns/op\n--- FAIL: BenchmarkC-2\n    c_test.go:1: broke\n",
			failed: []string{"BenchmarkC-2: broke"},
		},
		{
			name: "failures and skips, -v and not",
			out: "=== RUN   TestA\n    a_test.go:9: wrk is missing\n--- SKIP: TestA (0.00s)\n" +
				"=== RUN   TestB\n--- FAIL: TestB (1.00s)\n" +
				"--- FAIL: TestC (1.00s)\n    c_test.go:3: boom\n" +
				"panic: test timed out after 20m0s\nFAIL\texample.com/m/cmd/interlock\t1200.1s\n" +
				"FAIL\texample.com/m/internal/feed [build failed]\nok  \texample.com/m/internal/api\t0.1s\n",
			failed:  []string{"TestB", "TestC: boom", "cmd/interlock (panic: test timed out after 20m0s)", "internal/feed [build failed]"},
			skipped: []string{"TestA: wrk is missing"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Summary{}
			s.AddGoTest(strings.NewReader(tc.out))
			if !slices.Equal(s.Records, tc.want) {
				t.Errorf("records\n%+v\nwant\n%+v", s.Records, tc.want)
			}
			if !slices.Equal(s.Failed, tc.failed) {
				t.Errorf("failed %q, want %q", s.Failed, tc.failed)
			}
			if !slices.Equal(s.Skipped, tc.skipped) {
				t.Errorf("skipped %q, want %q", s.Skipped, tc.skipped)
			}
		})
	}
}

func TestAddRecords(t *testing.T) {
	s := &Summary{}
	s.AddRecords(strings.NewReader(`{"area":"idle","name":"RSS","mode":"builtin","value":16.5,"unit":"MiB"}

{"area":"idle","value":1}
{"area":"idle","name":"cut off`), "r.jsonl")
	want := []Record{{Area: "idle", Name: "RSS", Mode: "builtin", Value: 16.5, Unit: "MiB"}}
	if !slices.Equal(s.Records, want) {
		t.Errorf("records %+v, want %+v", s.Records, want)
	}
	if len(s.Warnings) != 2 || !strings.HasPrefix(s.Warnings[0], "r.jsonl:3: ") || !strings.HasPrefix(s.Warnings[1], "r.jsonl:4: ") {
		t.Errorf("warnings %q, want lines 3 and 4", s.Warnings)
	}
}

func TestScaleAndFormat(t *testing.T) {
	for _, tc := range []struct {
		unit string
		vals []float64
		want []string // formatted values, then the unit
	}{
		{"ns/op", []float64{456.2}, []string{"456", "ns/op"}},
		{"ns/op", []float64{18279, 900}, []string{"18.3", "0.9", "µs/op"}},
		{"ns/op", []float64{43681664}, []string{"43.7", "ms/op"}},
		{"ns/op", []float64{20048693898}, []string{"20", "s/op"}},
		{"B/op", []float64{0}, []string{"0", "B/op"}},
		{"B/op", []float64{3973}, []string{"3.97", "kB/op"}},
		{"bytes/file", []float64{1481150}, []string{"1.48", "MB/file"}},
		{"gzip-bytes/snapshot", []float64{91276}, []string{"91.3", "gzip-kB/snapshot"}},
		{"allocs/op", []float64{248089}, []string{"248089", "allocs/op"}},
		{"x nginx", []float64{0.5157, 1}, []string{"0.52", "1.00", "x nginx"}},
		{"ms", []float64{999.7, 5.25, 0.00012, -0.34}, []string{"1000", "5.25", "0.00012", "-0.34", "ms"}},
		{"s", []float64{2.1}, []string{"2.1", "s"}},
	} {
		div, unit := scale(tc.unit, tc.vals)
		var got []string
		for _, v := range tc.vals {
			got = append(got, format(v/div, unit))
		}
		got = append(got, unit)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v %s: got %q, want %q", tc.vals, tc.unit, got, tc.want)
		}
	}
}
