package haproxy

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// httpsGet sends a request over TLS with the given SNI and returns the
// status, body and the certificate's name.
func httpsGet(t *testing.T, addr, sni, path string, cfg *tls.Config) (int, string, string) {
	t.Helper()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.ServerName, cfg.InsecureSkipVerify = sni, true
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	req.Host = sni
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET https://%s%s: %v", sni, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.TLS.PeerCertificates[0].Subject.CommonName
}

func TestTLSTermination(t *testing.T) {
	certDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(certDir, "named"), 0o700); err != nil {
		t.Fatal(err)
	}
	cert, key, err := tlsconf.SelfSigned("named.test")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(certDir, "named", "cert.pem"), cert, 0o600)
	_ = os.WriteFile(filepath.Join(certDir, "named", "key.pem"), key, 0o600)
	r := newRig(t, func(o *Options) { o.CertDir = certDir })
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	r.apply(t, table(
		routing.Host{Name: "secure.test", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
		routing.Host{Name: "named.test", TLS: &routing.TLS{CertFile: "named/cert.pem", KeyFile: "named/key.pem"},
			Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{b.rb()}}}},
		routing.Host{Name: "plain.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{c.rb()}}}},
		routing.Host{Name: "missing.test", TLS: &routing.TLS{CertFile: "none/cert.pem", KeyFile: "none/key.pem"},
			Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{c.rb()}}}},
	))
	t.Run("ssl_only redirects", func(t *testing.T) {
		code, _, h := get(t, r.http, "secure.test", "/x?y=1")
		_, port, _ := net.SplitHostPort(r.https)
		if want := "https://secure.test:" + port + "/x?y=1"; code != 301 || h.Get("Location") != want {
			t.Fatalf("got %d Location %q, want 301 %q", code, h.Get("Location"), want)
		}
		checkHTTPSRedirects(t, r, table(routing.Host{Name: "secure.test", TLS: &routing.TLS{Only: true},
			Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}}), "secure.test")
	})
	t.Run("default certificate", func(t *testing.T) {
		code, body, cn := httpsGet(t, r.https, "secure.test", "/", nil)
		if code != 200 || !strings.HasPrefix(body, "a / xff=127.0.0.1 proto=https") || cn != "interlock-default.invalid" {
			t.Fatalf("got %d %q cert %q", code, body, cn)
		}
	})
	t.Run("named certificate by SNI", func(t *testing.T) {
		code, body, cn := httpsGet(t, r.https, "named.test", "/", nil)
		if code != 200 || !strings.HasPrefix(body, "b /") || cn != "named.test" {
			t.Fatalf("got %d %q cert %q", code, body, cn)
		}
	})
	t.Run("plain host not on https", func(t *testing.T) {
		if code, _, _ := httpsGet(t, r.https, "plain.test", "/", nil); code != 404 {
			t.Fatalf("got %d, want 404", code)
		}
		if code, body, _ := get(t, r.http, "plain.test", "/"); code != 200 || !strings.HasPrefix(body, "c ") {
			t.Fatalf("plain http got %d %q", code, body)
		}
	})
	t.Run("profile versions", func(t *testing.T) {
		old := &tls.Config{MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}
		conn, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: "secure.test", InsecureSkipVerify: true, MaxVersion: old.MaxVersion, MinVersion: old.MinVersion})
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.1 handshake succeeded under the intermediate profile")
		}
	})
	s := r.d.Stats()
	if len(s.Skipped) != 1 || s.Skipped[0].Host != "missing.test" {
		t.Errorf("skipped %+v, want missing.test", s.Skipped)
	}
}

func TestTLSModernProfile(t *testing.T) {
	p, _ := tlsconf.Lookup(tlsconf.Modern)
	r := newRig(t, func(o *Options) { o.Profile = p })
	a := newBackend(t, "a")
	r.apply(t, table(routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}}))
	if _, err := tls.Dial("tcp", r.https, &tls.Config{ServerName: "secure.test", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("a TLS 1.2 handshake succeeded under the modern profile")
	}
	if code, _, _ := httpsGet(t, r.https, "secure.test", "/", &tls.Config{MinVersion: tls.VersionTLS13}); code != 200 {
		t.Fatalf("TLS 1.3 got %d", code)
	}
}

func TestBackendTLS(t *testing.T) {
	r := newRig(t, nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls-backend %s", r.URL.Path)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	route := func(verify bool) routing.Table {
		return table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", BackendTLS: &routing.BackendTLS{Verify: verify},
			Backends: []routing.Backend{{Address: addr}}}}})
	}
	r.apply(t, route(false))
	if code, body, _ := get(t, r.http, "web.test", "/x"); code != 200 || body != "tls-backend /x" {
		t.Fatalf("no verify: got %d %q", code, body)
	}
	// httptest's certificate is not in the system bundle: verification fails.
	r.apply(t, route(true))
	if code, _, _ := get(t, r.http, "web.test", "/x"); code < 500 {
		t.Fatalf("verify against an untrusted certificate answered %d", code)
	}
}

func TestTCPRouteBySNI(t *testing.T) {
	r := newRig(t, nil)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "db %s sni=%s", r.URL.Path, r.TLS.ServerName)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	r.apply(t, table(
		routing.Host{Name: "db.test", Aliases: []string{"pg.test"}, Routes: []routing.Route{{Path: "/", Protocol: routing.TCP, Backends: []routing.Backend{{Address: addr}}}}},
		routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{newBackend(t, "a").rb()}}}},
	))
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	for _, sni := range []string{"db.test", "pg.test"} {
		code, body, _ := httpsGet(t, r.tcp, sni, "/q", &tls.Config{RootCAs: pool})
		if code != 200 || body != "db /q sni="+sni {
			t.Fatalf("SNI %s: got %d %q", sni, code, body)
		}
	}
	// An unknown SNI gets no backend.
	if c, err := tls.Dial("tcp", r.tcp, &tls.Config{ServerName: "nope.test", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("handshake with an unknown SNI succeeded")
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	r := newRig(t, nil)
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		_ = rw.Flush()
		line, _ := rw.ReadString('\n')
		fmt.Fprint(rw, "echo "+line)
		_ = rw.Flush()
	}))
	t.Cleanup(ws.Close)
	r.apply(t, table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/app", WebSocketPaths: []string{"/app/ws"},
		Backends: []routing.Backend{{Address: strings.TrimPrefix(ws.URL, "http://")}}}}}))
	c, err := net.Dial("tcp", r.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET /app/ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if !strings.Contains(status, "101") {
		t.Fatalf("status line %q, want 101", status)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	fmt.Fprint(c, "hello\n")
	if got, _ := br.ReadString('\n'); got != "echo hello\n" {
		t.Fatalf("tunnel answered %q", got)
	}
}

func TestStatsPage(t *testing.T) {
	r := newRig(t, nil)
	r.apply(t, webTable(routing.RoundRobin, nil, newBackend(t, "a")))
	for path, want := range map[string]string{"/": "Statistics Report", "/metrics": "haproxy_backend_"} {
		resp, err := http.Get("http://" + r.stats + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body without %q", path, resp.StatusCode, want)
		}
	}
}
