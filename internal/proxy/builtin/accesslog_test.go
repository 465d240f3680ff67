package builtin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// commonLine is the common format, field by field:
// CLIENT - - [TIME] "METHOD URI PROTO" STATUS BYTES "HOST" "ROUTE" "BACKEND" SECONDS
var commonLine = regexp.MustCompile(`^(\S+) - - \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" (\d+\.\d{6})$`)

type commonEntry struct {
	client, time, method, uri, proto string
	status                           int
	bytes                            int64
	host, route, backend             string
	seconds                          float64
}

func parseCommon(t testing.TB, line string) commonEntry {
	t.Helper()
	m := commonLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("access log line %q is not in the common format", line)
	}
	status, _ := strconv.Atoi(m[6])
	n, _ := strconv.ParseInt(m[7], 10, 64)
	secs, _ := strconv.ParseFloat(m[11], 64)
	return commonEntry{client: m[1], time: m[2], method: m[3], uri: m[4], proto: m[5], status: status, bytes: n,
		host: m[8], route: m[9], backend: m[10], seconds: secs}
}

// TestAccessLogFormats checks both formats field by field, for a forwarded
// request, the proxy's own 404, a 502 after every backend failed, and a
// request whose Host and path would break a naive line.
func TestAccessLogFormats(t *testing.T) {
	b := newBackend(t, "b")
	dead := deadAddr(t)
	tbl := tableOf(
		hostOf("app.example", routeOf("/", addr(b)), routeOf("/api", addr(b))),
		hostOf("down.example", routeOf("/", dead)),
	)
	type result struct {
		status  int
		bytes   int64
		route   string
		backend string
	}
	requests := []struct {
		name   string
		req    func() *http.Request
		want   result
		uri    string // common format's request target
		host   string
		path   string
		query  string
		method string
	}{
		{
			name: "forwarded",
			req: func() *http.Request {
				r := httptest.NewRequest(http.MethodPost, "http://app.example/api/items?page=2", strings.NewReader("x"))
				r.RemoteAddr = "198.51.100.4:5555"
				return r
			},
			want: result{status: 200, route: "app.example/api", backend: addr(b)},
			uri:  "/api/items?page=2", host: "app.example", path: "/api/items", query: "page=2", method: "POST",
		},
		{
			name: "no route",
			req: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://nowhere.example/x", nil)
				r.RemoteAddr = "198.51.100.5:5555"
				return r
			},
			want: result{status: 404, bytes: int64(len("interlock: no route for host \"nowhere.example\"\n"))},
			uri:  "/x", host: "nowhere.example", path: "/x", method: "GET",
		},
		{
			name: "backend down",
			req: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://down.example/", nil)
				r.RemoteAddr = "[2001:db8::5]:5555"
				return r
			},
			want: result{status: 502, bytes: int64(len("interlock: backend unavailable\n")), route: "down.example/", backend: dead},
			uri:  "/", host: "down.example", path: "/", method: "GET",
		},
		{
			name: "hostile host and path",
			req: func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, "http://app.example/a%22b%0Ac%C3%A9%FF", nil)
				r.Host = "evil\" \"x"
				r.RemoteAddr = "198.51.100.6:5555"
				return r
			},
			want: result{status: 404, bytes: int64(len("interlock: no route for host \"evil\\\" \\\"x\"\n"))},
			uri:  `/a%22b%0Ac%C3%A9%FF`, host: `evil\" \"x`, path: "/a\"b\ncé\xff", method: "GET",
		},
	}

	for _, format := range []string{AccessLogCommon, AccessLogJSON} {
		t.Run(format, func(t *testing.T) {
			al, buf := memoryAccessLog(t, format)
			p := newTestProxy(t, Options{AccessLog: al, EjectFor: -1}, nil)
			mustApply(t, p, tbl)
			before := time.Now().Truncate(time.Second)
			for _, rq := range requests {
				w := httptest.NewRecorder()
				r := rq.req()
				r.RequestURI = r.URL.RequestURI() // origin-form, as a client sends it
				p.ServeHTTP(w, r)
				if w.Code != rq.want.status {
					t.Fatalf("%s: status %d, want %d", rq.name, w.Code, rq.want.status)
				}
			}
			after := time.Now()
			lines := accessLines(t, al, buf)
			if len(lines) != len(requests) {
				t.Fatalf("%d lines for %d requests:\n%s", len(lines), len(requests), buf.String())
			}
			for i, rq := range requests {
				line := lines[i]
				r := rq.req()
				client := clientIP(r.RemoteAddr)
				if format == AccessLogJSON {
					e := parseJSONEntry(t, line)
					ts, err := time.Parse("2006-01-02T15:04:05.000Z07:00", e.Time)
					if err != nil || ts.Before(before) || ts.After(after) {
						t.Errorf("%s: time %q (%v), want between %v and %v", rq.name, e.Time, err, before, after)
					}
					want := accessEntry{Time: e.Time, Client: client, Host: r.Host, Method: rq.method, Path: strings.ToValidUTF8(rq.path, "\ufffd"),
						Query: rq.query, Proto: "HTTP/1.1", Status: rq.want.status, Bytes: e.Bytes, DurationMS: e.DurationMS,
						Route: rq.want.route, Backend: rq.want.backend}
					if e != want {
						t.Errorf("%s:\n got %+v\nwant %+v", rq.name, e, want)
					}
					if rq.want.bytes != 0 && e.Bytes != rq.want.bytes || e.Bytes == 0 {
						t.Errorf("%s: bytes %d, want %d", rq.name, e.Bytes, rq.want.bytes)
					}
					if e.DurationMS < 0 || e.DurationMS > float64(after.Sub(before).Milliseconds()+1) {
						t.Errorf("%s: duration_ms %v", rq.name, e.DurationMS)
					}
					if !json.Valid([]byte(line)) || strings.Contains(line, "\n") {
						t.Errorf("%s: line %q", rq.name, line)
					}
					continue
				}
				e := parseCommon(t, line)
				ts, err := time.Parse("02/Jan/2006:15:04:05 -0700", e.time)
				if err != nil || ts.Before(before) || ts.After(after) {
					t.Errorf("%s: time %q (%v)", rq.name, e.time, err)
				}
				want := commonEntry{client: client, time: e.time, method: rq.method, uri: rq.uri, proto: "HTTP/1.1",
					status: rq.want.status, bytes: e.bytes, host: rq.host, route: rq.want.route, backend: rq.want.backend, seconds: e.seconds}
				if r.Host == "app.example" || r.Host == "down.example" || r.Host == "nowhere.example" {
					want.host = r.Host
				}
				if e != want {
					t.Errorf("%s:\n got %+v\nwant %+v", rq.name, e, want)
				}
				if rq.want.bytes != 0 && e.bytes != rq.want.bytes || e.bytes == 0 {
					t.Errorf("%s: bytes %d, want %d", rq.name, e.bytes, rq.want.bytes)
				}
				if e.seconds < 0 || e.seconds > after.Sub(before).Seconds()+1 {
					t.Errorf("%s: seconds %v", rq.name, e.seconds)
				}
			}
		})
	}
}

// TestAccessLogEscaping: no byte a client controls can end a field or a
// line early, in either format.
func TestAccessLogEscaping(t *testing.T) {
	for _, tc := range []struct{ in, common, json string }{
		{in: "plain", common: "plain", json: `"plain"`},
		{in: `a"b\c`, common: `a\"b\\c`, json: `"a\"b\\c"`},
		{in: "line\nbreak\r\t", common: `line\x0Abreak\x0D\x09`, json: `"line\nbreak\r\t"`},
		{in: "\x00\x1f\x7f", common: `\x00\x1F\x7F`, json: `"\u0000\u001f\u007f"`},
		{in: "café", common: `caf\xC3\xA9`, json: `"café"`},
		{in: "bad\xffutf8", common: `bad\xFFutf8`, json: `"bad\ufffdutf8"`},
		{in: "sep\u2028", common: `sep\xE2\x80\xA8`, json: `"sep\u2028"`},
	} {
		if got := string(appendEscaped(nil, tc.in)); got != tc.common {
			t.Errorf("appendEscaped(%q) = %s, want %s", tc.in, got, tc.common)
		}
		got := string(appendJSONString(nil, tc.in))
		if got != tc.json {
			t.Errorf("appendJSONString(%q) = %s, want %s", tc.in, got, tc.json)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil || back != strings.ToValidUTF8(tc.in, "\ufffd") {
			t.Errorf("appendJSONString(%q) = %s decodes to %q, %v", tc.in, got, back, err)
		}
	}
}

// TestAccessLogReopen: lines go to the file; after a rename (logrotate)
// and Reopen, new lines go to a new file at the path and the buffered ones
// to the old; a path that cannot be opened keeps the old file.
func TestAccessLogReopen(t *testing.T) {
	b := newBackend(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	al, err := OpenAccessLog(AccessLogOptions{Path: path, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	p := newTestProxy(t, Options{AccessLog: al}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	hit := func(path string) {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://app.example"+path, nil))
	}
	hit("/before")
	rotated := filepath.Join(dir, "access.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	hit("/buffered") // written before the reopen: belongs to the old file
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	hit("/after")
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(rotated)
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "/before") || !strings.Contains(string(old), "/buffered") || strings.Contains(string(old), "/after") {
		t.Errorf("rotated file:\n%s", old)
	}
	if !strings.Contains(string(cur), "/after") || strings.Count(string(cur), "\n") != 1 {
		t.Errorf("new file:\n%s", cur)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new file mode %v, %v; want 0640", fi.Mode(), err)
	}

	// The directory goes away: Reopen fails, the open file stays in use.
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	os.Remove(path)
	if os.Geteuid() != 0 { // root may create files anyway
		if err := al.Reopen(); err == nil {
			t.Error("Reopen into a read-only directory succeeded")
		}
	}

	if err := al.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	hit("/closed") // dropped, no panic
	if err := al.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestAccessLogOpenErrors: a bad path or format is an error that says so.
func TestAccessLogOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		opts AccessLogOptions
		want string
	}{
		{opts: AccessLogOptions{Path: filepath.Join(t.TempDir(), "no", "such", "dir", "a.log")}, want: "no such file or directory"},
		{opts: AccessLogOptions{Path: t.TempDir()}, want: "is a directory"},
		{opts: AccessLogOptions{Path: "-", Format: "combined"}, want: `format "combined"`},
		{opts: AccessLogOptions{}, want: "no path"},
	} {
		if _, err := OpenAccessLog(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenAccessLog(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}

// TestAccessLogFlushesPeriodically: lines reach the file without Flush
// within the flush interval.
func TestAccessLogFlushesPeriodically(t *testing.T) {
	buf := &syncBuffer{}
	al, err := OpenAccessLog(AccessLogOptions{Path: "-", Stdout: buf, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	p := newTestProxy(t, Options{AccessLog: al}, nil)
	p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://x.example/", nil))
	eventually(t, 2*time.Second, "the line flushed", func() bool { return strings.Contains(buf.String(), `"x.example"`) })
}

// TestAccessLogUpgrade: an upgraded connection is logged as 101 with its
// route and backend once the tunnel ends.
func TestAccessLogUpgrade(t *testing.T) {
	be := newUpgradeBackend(t, "")
	al, buf := memoryAccessLog(t, AccessLogJSON)
	p := newTestProxy(t, Options{AccessLog: al}, nil)
	mustApply(t, p, tableOf(hostOf("ws.example", routeOf("/", addr(be)))))
	srv := serve(t, p)
	conn, br, res := upgrade(t, srv, "ws.example")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", res.StatusCode)
	}
	echoes(t, conn, br, "ping")
	conn.Close()
	eventually(t, 5*time.Second, "the 101 logged", func() bool {
		for _, l := range accessLines(t, al, buf) {
			if e := parseJSONEntry(t, l); e.Status == 101 && e.Route == "ws.example/" && e.Backend == addr(be) && e.Path == "/socket" {
				return true
			}
		}
		return false
	})
}

// TestAccessLogBackendAfterRetry: the backend logged is the one that
// answered, not one a connect failure skipped; and without an access log
// the retry loop records nothing.
func TestAccessLogBackendAfterRetry(t *testing.T) {
	be := newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(be)))))
	if p.engine.(*httpEngine).recordBackends {
		t.Error("an engine without an access log records backends")
	}
	rt := routeOf("/", deadAddr(t), addr(be))
	rt.Balance = routing.RoundRobin
	al, buf := memoryAccessLog(t, AccessLogCommon)
	p2 := newTestProxy(t, Options{AccessLog: al, EjectFor: -1}, nil)
	mustApply(t, p2, tableOf(hostOf("retry.example", rt)))
	for range 4 {
		w := httptest.NewRecorder()
		p2.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://retry.example/", nil))
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	}
	lines := accessLines(t, al, buf)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4", len(lines))
	}
	for _, l := range lines {
		if b := parseCommon(t, l).backend; b != addr(be) {
			t.Errorf("logged backend %s; want the one that answered, %s", b, addr(be))
		}
	}
}
