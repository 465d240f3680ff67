// Command benchsummary prints the one table that ends `make bench`: the
// figures the RUN_BENCH=1 tests recorded (JSON lines, one per figure, in the
// file named by BENCH_SUMMARY; see cmd/interlock/benchsummary_test.go) and
// the Go benchmarks found in saved `go test -bench` output, one row per
// measurement and a column per driver, followed by what failed or was
// skipped.
//
//	go run ./scripts/benchsummary -records FILE.jsonl [-started UNIX] [-parts 'bench-go=0,...'] [GO-TEST-OUTPUT...]
//
// Every GO-TEST-OUTPUT file is read for benchmark lines and for failed and
// skipped tests and packages. It uses the standard library only.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	records := flag.String("records", "", "JSON lines file of recorded figures (BENCH_SUMMARY); missing or empty is allowed")
	started := flag.Int64("started", 0, "Unix time the run began, to print its wall time")
	parts := flag.String("parts", "", "comma-separated NAME=EXIT of the parts of the run, e.g. bench-go=0,bench-dataplane=2")
	cores := flag.Int("cores", runtime.NumCPU(), "cores to name in the title")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: benchsummary [flags] [go-test-output ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	s := &Summary{}
	if *records != "" {
		f, err := os.Open(*records)
		switch {
		case os.IsNotExist(err):
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: no figures were recorded (the file does not exist)", *records))
		case err != nil:
			fatal(err)
		default:
			s.AddRecords(f, *records)
			f.Close()
		}
	}
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			s.Warnings = append(s.Warnings, err.Error())
			continue
		}
		s.AddGoTest(f)
		f.Close()
	}
	if *parts != "" {
		for _, p := range strings.Split(*parts, ",") {
			name, code, ok := strings.Cut(strings.TrimSpace(p), "=")
			n, err := strconv.Atoi(code)
			if !ok || err != nil {
				fatal(fmt.Errorf("-parts: %q is not NAME=EXIT", p))
			}
			s.Parts = append(s.Parts, Part{Name: name, Exit: n})
		}
	}

	m := Meta{Cores: *cores, Date: time.Now(), Machine: machine()}
	if *started > 0 {
		m.Took = time.Since(time.Unix(*started, 0)).Round(time.Second)
	}
	if _, err := io.WriteString(os.Stdout, s.Render(m)); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchsummary:", err)
	os.Exit(1)
}

// machine describes this host for the title's second line: the Go
// version, the CPU model and the load average.
func machine() string {
	parts := []string{runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				parts = append(parts, strings.TrimSpace(v))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			parts = append(parts, "load average "+strings.Join(f[:3], " "))
		}
	}
	return strings.Join(parts, ", ")
}
