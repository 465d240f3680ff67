package builtin

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestProxyProtocolV1AndV2: from a trusted address, a PROXY header (v1
// written by hand, v2 as go-proxyproto writes it, IPv4 and IPv6) makes its
// client address the request's, which the backend sees in X-Forwarded-For;
// without a header the connection is served as it is.
func TestProxyProtocolV1AndV2(t *testing.T) {
	b := newBackend(t, "b")
	p := newTestProxy(t, Options{ProxyProtocolTrusted: prefixes(t, "127.0.0.0/8")}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})

	for _, tc := range []struct {
		name   string
		header []byte
		want   string
	}{
		{name: "v1 by hand", header: []byte("PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\n"), want: "203.0.113.7"},
		{name: "v1 ipv6", header: proxyV1("[2001:db8::7]:4000"), want: "2001:db8::7"},
		{name: "v2", header: proxyV2(t, "198.51.100.9:1234"), want: "198.51.100.9"},
		{name: "v2 ipv6", header: proxyV2(t, "[2001:db8::9]:1234"), want: "2001:db8::9"},
		{name: "v1 unknown keeps the peer", header: []byte("PROXY UNKNOWN\r\n"), want: "127.0.0.1"},
		{name: "no header from a trusted address", header: nil, want: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, e := getEcho(t, headerClient(t, a, tc.header, nil), "http://"+a+"/", "app.example", nil)
			if code != 200 || e.XFF != tc.want {
				t.Errorf("status %d, backend saw X-Forwarded-For %q; want 200 and %q", code, e.XFF, tc.want)
			}
		})
	}

	// Keep-alive: the header is read once, every request on the
	// connection is the header's client.
	c := headerClient(t, a, proxyV1("203.0.113.8:999"), nil)
	c.Transport.(*http.Transport).DisableKeepAlives = false
	for range 3 {
		if _, e := getEcho(t, c, "http://"+a+"/", "app.example", nil); e.XFF != "203.0.113.8" {
			t.Fatalf("keep-alive request saw X-Forwarded-For %q", e.XFF)
		}
	}
}

// TestProxyProtocolRefusedFromUntrusted: a connection from an address not
// in ProxyProtocolTrusted that starts with a PROXY header is closed
// without an answer, and the refusal is logged; the same address without
// a header is served. A header that does not parse closes the connection
// even from a trusted address.
func TestProxyProtocolRefusedFromUntrusted(t *testing.T) {
	b := newBackend(t, "b")
	logs := &syncBuffer{}
	p := newTestProxy(t, Options{ProxyProtocolTrusted: prefixes(t, "10.0.0.0/8")}, logs)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})

	req := "GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n"
	for _, header := range [][]byte{proxyV1("203.0.113.7:1000"), proxyV2(t, "203.0.113.7:1000")} {
		got, _ := rawExchange(t, a, append(header, req...), 5*time.Second)
		if got != "" {
			t.Errorf("an untrusted PROXY header got an answer:\n%s", got)
		}
	}
	eventually(t, 2*time.Second, "the refusal logged", func() bool {
		return len(logs.lines("PROXY protocol header from an address not in --proxy-protocol-trusted-ips")) > 0
	})
	if l := logs.lines("PROXY protocol header")[0]; !strings.Contains(l, "client=127.0.0.1:") || !strings.Contains(l, "trusted=10.0.0.0/8") {
		t.Errorf("refusal log line lacks the client or the trusted list: %s", l)
	}
	// Two refusals, one line: the rest are counted for the next one.
	if n := len(logs.lines("PROXY protocol header")); n != 1 {
		t.Errorf("%d refusal lines within 10s, want 1", n)
	}

	// The same client without a header is an ordinary client.
	if code, e := getEcho(t, headerClient(t, a, nil, nil), "http://"+a+"/", "app.example", nil); code != 200 || e.XFF != "127.0.0.1" {
		t.Errorf("untrusted client without a header: %d, X-Forwarded-For %q", code, e.XFF)
	}

	// Malformed, from a trusted address.
	p2 := newTestProxy(t, Options{ProxyProtocolTrusted: prefixes(t, "127.0.0.1/32")}, nil)
	mustApply(t, p2, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	a2 := serveWith(t, p2, &http.Server{ReadHeaderTimeout: 5 * time.Second})
	for _, bad := range []string{"PROXY TCP4 not-an-ip 127.0.0.1 1 80\r\n", "PROXY TCP4 1.2.3.4 127.0.0.1 99999 80\r\n"} {
		if got, _ := rawExchange(t, a2, []byte(bad+req), 5*time.Second); got != "" {
			t.Errorf("malformed header %q got an answer:\n%s", bad, got)
		}
	}
}

// TestProxyProtocolOff: without trusted addresses a PROXY header is just
// bytes that are not HTTP: net/http's 400.
func TestProxyProtocolOff(t *testing.T) {
	b := newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})
	got, _ := rawExchange(t, a, append(proxyV1("203.0.113.7:1000"), "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n"...), 5*time.Second)
	if !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Errorf("PROXY header with the protocol off: %q, want net/http's 400", got)
	}
}

// TestProxyProtocolSourceBalancingAndAccessLog: the header's client is the
// one source balancing hashes and the access log shows.
func TestProxyProtocolSourceBalancingAndAccessLog(t *testing.T) {
	var addrs []string
	for _, name := range []string{"a", "b", "c", "d"} {
		addrs = append(addrs, addr(newBackend(t, name)))
	}
	rt := routeOf("/", addrs...)
	rt.Balance = routing.Source
	al, buf := memoryAccessLog(t, AccessLogJSON)
	p := newTestProxy(t, Options{ProxyProtocolTrusted: prefixes(t, "127.0.0.1/32"), AccessLog: al}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", rt)))
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})

	// The backend a direct request from each client address gets.
	direct := func(ip string) string {
		req := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		req.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		var e echo
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		return e.Backend
	}
	seen := map[string]bool{}
	for _, ip := range clients(12) {
		want := direct(ip)
		_, e := getEcho(t, headerClient(t, a, proxyV2(t, ip+":4321"), nil), "http://"+a+"/", "app.example", nil)
		if e.Backend != want || e.XFF != ip {
			t.Errorf("client %s through PROXY: backend %s, X-Forwarded-For %q; want %s and %s", ip, e.Backend, e.XFF, want, ip)
		}
		seen[e.Backend] = true
	}
	if len(seen) < 2 {
		t.Errorf("every PROXY client went to %v: balancing does not key on the header's address", seen)
	}
	// Each client twice: its direct request and its PROXY one.
	perClient := map[string]int{}
	for _, l := range accessLines(t, al, buf) {
		e := parseJSONEntry(t, l)
		perClient[e.Client]++
		if e.Backend == "" || e.Status != 200 {
			t.Errorf("access log entry %+v", e)
		}
	}
	for _, ip := range clients(12) {
		if perClient[ip] != 2 {
			t.Errorf("client %s has %d access log lines, want 2 (direct and through PROXY):\n%s", ip, perClient[ip], buf.String())
		}
	}
	if perClient["127.0.0.1"] != 0 {
		t.Errorf("%d access log lines name the connecting address, not the PROXY client", perClient["127.0.0.1"])
	}
}

// TestProxyProtocolHTTPS: on the HTTPS listener the header comes before
// the ClientHello, for terminated and passthrough hosts alike; a
// passthrough backend gets the TLS stream without the header.
func TestProxyProtocolHTTPS(t *testing.T) {
	proxyCA, backendCA := newTestCA(t), newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "terminated")
	pass := hostOf("pass.test", routeOf("/", passthroughBackend(t, backendCA, "pass.test", "pt")))
	pass.TLS = &routing.TLS{Passthrough: true}
	p := newTestProxy(t, Options{CertDir: dir, ProxyProtocolTrusted: prefixes(t, "127.0.0.1/32")}, nil)
	mustApply(t, p, tableOf(pass, tlsHost("own.test", proxyCA.writePair(t, dir, "own", leafSpec{names: []string{"own.test"}}), addr(be))))
	a := serveTLSWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})

	for _, header := range [][]byte{proxyV1("203.0.113.20:1000"), proxyV2(t, "203.0.113.20:1000")} {
		code, e := getEcho(t, headerClient(t, a, header, &tls.Config{RootCAs: proxyCA.pool}), "https://own.test/", "own.test", nil)
		if code != 200 || e.XFF != "203.0.113.20" || e.XFProto != "https" {
			t.Errorf("terminated host through PROXY: %d, X-Forwarded-For %q, proto %q", code, e.XFF, e.XFProto)
		}
		res, err := headerClient(t, a, header, &tls.Config{RootCAs: backendCA.pool}).Get("https://pass.test/x")
		if err != nil {
			t.Fatalf("passthrough host through PROXY: %v", err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != "pt saw pass.test /x tls=true" {
			t.Errorf("passthrough answer %q", body)
		}
	}
	// From an untrusted address (none here is): refused before TLS.
	p2 := newTestProxy(t, Options{CertDir: dir, ProxyProtocolTrusted: prefixes(t, "10.0.0.0/8")}, nil)
	mustApply(t, p2, tableOf(pass))
	a2 := serveTLSWith(t, p2, &http.Server{ReadHeaderTimeout: 5 * time.Second})
	if _, err := headerClient(t, a2, proxyV1("203.0.113.20:1000"), &tls.Config{RootCAs: backendCA.pool}).Get("https://pass.test/x"); err == nil {
		t.Error("an untrusted PROXY header on the HTTPS listener was served")
	}
}
