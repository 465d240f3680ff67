package nginx

// Integration tests of the edge settings against the real nginx: PROXY
// protocol from trusted load balancers, forwarded headers from trusted
// peers (forged ones replaced), the access log, the body and header
// limits. Clients connect from distinct loopback addresses (the whole of
// 127.0.0.0/8 is local) so that nginx tells them apart.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// The loopback addresses of the edge tests: the load balancer trusted for
// the PROXY protocol, a proxy trusted for forwarded headers, and anyone.
const (
	lbIP      = "127.0.0.2"
	trustedIP = "127.0.0.3"
	anyoneIP  = "127.0.0.1"
)

func prefixes(ips ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ips))
	for i, ip := range ips {
		out[i] = netip.PrefixFrom(netip.MustParseAddr(ip), 32)
	}
	return out
}

// edgeRequest is one request of an edge test.
type edgeRequest struct {
	// src is the loopback address the connection comes from; claim, when
	// set, is the client address of a PROXY protocol v1 header written
	// first, by hand.
	src, claim string
	method     string
	url        string // http://ADDR/PATH or https://ADDR/PATH
	host       string
	header     map[string]string
	body       string
	chunked    bool
}

// do sends r on a fresh connection.
func (r edgeRequest) do() (answer, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(r.src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		DisableKeepAlives: true, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{ServerName: r.host, InsecureSkipVerify: true}, //nolint:gosec // the proxy's own certificate
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil || r.claim == "" {
				return c, err
			}
			la, ra := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
			if _, err := fmt.Fprintf(c, "PROXY TCP4 %s %s %d %d\r\n", r.claim, ra.IP, la.Port, ra.Port); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // no length known: chunked
		}
	}
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, r.url, body)
	if err != nil {
		return answer{}, err
	}
	req.Host = r.host
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: string(b), header: resp.Header}, err
}

// forged are the forwarded headers a client may make up about itself.
var forged = map[string]string{
	"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "forged.test", "Forwarded": "for=6.6.6.6",
}

// syncBuffer is a bytes.Buffer safe for the supervisor's copy and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLine waits until read returns a line containing every one of want,
// and returns it.
func waitLine(t *testing.T, what string, read func() string, want ...string) string {
	t.Helper()
	var found string
	testenv.WaitFor(t, 10*time.Second, what, func() error {
		for line := range strings.SplitSeq(read(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				found = line
				return nil
			}
		}
		return fmt.Errorf("no line with %q in:\n%s", want, read())
	})
	return found
}

func TestEdge(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	l := newLocalWith(t, func(o *Options) {
		o.Edge = Edge{
			ProxyProtocolTrusted: prefixes(lbIP), ForwardedTrusted: prefixes(trustedIP),
			AccessLog: logFile, AccessLogFormat: AccessLogCommon,
			ClientReadHeaderTimeout: 5 * time.Second, ClientReadTimeout: 5 * time.Second, ClientIdleTimeout: 30 * time.Second,
			BackendConnectTimeout: 500 * time.Millisecond, BackendResponseHeaderTimeout: 10 * time.Second, BackendIdleTimeout: 30 * time.Second,
			MaxHeaderBytes: 4 << 10, MaxBodyBytes: 1 << 10,
		}
	})
	a := backend(t, "a")
	tb := table(host("web.test", route("/", a)),
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{route("/", a)}})
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	plain, secure := "http://"+l.http, "https://"+l.https
	want := func(name string, r edgeRequest, code int, body string) answer {
		t.Helper()
		var got answer
		testenv.WaitFor(t, 10*time.Second, name, func() error {
			var err error
			if got, err = r.do(); err != nil {
				return err
			}
			if got.code != code || !strings.Contains(got.body, body) {
				return fmt.Errorf("got %d %q, want %d %q", got.code, got.body, code, body)
			}
			return nil
		})
		return got
	}

	// A PROXY header from the trusted balancer names the client: its
	// address is what the backend sees, and the client's forged headers
	// are replaced (it is not trusted for them).
	want("PROXY from the balancer", edgeRequest{src: lbIP, claim: "203.0.113.7", url: plain + "/x?q=1", host: "web.test", header: forged},
		200, "a /x?q=1 xff=203.0.113.7 proto=http xfh=web.test host=web.test fwd=")
	want("PROXY from the balancer over HTTPS", edgeRequest{src: lbIP, claim: "203.0.113.7", url: secure + "/s", host: "secure.test", header: forged},
		200, "a /s xff=203.0.113.7 proto=https xfh=secure.test host=secure.test fwd=")
	// The balancer names a proxy trusted for forwarded headers: they are
	// kept, X-Forwarded-For appended to.
	want("forwarded headers from a trusted proxy", edgeRequest{src: lbIP, claim: trustedIP, url: plain + "/", host: "web.test", header: forged},
		200, "a / xff=6.6.6.6, "+trustedIP+" proto=https xfh=forged.test host=web.test fwd=for=6.6.6.6")
	// A trusted proxy that sends no X-Forwarded-* gets this hop's.
	want("a trusted proxy without forwarded headers", edgeRequest{src: lbIP, claim: trustedIP, url: secure + "/", host: "secure.test"},
		200, "a / xff="+trustedIP+" proto=https xfh=secure.test host=secure.test fwd=")
	// Anyone else's PROXY header is not believed: the address it connects
	// from is the client's, and its forged headers are replaced.
	want("PROXY from anyone", edgeRequest{src: anyoneIP, claim: trustedIP, url: plain + "/", host: "web.test", header: forged},
		200, "a / xff="+anyoneIP+" proto=http xfh=web.test host=web.test fwd=")
	// The trusted proxy connecting itself (its header is not believed, its
	// address is its own) keeps its forwarded headers.
	want("a trusted proxy connecting itself", edgeRequest{src: trustedIP, claim: "203.0.113.9", url: plain + "/", host: "web.test", header: forged},
		200, "a / xff=6.6.6.6, "+trustedIP+" proto=https")
	// nginx requires the header on every connection: one without it is
	// cut off, even from the balancer (the builtin proxy serves it).
	if got, err := (edgeRequest{src: lbIP, url: plain + "/", host: "web.test"}).do(); err == nil {
		t.Errorf("a connection without a PROXY header got %d %q, want it closed (nginx requires the header)", got.code, got.body)
	}

	// Limits: a body over max-body-bytes gets the built-in proxy's 413, by
	// its length or as it grows; a head over max-header-bytes, 400.
	big := strings.Repeat("b", 2<<10)
	for _, chunked := range []bool{false, true} {
		got := want(fmt.Sprintf("413 (chunked %v)", chunked), edgeRequest{src: lbIP, claim: "203.0.113.8", method: http.MethodPost,
			url: plain + "/upload", host: "web.test", body: big, chunked: chunked}, 413, "interlock: request body larger than 1024 bytes")
		if got.header.Get("X-Interlock-Error") != "body-too-large" {
			t.Errorf("413 headers %v, want X-Interlock-Error: body-too-large", got.header)
		}
	}
	want("a body within the limit", edgeRequest{src: lbIP, claim: "203.0.113.8", method: http.MethodPost, url: plain + "/upload",
		host: "web.test", body: strings.Repeat("s", 1000)}, 200, "a /upload")
	want("a head within the limit", edgeRequest{src: lbIP, claim: "203.0.113.8", url: plain + "/h", host: "web.test",
		header: map[string]string{"X-Big": strings.Repeat("h", 3<<10)}}, 200, "a /h")
	want("a head over the limit", edgeRequest{src: lbIP, claim: "203.0.113.8", url: plain + "/h", host: "web.test",
		header: map[string]string{"X-Big": strings.Repeat("h", 6<<10)}}, 400, "")

	// The access log: client (the PROXY header's), host, status, route and
	// backend, one line per request.
	read := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	line := waitLine(t, "the access log line", read, "203.0.113.7 - - [", `"GET /x?q=1 HTTP/1.1" 200 `, `"web.test" "web.test/" "`+a+`"`)
	if f := strings.Fields(line); len(f) != 14 || !strings.Contains(f[13], ".") {
		t.Errorf("access log line %q: want 14 fields ending in the duration in seconds", line)
	}
	waitLine(t, "the 413's line", read, "203.0.113.8 - - [", `"POST /upload HTTP/1.1" 413 `, `"web.test" "web.test/" ""`)
	waitLine(t, "the HTTPS line", read, "203.0.113.7 - - [", `"GET /s HTTP/2.0" 200 `, `"secure.test" "secure.test/" "`+a+`"`)
}

// TestEdgePassthrough: with SNI passthrough, the PROXY header reaches the
// stream server on the HTTPS address first; a TLS host behind it still
// sees the balancer's client, and passthrough hosts still pass.
func TestEdgePassthrough(t *testing.T) {
	requireStreamModule(t)
	l := newLocalWith(t, func(o *Options) {
		o.Edge = Edge{ProxyProtocolTrusted: prefixes(lbIP), ForwardedTrusted: prefixes(trustedIP), ClientReadHeaderTimeout: 5 * time.Second}
	})
	cert, _ := passCertificate(t, "pass.test")
	pass, a := tlsBackend(t, "pass", cert), backend(t, "a")
	tb := table(routing.Host{Name: "pass.test", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{route("/", pass)}},
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{route("/", a)}})
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    edgeRequest
		body string
	}{
		{"terminated, from the balancer", edgeRequest{src: lbIP, claim: "203.0.113.7", url: "https://" + l.https + "/", host: "secure.test", header: forged},
			"a / xff=203.0.113.7 proto=https xfh=secure.test"},
		{"terminated, a trusted proxy", edgeRequest{src: lbIP, claim: trustedIP, url: "https://" + l.https + "/", host: "secure.test", header: forged},
			"a / xff=6.6.6.6, " + trustedIP + " proto=https xfh=forged.test"},
		{"terminated, anyone", edgeRequest{src: anyoneIP, claim: "203.0.113.7", url: "https://" + l.https + "/", host: "secure.test", header: forged},
			"a / xff=" + anyoneIP + " proto=https xfh=secure.test"},
		{"passed through", edgeRequest{src: lbIP, claim: "203.0.113.7", url: "https://" + l.https + "/p", host: "pass.test"},
			"pass /p sni=pass.test remote=127.0.0.1:"},
	} {
		testenv.WaitFor(t, 10*time.Second, tc.name, func() error {
			got, err := tc.r.do()
			if err != nil {
				return err
			}
			if got.code != 200 || !strings.Contains(got.body, tc.body) {
				return fmt.Errorf("got %d %q, want %q", got.code, got.body, tc.body)
			}
			return nil
		})
	}
}

// TestEdgeJSONAccessLogOnStdout: "-" is a supervised nginx's standard
// output, which Interlock passes on (Options.Stdout); every line is one
// JSON object with the built-in proxy's keys.
func TestEdgeJSONAccessLogOnStdout(t *testing.T) {
	out := &syncBuffer{}
	l := newLocalWith(t, func(o *Options) {
		o.Edge = Edge{AccessLog: AccessLogStdout, AccessLogFormat: AccessLogJSON, ForwardedTrusted: prefixes(trustedIP)}
		o.Stdout = out
	})
	a := backend(t, "a")
	l.apply(t, table(host("web.test", route("/api", a))), "web.test", "/api", 200)
	got, err := (edgeRequest{src: anyoneIP, url: "http://" + l.http + "/api/caf%C3%A9?q=%22x%22", host: "Web.Test:80", header: forged}).do()
	if err != nil || got.code != 200 || !strings.Contains(got.body, "xff="+anyoneIP+" ") {
		t.Fatalf("got %+v %v", got, err)
	}
	line := waitLine(t, "the json line", out.String, `"path":"/api/café"`)
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	keys := []string{"time", "client", "host", "method", "path", "query", "proto", "status", "bytes", "duration_ms", "route", "backend"}
	for _, k := range keys {
		if _, ok := rec[k]; !ok {
			t.Errorf("key %q missing from %s", k, line)
		}
	}
	for k, v := range map[string]any{"client": anyoneIP, "host": "Web.Test:80", "method": "GET", "query": "q=%22x%22", "proto": "HTTP/1.1",
		"status": float64(200), "route": "web.test/api", "backend": a} {
		if rec[k] != v {
			t.Errorf("%s = %#v, want %#v (%s)", k, rec[k], v, line)
		}
	}
	if ts, _ := rec["time"].(string); !isRFC3339Millis(ts) {
		t.Errorf("time %q is not RFC 3339 with milliseconds", ts)
	}
	// No route: route and backend are "", and the line is still JSON.
	if got, err := (edgeRequest{src: anyoneIP, url: "http://" + l.http + "/other", host: "web.test"}).do(); err != nil || got.code != 404 {
		t.Fatalf("got %+v %v", got, err)
	}
	line = waitLine(t, "the 404's line", out.String, `"path":"/other"`)
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["route"] != "" || rec["backend"] != "" || rec["status"] != float64(404) {
		t.Errorf("404 line %s: %v", line, err)
	}
}

func isRFC3339Millis(s string) bool {
	ts, err := time.Parse(time.RFC3339Nano, s)
	return err == nil && strings.Contains(s, ".") && time.Since(ts) < time.Minute
}

func TestEdgeUnits(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Second: "1s", 90 * time.Second: "90s", 1500 * time.Millisecond: "1500ms",
		time.Millisecond + time.Microsecond: "2ms", 2 * time.Hour: "7200s"} {
		if got := nginxDuration(d); got != want {
			t.Errorf("nginxDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{1 << 10: "1k", 64 << 10: "64k", 10 << 20: "10m", 1000: "1000", 1<<20 + 1<<10: "1025k"} {
		if got := nginxSize(n); got != want {
			t.Errorf("nginxSize(%d) = %q, want %q", n, got, want)
		}
	}
}
