package haproxy

// Integration tests of the edge settings against the real HAProxy: PROXY
// protocol from trusted load balancers only, forwarded headers from
// trusted peers (forged ones replaced), the access log on standard output,
// the body and header limits, and servers added over the Runtime API with
// the idle timeout. Clients connect from distinct loopback addresses (the
// whole of 127.0.0.0/8 is local) so that HAProxy tells them apart.

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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
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

// answer is one response, read whole.
type answer struct {
	code   int
	body   string
	header http.Header
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

// want waits until r is answered code with a body containing body.
func (r edgeRequest) want(t *testing.T, what string, code int, body string) answer {
	t.Helper()
	var got answer
	waitFor(t, 10*time.Second, what, func() error {
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
	waitFor(t, 10*time.Second, what, func() error {
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
	out := &syncBuffer{}
	r := newRig(t, func(o *Options) {
		o.Edge = Edge{
			ProxyProtocolTrusted: prefixes(lbIP), ForwardedTrusted: prefixes(trustedIP),
			AccessLog: AccessLogStdout, AccessLogFormat: AccessLogCommon,
			ClientReadHeaderTimeout: 5 * time.Second, ClientReadTimeout: 20 * time.Second, ClientIdleTimeout: 30 * time.Second,
			BackendConnectTimeout: 500 * time.Millisecond, BackendResponseHeaderTimeout: 10 * time.Second, BackendIdleTimeout: 30 * time.Second,
			MaxHeaderBytes: 32 << 10, MaxBodyBytes: 1 << 10,
		}
		o.Stdout = out
	})
	a, b := newBackend(t, "a"), newBackend(t, "b")
	tb := table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}})
	r.apply(t, tb)
	plain, secure := "http://"+r.http, "https://"+r.https

	// A PROXY header from the trusted balancer names the client: its
	// address is what the backend sees, and the client's forged headers
	// are replaced (it is not trusted for them).
	edgeRequest{src: lbIP, claim: "203.0.113.7", url: plain + "/x?q=1", host: "web.test", header: forged}.want(t,
		"PROXY from the balancer", 200, "a /x?q=1 xff=203.0.113.7 proto=http fhost=web.test fwd=")
	edgeRequest{src: lbIP, claim: "203.0.113.7", url: secure + "/s", host: "secure.test", header: forged}.want(t,
		"PROXY from the balancer over HTTPS", 200, "a /s xff=203.0.113.7 proto=https fhost=secure.test fwd=")
	// The balancer names a proxy trusted for forwarded headers: they are
	// kept, X-Forwarded-For appended to (one header line).
	edgeRequest{src: lbIP, claim: trustedIP, url: plain + "/", host: "web.test", header: forged}.want(t,
		"forwarded headers from a trusted proxy", 200, "a / xff=6.6.6.6, "+trustedIP+" proto=https fhost=forged.test fwd=for=6.6.6.6")
	edgeRequest{src: lbIP, claim: trustedIP, url: secure + "/", host: "secure.test"}.want(t,
		"a trusted proxy without forwarded headers", 200, "a / xff="+trustedIP+" proto=https fhost=secure.test fwd=")
	// Anyone else is read as it comes: its own address, its forged
	// headers replaced.
	edgeRequest{src: anyoneIP, url: plain + "/", host: "web.test", header: forged}.want(t,
		"anyone, without a PROXY header", 200, "a / xff="+anyoneIP+" proto=http fhost=web.test fwd=")
	edgeRequest{src: anyoneIP, url: secure + "/", host: "secure.test", header: forged}.want(t,
		"anyone over HTTPS", 200, "a / xff="+anyoneIP+" proto=https fhost=secure.test fwd=")
	// The trusted proxy connecting itself keeps its forwarded headers.
	edgeRequest{src: trustedIP, url: plain + "/", host: "web.test", header: forged}.want(t,
		"a trusted proxy connecting itself", 200, "a / xff=6.6.6.6, "+trustedIP+" proto=https fhost=forged.test")
	// Anyone's PROXY header is not HTTP: HAProxy's 400, never believed.
	edgeRequest{src: anyoneIP, claim: trustedIP, url: plain + "/", host: "web.test", header: forged}.want(t,
		"a PROXY header from anyone", 400, "")
	// From the balancer the header is required (the builtin proxy makes it
	// optional): without it the request is not served.
	if got, err := (edgeRequest{src: lbIP, url: plain + "/", host: "web.test"}).do(); err == nil && got.code == 200 {
		t.Errorf("the balancer without a PROXY header got %d %q, want it refused", got.code, got.body)
	}

	// Limits: a body announced over max-body-bytes gets the built-in
	// proxy's 413; a header block over max-header-bytes 431, one over the
	// buffer HAProxy's 400; within both, the backend answers.
	got := edgeRequest{src: lbIP, claim: "203.0.113.8", method: http.MethodPost, url: plain + "/upload", host: "web.test",
		body: strings.Repeat("b", 2<<10)}.want(t, "413", 413, "interlock: request body larger than 1024 bytes")
	if got.header.Get("X-Interlock-Error") != "body-too-large" {
		t.Errorf("413 headers %v, want X-Interlock-Error: body-too-large", got.header)
	}
	edgeRequest{src: lbIP, claim: "203.0.113.8", method: http.MethodPost, url: plain + "/upload", host: "web.test",
		body: strings.Repeat("s", 1000)}.want(t, "a body within the limit", 200, "a /upload")
	edgeRequest{src: anyoneIP, url: plain + "/h", host: "web.test", header: map[string]string{"X-Big": strings.Repeat("h", 30<<10)}}.want(t,
		"a head within the limit (over HAProxy's own 15 KiB)", 200, "a /h")
	edgeRequest{src: anyoneIP, url: plain + "/h", host: "web.test", header: map[string]string{"X-Big": strings.Repeat("h", 33<<10)}}.want(t,
		"a head over the limit", 431, "interlock: request header larger than 32768 bytes")
	edgeRequest{src: anyoneIP, url: plain + "/h", host: "web.test", header: map[string]string{"X-Big": strings.Repeat("h", 64<<10)}}.want(t,
		"a head over the buffer", 400, "")

	// The access log: client (the PROXY header's), host, status, route and
	// backend, one line per request.
	line := waitLine(t, "the access log line", out.String, "203.0.113.7 - - [", `"GET /x?q=1 HTTP/1.1" 200 `, `"web.test" "web.test/" "`+a.addr()+`"`)
	if f := strings.Fields(line); len(f) != 14 {
		t.Errorf("access log line %q: %d fields, want 14", line, len(f))
	}
	// The 413 is the route's backend's (its limit may be the route's own),
	// so its line names the route, as the built-in proxy's does.
	waitLine(t, "the 413's line", out.String, "203.0.113.8 - - [", `"POST /upload HTTP/1.1" 413 `, `"web.test" "web.test/" ""`)
	waitLine(t, "the HTTPS line", out.String, "203.0.113.7 - - [", `"GET /s HTTP/2.0" 200 `, `"secure.test" "secure.test/" "`+a.addr()+`"`)

	// A new backend is added over the Runtime API, with the same server
	// options (pool-purge-delay) as the file's: no reload.
	before := r.d.Stats()
	tb2 := table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb(), b.rb()}}}},
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}})
	r.apply(t, tb2)
	waitFor(t, 10*time.Second, "the new backend answering", func() error {
		got, err := (edgeRequest{src: anyoneIP, url: plain + "/", host: "web.test"}).do()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got.body, "b ") {
			return fmt.Errorf("got %q", got.body)
		}
		return nil
	})
	if s := r.d.Stats(); s.Reloads != before.Reloads || s.RuntimeApplies != before.RuntimeApplies+1 {
		t.Errorf("adding a backend: %d reloads, %d runtime applies; want none and one more (%+v)", s.Reloads-before.Reloads, s.RuntimeApplies-before.RuntimeApplies, s)
	}
}

// TestEdgePassthrough: with SNI passthrough, the PROXY header is read by
// the SNI frontend on the HTTPS address first; a TLS host behind it still
// sees the balancer's client, and passthrough hosts still pass.
func TestEdgePassthrough(t *testing.T) {
	r := newRig(t, func(o *Options) {
		o.Edge = Edge{ProxyProtocolTrusted: prefixes(lbIP), ForwardedTrusted: prefixes(trustedIP)}
	})
	cert, _ := passCertificate(t, "pass.test")
	pass, a := tlsBackend(t, "pass", cert), newBackend(t, "a")
	r.apply(t, table(routing.Host{Name: "pass.test", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{pass}}}},
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}}))
	secure := "https://" + r.https
	edgeRequest{src: lbIP, claim: "203.0.113.7", url: secure + "/", host: "secure.test", header: forged}.want(t,
		"terminated, from the balancer", 200, "a / xff=203.0.113.7 proto=https fhost=secure.test")
	edgeRequest{src: lbIP, claim: trustedIP, url: secure + "/", host: "secure.test", header: forged}.want(t,
		"terminated, a trusted proxy", 200, "a / xff=6.6.6.6, "+trustedIP+" proto=https fhost=forged.test")
	edgeRequest{src: anyoneIP, url: secure + "/", host: "secure.test", header: forged}.want(t,
		"terminated, anyone", 200, "a / xff="+anyoneIP+" proto=https fhost=secure.test")
	edgeRequest{src: lbIP, claim: "203.0.113.7", url: secure + "/p", host: "pass.test"}.want(t,
		"passed through", 200, "pass /p sni=pass.test remote=127.0.0.1:")
}

// TestEdgeJSONAccessLog: every line is one JSON object with the built-in
// proxy's keys, for a routed request and for HAProxy's own answers.
func TestEdgeJSONAccessLog(t *testing.T) {
	out := &syncBuffer{}
	r := newRig(t, func(o *Options) {
		o.Edge = Edge{AccessLog: AccessLogStdout, AccessLogFormat: AccessLogJSON}
		o.Stdout = out
	})
	a := newBackend(t, "a")
	r.apply(t, table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/api", Backends: []routing.Backend{a.rb()}}}}))
	edgeRequest{src: anyoneIP, url: "http://" + r.http + "/api/caf%C3%A9?q=%22x%22", host: "Web.Test:80", header: forged}.want(t,
		"a routed request", 200, "a /api/caf%C3%A9?q=%22x%22 xff="+anyoneIP)
	line := waitLine(t, "the json line", out.String, `"method":"GET"`, `"status":200`)
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	for _, k := range []string{"time", "client", "host", "method", "path", "query", "proto", "status", "bytes", "duration_ms", "route", "backend"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("key %q missing from %s", k, line)
		}
	}
	for k, v := range map[string]any{"client": anyoneIP, "host": "Web.Test:80", "method": "GET", "path": "/api/café", "query": "q=%22x%22",
		"proto": "HTTP/1.1", "status": float64(200), "route": "web.test/api", "backend": a.addr()} {
		if rec[k] != v {
			t.Errorf("%s = %#v, want %#v (%s)", k, rec[k], v, line)
		}
	}
	if ts, _ := rec["time"].(string); func() bool { p, err := time.Parse(time.RFC3339, ts); return err != nil || time.Since(p) > time.Minute }() {
		t.Errorf("time %q is not RFC 3339", ts)
	}
	// No route, and a request that is not HTTP: route and backend "", and
	// the lines are still JSON.
	edgeRequest{src: anyoneIP, url: "http://" + r.http + "/other", host: "web.test"}.want(t, "no route", 404, "")
	waitLine(t, "the 404's line", out.String, `"status":404`)
	c, err := net.Dial("tcp", r.http)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GARBAGE \"\\\r\n\r\n")
	_, _ = io.ReadAll(c)
	c.Close()
	waitLine(t, "the 400's line", out.String, `"status":400`)
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not JSON: %v\n%s", err, line)
		}
		if rec["status"] != float64(200) && (rec["route"] != "" || rec["backend"] != "") {
			t.Errorf("route and backend of %s: want \"\"", line)
		}
	}
}

func TestEdgeRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		edge Edge
		want string
	}{
		{"a log file", Edge{AccessLog: "/var/log/haproxy.log"}, "HAProxy cannot write a log file itself"},
		{"format", Edge{AccessLog: "-", AccessLogFormat: "combined"}, `format "combined"`},
		{"host bits", Edge{ForwardedTrusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")}}, "want 10.0.0.0/8"},
		{"mapped prefix", Edge{ProxyProtocolTrusted: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, "not a plain IPv4 or IPv6 prefix"},
		{"negative timeout", Edge{BackendResponseHeaderTimeout: -time.Second}, "backend response header timeout -1s is negative"},
		{"sub-millisecond timeout", Edge{ClientIdleTimeout: time.Microsecond}, "1ms resolution"},
		{"header limit", Edge{MaxHeaderBytes: 65 << 20}, "out of range"},
		{"body limit", Edge{MaxBodyBytes: -5}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := goldenSettings("/var/lib/interlock")
			s.Edge = tc.edge
			if _, err := NewView(table(), s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewView = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	for d, want := range map[time.Duration]string{time.Second: "1s", 1500 * time.Millisecond: "1500ms", 2 * time.Minute: "120s"} {
		if got := haproxyDuration(d); got != want {
			t.Errorf("haproxyDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
