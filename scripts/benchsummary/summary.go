package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is one figure: a JSON line written by recordBench in
// cmd/interlock/benchsummary_test.go, or one metric of a Go benchmark.
type Record struct {
	Area  string  `json:"area"`           // convergence, dataplane, go discovery, ...
	Name  string  `json:"name"`           // what was measured
	Mode  string  `json:"mode,omitempty"` // the driver (builtin, nginx, ...), or none
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`           // "x REF" for a ratio to REF
	Test  string  `json:"test,omitempty"` // the test that recorded it
}

// Part is one make target of the run and its exit status.
type Part struct {
	Name string
	Exit int
}

// Summary collects what a run produced.
type Summary struct {
	Records  []Record
	Failed   []string // tests, benchmarks and packages that failed
	Skipped  []string // tests that were skipped, with the reason
	Parts    []Part
	Warnings []string
}

// Meta is what the title says.
type Meta struct {
	Cores   int
	Date    time.Time
	Took    time.Duration // 0: not known
	Machine string
}

func newScanner(r io.Reader) *bufio.Scanner {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 16*1024*1024)
	return s
}

// AddRecords reads JSON lines of Records from r (named name in warnings).
// A line that does not parse, such as the last one of a test killed while
// writing, is left out with a warning.
func (s *Summary) AddRecords(r io.Reader, name string) {
	sc := newScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Area == "" || rec.Name == "" {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s:%d: not a record, left out: %.60q", name, n, line))
			continue
		}
		s.Records = append(s.Records, rec)
	}
	if err := sc.Err(); err != nil {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s: %v", name, err))
	}
}

var (
	// BenchmarkName-PROCS  N  VALUE UNIT [VALUE UNIT ...]
	benchLine = regexp.MustCompile(`^(Benchmark\S*?)(?:-\d+)?\s+(\d+)\s+(\S.*)$`)
	// BenchmarkName-PROCS alone (or followed by what the benchmark
	// printed): its figures come on a later line.
	benchName = regexp.MustCompile(`^(Benchmark\S*?)(?:-\d+)?(?:\s|$)`)
	// The figures of a benchmark whose name came earlier.
	benchRest = regexp.MustCompile(`^\s+(\d+)\s+([0-9.eE+-]+ \S.*)$`)
	// "--- PASS: TestX (1.00s)", FAIL or SKIP; indented for a subtest.
	testResult = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	pkgFail    = regexp.MustCompile(`^FAIL\s+(\S+)(?:\s+(\[[^]]*\]))?`)
	logPrefix  = regexp.MustCompile(`^\s+\S+\.go:\d+: `)
	testStart  = regexp.MustCompile(`^=== (RUN|CONT|NAME|PAUSE) `)
)

// AddGoTest reads the output of `go test` (with -bench, -v or neither):
// benchmark figures, and the tests, benchmarks and packages that failed or
// were skipped, each test with its last log line (the t.Fatal or t.Skip
// message, as a rule).
func (s *Summary) AddGoTest(r io.Reader) {
	var pkg, pending, panicked string
	// A test's last log line comes before its "--- FAIL" or "--- SKIP"
	// with -v (lastLog), after it without (then waiting points at the
	// entry of s.Failed or s.Skipped that wants it).
	lastLog := ""
	var waiting *string
	sc := newScanner(r)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := logPrefix.FindString(line); m != "" {
			msg := strings.TrimSpace(line[len(m):])
			if waiting != nil {
				*waiting += ": " + msg
				waiting = nil
				continue
			}
			lastLog = msg
			continue
		}
		if strings.TrimSpace(line) != "" {
			waiting = nil
		}
		switch {
		case testStart.MatchString(line):
			lastLog = ""
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
		case benchLine.MatchString(line) && s.addBench(pkg, benchLine.FindStringSubmatch(line)[1], benchLine.FindStringSubmatch(line)[3]):
			pending, lastLog = "", ""
		case benchName.MatchString(line):
			pending, lastLog = benchName.FindStringSubmatch(line)[1], ""
		case pending != "" && benchRest.MatchString(line) && s.addBench(pkg, pending, benchRest.FindStringSubmatch(line)[2]):
			pending, lastLog = "", ""
		case testResult.MatchString(line):
			m := testResult.FindStringSubmatch(line)
			list := map[string]*[]string{"FAIL": &s.Failed, "SKIP": &s.Skipped}[m[1]]
			if list != nil {
				*list = append(*list, m[2])
				if lastLog != "" {
					(*list)[len(*list)-1] += ": " + lastLog
				} else {
					waiting = &(*list)[len(*list)-1]
				}
			}
			lastLog = ""
		case strings.HasPrefix(line, "panic: ") && panicked == "":
			panicked = strings.TrimSpace(line)
		case pkgFail.MatchString(line):
			m := pkgFail.FindStringSubmatch(line)
			what := shortPkg(m[1])
			if m[2] != "" {
				what += " " + m[2]
			}
			if panicked != "" {
				what += " (" + panicked + ")"
			}
			s.Failed = append(s.Failed, what)
			panicked = ""
		case strings.HasPrefix(line, "ok  "):
			panicked = ""
		}
	}
	if err := sc.Err(); err != nil {
		s.Warnings = append(s.Warnings, err.Error())
	}
}

// addBench adds the figures of benchmark name in pkg, given as VALUE UNIT
// pairs; false when they are not.
func (s *Summary) addBench(pkg, name, figures string) bool {
	f := strings.Fields(figures)
	if len(f) == 0 || len(f)%2 != 0 {
		return false
	}
	var recs []Record
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return false
		}
		variant, unit := splitUnit(f[i+1])
		n := strings.TrimPrefix(name, "Benchmark")
		if variant != "" {
			n += " " + variant
		}
		recs = append(recs, Record{Area: goArea(pkg), Name: n, Mode: goMode(pkg), Value: v, Unit: unit, Test: name})
	}
	s.Records = append(s.Records, recs...)
	return true
}

// splitUnit reads the variant out of a custom metric that names it:
// "plain-x-plain" is plain's ratio to plain ("x plain"), "json-req/s" is
// json's req/s.
func splitUnit(u string) (variant, unit string) {
	if i := strings.LastIndex(u, "-x-"); i > 0 {
		return u[:i], "x " + u[i+3:]
	}
	if v, ok := strings.CutSuffix(u, "-req/s"); ok && v != "" {
		return v, "req/s"
	}
	return "", u
}

// shortPkg is an import path from the module's internal/, cmd/ or
// scripts/ on.
func shortPkg(p string) string {
	for _, dir := range []string{"/internal/", "/cmd/", "/scripts/"} {
		if i := strings.Index(p, dir); i >= 0 {
			return p[i+1:]
		}
	}
	return p
}

func goArea(pkg string) string {
	if pkg == "" {
		return "go"
	}
	return "go " + strings.TrimPrefix(shortPkg(pkg), "internal/")
}

// goMode is the driver a package's benchmarks belong to, if any.
func goMode(pkg string) string {
	for _, d := range []string{"builtin", "nginx", "haproxy"} {
		if strings.HasSuffix(pkg, "/proxy/"+d) {
			return d
		}
	}
	return ""
}

// The driver columns, in this order, before any other mode.
var knownModes = []string{"builtin", "builtin-fasthttp", "nginx", "haproxy"}

// noMode heads the column of figures that belong to no one driver.
const noMode = "all"

type row struct {
	area, name, unit string
	cells            map[string][]float64 // mode -> values, in the order recorded
}

// rows groups the records into rows (area, name, unit), areas in the order
// they first appear and rows within an area likewise, and returns the
// columns that hold a figure.
func (s *Summary) rows() ([]*row, []string) {
	type key struct{ area, name, unit string }
	byKey := map[key]*row{}
	var areas []string
	byArea := map[string][]*row{}
	seen := map[string]bool{}
	var others []string
	for _, r := range s.Records {
		k := key{r.Area, r.Name, r.Unit}
		rw := byKey[k]
		if rw == nil {
			rw = &row{area: r.Area, name: r.Name, unit: r.Unit, cells: map[string][]float64{}}
			byKey[k] = rw
			if _, ok := byArea[r.Area]; !ok {
				areas = append(areas, r.Area)
			}
			byArea[r.Area] = append(byArea[r.Area], rw)
		}
		rw.cells[r.Mode] = append(rw.cells[r.Mode], r.Value)
		if !seen[r.Mode] {
			seen[r.Mode] = true
			if r.Mode != "" && !slices.Contains(knownModes, r.Mode) {
				others = append(others, r.Mode)
			}
		}
	}
	var rows []*row
	for _, a := range areas {
		rows = append(rows, byArea[a]...)
	}
	var cols []string
	for _, m := range knownModes {
		if seen[m] {
			cols = append(cols, m)
		}
	}
	cols = append(cols, others...)
	if seen[""] {
		cols = append(cols, "")
	}
	return rows, cols
}

// bytesUnit is a custom metric in bytes: "bytes/file", "gzip-bytes/snapshot".
var bytesUnit = regexp.MustCompile(`^(\S*-)?bytes(/\S+)$`)

// scale picks, for a row of Go benchmark figures, the unit that keeps its
// largest value readable: ns/op as µs/op, ms/op or s/op, bytes as kB or MB.
func scale(unit string, vals []float64) (div float64, shown string) {
	biggest := 0.0
	for _, v := range vals {
		biggest = max(biggest, math.Abs(v))
	}
	switch {
	case unit == "ns/op":
		for _, u := range []struct {
			div  float64
			unit string
		}{{1e9, "s/op"}, {1e6, "ms/op"}, {1e3, "µs/op"}} {
			if biggest >= u.div {
				return u.div, u.unit
			}
		}
	case unit == "B/op" || bytesUnit.MatchString(unit):
		m := bytesUnit.FindStringSubmatch(unit) // "gzip-bytes/snapshot": "gzip-", "/snapshot"
		pre, per := "", "/op"
		if m != nil {
			pre, per = m[1], m[2]
		}
		if biggest >= 1e6 {
			return 1e6, pre + "MB" + per
		}
		if biggest >= 1e3 {
			return 1e3, pre + "kB" + per
		}
		return 1, pre + "B" + per
	}
	return 1, unit
}

// format writes v with about three significant digits (ratios with two
// decimals, whole numbers and values from 1000 up without decimals).
func format(v float64, unit string) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case strings.HasPrefix(unit, "x "):
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v == math.Trunc(v) || math.Abs(v) >= 999.5:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	s := strconv.FormatFloat(v, 'g', 3, 64)
	if strings.ContainsAny(s, "eE") {
		s = strconv.FormatFloat(v, 'f', -1, 64)
	}
	return s
}

// Render prints the title, the table and what failed or was skipped.
func (s *Summary) Render(m Meta) string {
	var b strings.Builder
	title := fmt.Sprintf("%d cores, %s", m.Cores, m.Date.Format("2006-01-02 15:04 MST"))
	if m.Took > 0 {
		title += ", took " + m.Took.String()
	}
	fmt.Fprintf(&b, "== make bench summary (%s) ==\n", title)
	if m.Machine != "" {
		fmt.Fprintf(&b, "%s\n", m.Machine)
	}
	rows, cols := s.rows()
	if len(rows) == 0 {
		b.WriteString("(no figures recorded)\n")
	} else {
		header := []string{"area", "measurement"}
		for _, c := range cols {
			header = append(header, cmpOr(c, noMode))
		}
		header = append(header, "unit")
		table := [][]string{header}
		ratios, multi := false, false
		for _, r := range rows {
			var all []float64
			for _, vs := range r.cells {
				all = append(all, vs...)
			}
			div, unit := scale(r.unit, all)
			line := []string{r.area, r.name}
			for _, c := range cols {
				var parts []string
				for _, v := range r.cells[c] {
					parts = append(parts, format(v/div, unit))
				}
				multi = multi || len(parts) > 1
				line = append(line, strings.Join(parts, "/"))
			}
			ratios = ratios || strings.HasPrefix(unit, "x ")
			table = append(table, append(line, unit))
		}
		writeTable(&b, table, 2, len(cols))
		if slices.Contains(cols, "") {
			fmt.Fprintf(&b, "column %q: figures that are no one driver's\n", noMode)
		}
		if ratios {
			b.WriteString("unit \"x REF\": the figure divided by REF's, measured in the same run\n")
		}
		if multi {
			b.WriteString("a/b/c: one figure per round (or per -count run), in order\n")
		}
	}
	if len(s.Parts) > 0 {
		var ps []string
		for _, p := range s.Parts {
			st := "ok"
			if p.Exit != 0 {
				st = fmt.Sprintf("FAILED (exit %d)", p.Exit)
			}
			ps = append(ps, p.Name+" "+st)
		}
		fmt.Fprintf(&b, "parts: %s\n", strings.Join(ps, ", "))
	}
	for _, f := range s.Failed {
		fmt.Fprintf(&b, "FAILED: %s\n", f)
	}
	for _, sk := range s.Skipped {
		fmt.Fprintf(&b, "skipped: %s\n", sk)
	}
	for _, w := range s.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// writeTable aligns cells in columns two spaces apart: the first left
// columns to the left, the next numeric ones to the right, the rest to the
// left. Widths count runes, so µ takes one column.
func writeTable(b *strings.Builder, table [][]string, left, numeric int) {
	width := map[int]int{}
	for _, line := range table {
		for i, c := range line {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, line := range table {
		var out strings.Builder
		for i, c := range line {
			if i > 0 {
				out.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i >= left && i < left+numeric {
				out.WriteString(pad + c)
			} else {
				out.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(out.String(), " ") + "\n")
	}
}
