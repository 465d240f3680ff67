package builtin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// startHAProxy runs the host's haproxy (Debian package) in the foreground
// with cfg, waits until every address in listens accepts, and stops it at
// cleanup. Its output is shown if the test fails.
func startHAProxy(t *testing.T, cfg string, listens ...string) {
	t.Helper()
	bin := testenv.HAProxyBinary(t)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, cfg)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	for _, a := range listens {
		eventually(t, 10*time.Second, "haproxy listening on "+a, func() bool {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("haproxy exited: %v\n%s", err, out.String())
			default:
			}
			c, err := net.DialTimeout("tcp", a, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
}

// fromSource is an HTTP client whose connections to addr leave from the
// loopback address source (127.0.0.2: a client HAProxy sees as such), one
// connection per request, optionally with TLS (and then HTTP/2).
func fromSource(t *testing.T, source, addr string, tlsConf *tls.Config) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   tlsConf,
		ForceAttemptHTTP2: tlsConf != nil, // h2 by ALPN, over the PROXY'd connection
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// TestHAProxySendProxyV2: a real HAProxy in TCP mode with send-proxy-v2 in
// front of the proxy's HTTP and HTTPS listeners. A client whose source is
// 127.0.0.2 is seen as 127.0.0.2: in X-Forwarded-For, in the access log
// and by source balancing, over HTTP and over TLS (the header before the
// ClientHello). The proxy trusts HAProxy's address (127.0.0.1) only.
func TestHAProxySendProxyV2(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	var addrs []string
	for _, name := range []string{"a", "b", "c", "d"} {
		addrs = append(addrs, addr(newBackend(t, name)))
	}
	rt := routeOf("/", addrs...)
	rt.Balance = routing.Source
	app := hostOf("app.example", rt)
	app.TLS = ca.writePair(t, dir, "app", leafSpec{names: []string{"app.example"}})
	al, buf := memoryAccessLog(t, AccessLogCommon)
	p := newTestProxy(t, Options{CertDir: dir, AccessLog: al, ProxyProtocolTrusted: prefixes(t, "127.0.0.1/32")}, nil)
	mustApply(t, p, tableOf(app))
	httpAddr := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})
	httpsAddr := serveTLSWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})

	feHTTP := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	feHTTPS := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startHAProxy(t, fmt.Sprintf(`global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend http
    bind %s
    default_backend interlock_http
frontend https
    bind %s
    default_backend interlock_https
backend interlock_http
    server interlock %s send-proxy-v2
backend interlock_https
    server interlock %s send-proxy-v2
`, feHTTP, feHTTPS, httpAddr, httpsAddr), feHTTP, feHTTPS)

	// The backend source balancing gives a client address, asked directly.
	direct := func(ip string) string {
		req := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		req.RemoteAddr = ip + ":1"
		w := httptest.NewRecorder()
		p.serve(w, req, nil) // not logged: the access log holds HAProxy's requests only
		var e echo
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("direct request: %d %q", w.Code, w.Body)
		}
		return e.Backend
	}

	sources := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"}
	picked := map[string]bool{}
	for _, src := range sources {
		want := direct(src)
		for _, over := range []struct {
			name string
			c    *http.Client
			url  string
		}{
			{"http", fromSource(t, src, feHTTP, nil), "http://app.example/"},
			{"https", fromSource(t, src, feHTTPS, &tls.Config{RootCAs: ca.pool, ServerName: "app.example"}), "https://app.example/"},
		} {
			for range 2 {
				code, e := getEcho(t, over.c, over.url, "app.example", http.Header{"X-Forwarded-For": {"6.6.6.6"}})
				if code != 200 || e.XFF != src {
					t.Fatalf("%s from %s through HAProxy: %d, backend saw X-Forwarded-For %q; want %s alone", over.name, src, code, e.XFF, src)
				}
				if e.Backend != want {
					t.Errorf("%s from %s: backend %s, want %s (source balancing on the client's address)", over.name, src, e.Backend, want)
				}
				picked[e.Backend] = true
			}
		}
	}
	if len(picked) < 2 {
		t.Errorf("every client went to %v: balancing keyed on HAProxy's address, not the clients'", picked)
	}

	lines := accessLines(t, al, buf)
	if len(lines) != len(sources)*4 {
		t.Fatalf("%d access log lines, want %d:\n%s", len(lines), len(sources)*4, buf.String())
	}
	for i, l := range lines {
		e := parseCommon(t, l)
		src := sources[i/4]
		if e.client != src || e.status != 200 || e.host != "app.example" || e.route != "app.example/" || e.backend == "" {
			t.Errorf("access log line %q: client %q, want %s", l, e.client, src)
		}
		if proto := []string{"HTTP/1.1", "HTTP/1.1", "HTTP/2.0", "HTTP/2.0"}[i%4]; e.proto != proto {
			t.Errorf("access log line %q: protocol %s, want %s", l, e.proto, proto)
		}
	}
	if strings.Contains(buf.String(), "127.0.0.1 ") {
		t.Errorf("the access log names HAProxy's address:\n%s", buf.String())
	}

	// Straight to the proxy from 127.0.0.2 (untrusted), with a PROXY
	// header of its own: refused.
	c := fromSource(t, "127.0.0.2", httpAddr, nil)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		conn, err := d.DialContext(ctx, network, httpAddr)
		if err == nil {
			_, err = conn.Write(proxyV2(t, "203.0.113.1:1"))
		}
		return conn, err
	}
	if res, err := c.Get("http://app.example/"); err == nil {
		res.Body.Close()
		t.Errorf("a PROXY header from 127.0.0.2 straight to the proxy got %d", res.StatusCode)
	}
}
