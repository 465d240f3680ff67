package haproxy

// Integration tests of SNI passthrough and of the ssl_only redirect codes
// against the real HAProxy, with the built-in proxy asked the same
// questions where its answers are the contract.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// passCertificate makes a self-signed certificate for names with
// crypto/x509, and a pool that trusts it.
func passCertificate(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsBackend is a backend that terminates TLS itself with cert (HTTP/2
// and HTTP/1.1 by ALPN) and says who it is, the server name it was asked
// for and the address it sees.
func tlsBackend(t testing.TB, name string, cert tls.Certificate) routing.Backend {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s sni=%s remote=%s", name, r.URL.RequestURI(), r.TLS.ServerName, r.RemoteAddr)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // health checks hang up
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return routing.Backend{Address: strings.TrimPrefix(srv.URL, "https://"), Name: name}
}

// clientIP is the loopback address the TLS clients connect from, so that
// the address a backend sees tells the client from the proxy (127.0.0.1).
var clientIP = net.ParseIP("127.0.0.2")

// tlsReply is one answer over TLS, with the certificate the client saw.
type tlsReply struct {
	code  int
	body  string
	cert  *x509.Certificate
	proto int
}

// getTLS makes a GET over TLS from clientIP with the given SNI and Host.
// roots nil means the certificate is not verified.
func getTLS(addr, sni, host, path string, roots *x509.CertPool) (tlsReply, error) {
	cfg := &tls.Config{ServerName: sni, RootCAs: roots, InsecureSkipVerify: roots == nil} //nolint:gosec // checked by the caller
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: cfg, ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 5 * time.Second}).DialContext,
	}}
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return tlsReply{}, err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return tlsReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return tlsReply{code: resp.StatusCode, body: string(b), cert: resp.TLS.PeerCertificates[0], proto: resp.ProtoMajor}, err
}

// builtinRedirecting serves tb with the built-in proxy on plain HTTP, its
// HTTPS redirects naming the port of httpsAddr.
func builtinRedirecting(t testing.TB, tb routing.Table, httpsAddr string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(httpsAddr)
	n, _ := strconv.Atoi(port)
	p := builtin.New(builtin.Options{Logger: testLogger(t), HTTPSPort: n})
	if err := p.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); _ = p.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

// checkHTTPSRedirects asks HAProxy and the built-in proxy for plain-HTTP
// requests to hosts that must go to HTTPS: 301 for GET and HEAD, 308 for
// every other method, Location https://HOST[:PORT]PATH?QUERY, no-store.
func checkHTTPSRedirects(t *testing.T, r *rig, tb routing.Table, hosts ...string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(r.https)
	ref := builtinRedirecting(t, tb, r.https)
	for _, h := range hosts {
		for _, tc := range []struct {
			method, path string
			code         int
		}{
			{http.MethodGet, "/x?y=1", 301},
			{http.MethodGet, "/", 301},
			{http.MethodHead, "/h?q", 301},
			{http.MethodPost, "/form?next=/x", 308},
			{http.MethodPut, "/p", 308},
			{http.MethodDelete, "/a%20b/d", 308},
		} {
			want := "https://" + h + ":" + port + tc.path
			for name, addr := range map[string]string{"haproxy": r.http, "builtin": ref} {
				got := request(t, tc.method, addr, h, tc.path, "")
				if got.code != tc.code || got.header.Get("Location") != want || got.header.Get("Cache-Control") != "no-store" {
					t.Errorf("%s: %s %s%s answered %d Location %q Cache-Control %q, want %d %q no-store",
						name, tc.method, h, tc.path, got.code, got.header.Get("Location"), got.header.Get("Cache-Control"), tc.code, want)
				}
			}
		}
	}
}

func TestSSLOnlyRedirectCodes(t *testing.T) {
	r := newRig(t, nil)
	a := newBackend(t, "a")
	tb := table(
		routing.Host{Name: "secure.test", Aliases: []string{"www.secure.test"}, TLS: &routing.TLS{Only: true},
			Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}, {Path: "/app", Backends: []routing.Backend{a.rb()}}}},
		routing.Host{Name: "plain.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
	)
	r.apply(t, tb)
	checkHTTPSRedirects(t, r, tb, "secure.test", "www.secure.test")
	_, port, _ := net.SplitHostPort(r.https)
	if got := request(t, http.MethodGet, r.http, "Secure.Test.:8080", "/z", ""); got.code != 301 || got.header.Get("Location") != "https://secure.test:"+port+"/z" {
		t.Errorf("Host Secure.Test.:8080 answered %d Location %q", got.code, got.header.Get("Location"))
	}
	if got, err := getTLS(r.https, "secure.test", "secure.test", "/app/s", nil); err != nil || got.code != 200 || !strings.HasPrefix(got.body, "a /app/s xff=127.0.0.2 proto=https") {
		t.Errorf("secure.test over HTTPS: %+v %v", got, err)
	}
}

func TestSNIPassthrough(t *testing.T) {
	r := newRig(t, nil)
	cert, pool := passCertificate(t, "pass.test", "www.pass.test")
	p1, p2 := tlsBackend(t, "p1", cert), tlsBackend(t, "p2", cert)
	a, b := newBackend(t, "a"), newBackend(t, "b")
	passTable := func(pass []routing.Backend, api ...routing.Backend) routing.Table {
		return table(
			routing.Host{Name: "pass.test", Aliases: []string{"www.pass.test"}, TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{
				{Path: "/", HealthCheck: &routing.HealthCheck{Path: "/healthz", Interval: 200 * time.Millisecond}, Backends: pass},
				{Path: "/api", Backends: api}}},
			routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
			routing.Host{Name: "plain.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{b.rb()}}}},
			routing.Host{Name: "empty.test", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/"}}},
		)
	}
	withPass := passTable([]routing.Backend{p1}, b.rb())
	r.apply(t, withPass)

	// The passthrough host: the backend's own certificate, verified by the
	// client against the backend's CA, and the backend's answer.
	passed := func(sni, path string, from ...string) {
		t.Helper()
		waitFor(t, 10*time.Second, sni+" passed through to "+strings.Join(from, " or "), func() error {
			got, err := getTLS(r.https, sni, sni, path, pool)
			if err != nil {
				return err
			}
			name, _, _ := strings.Cut(got.body, " ")
			if got.code != 200 || !strings.Contains(got.body, " "+path+" sni="+sni+" ") || !got.cert.Equal(cert.Leaf) || got.proto != 2 {
				return fmt.Errorf("got %d %q HTTP/%d cert %q", got.code, got.body, got.proto, got.cert.Subject.CommonName)
			}
			if !strings.Contains(strings.Join(from, " "), name) {
				return fmt.Errorf("answered by %s", name)
			}
			// The backend sees HAProxy's address, not the client's
			// (README.md says so).
			if !strings.Contains(got.body, " remote=127.0.0.1:") {
				return fmt.Errorf("the passthrough backend saw %q, want the proxy's address 127.0.0.1", got.body)
			}
			return nil
		})
	}
	passed("pass.test", "/x?y=1", "p1")
	passed("www.pass.test", "/api/not-the-api-route", "p1") // one route takes every connection
	if got, err := getTLS(r.https, "PASS.Test", "pass.test", "/", nil); err != nil || !got.cert.Equal(cert.Leaf) || !strings.HasPrefix(got.body, "p1 / ") {
		t.Errorf("SNI PASS.Test: %+v %v, want the backend's certificate and answer", got, err)
	}

	// Another TLS host on the same port: the proxy's certificate, and its
	// backend sees the client's address, carried by the PROXY protocol.
	terminated := func() error {
		got, err := getTLS(r.https, "secure.test", "secure.test", "/s", nil)
		if err != nil {
			return err
		}
		if got.code != 200 || got.cert.Subject.CommonName != "interlock-default.invalid" || got.proto != 2 ||
			!strings.HasPrefix(got.body, "a /s xff=127.0.0.2 proto=https fhost=secure.test") {
			return fmt.Errorf("got %d %q HTTP/%d cert %q", got.code, got.body, got.proto, got.cert.Subject.CommonName)
		}
		return nil
	}
	waitFor(t, 10*time.Second, "secure.test terminated by HAProxy", terminated)
	// A name without TLS, or a passthrough host's name as Host behind
	// another SNI, is not served over HTTPS.
	for _, tc := range [][2]string{{"plain.test", "plain.test"}, {"secure.test", "pass.test"}} {
		if got, err := getTLS(r.https, tc[0], tc[1], "/", nil); err != nil || got.code != 404 {
			t.Errorf("SNI %s, Host %s: %+v %v, want 404", tc[0], tc[1], got, err)
		}
	}

	// A passthrough host without servers: its connections are closed.
	if got, err := getTLS(r.https, "empty.test", "empty.test", "/", nil); err == nil {
		t.Errorf("empty.test answered %d %q, want the connection closed", got.code, got.body)
	}

	// Plain HTTP to the passthrough host goes to HTTPS, like ssl_only.
	checkHTTPSRedirects(t, r, withPass, "pass.test", "www.pass.test")
	if got := request(t, http.MethodGet, r.http, "plain.test", "/", ""); got.code != 200 || got.from() != "b" {
		t.Errorf("plain.test over HTTP: %d %q", got.code, got.body)
	}

	// Backend changes of the passthrough route go over the Runtime API,
	// like any other: no reload.
	before := r.d.Stats()
	r.apply(t, passTable([]routing.Backend{p1, p2}, b.rb()))
	passed("pass.test", "/both", "p2")
	r.apply(t, passTable([]routing.Backend{p2}, b.rb()))
	for i := range 5 {
		passed("pass.test", "/only-p2-"+strconv.Itoa(i), "p2")
	}
	// The other routes of a passthrough host are not rendered: changing
	// them changes nothing.
	r.apply(t, passTable([]routing.Backend{p2}, a.rb(), b.rb()))
	if s := r.d.Stats(); s.Reloads != before.Reloads || s.RuntimeApplies != before.RuntimeApplies+3 || s.RuntimeFallbacks != before.RuntimeFallbacks {
		t.Errorf("passthrough backend changes: reloads %d -> %d, runtime applies %d -> %d, fallbacks %d -> %d; want no reload and 3 runtime applies",
			before.Reloads, s.Reloads, before.RuntimeApplies, s.RuntimeApplies, before.RuntimeFallbacks, s.RuntimeFallbacks)
	}
	waitFor(t, 10*time.Second, "secure.test still terminated", terminated)

	// Without passthrough hosts the SNI frontend goes and the https
	// frontend binds the HTTPS address itself again; then it comes back.
	r.apply(t, table(withPass.Hosts[2:]...)) // empty.test and pass.test go
	waitFor(t, 10*time.Second, "pass.test gone", func() error {
		if got, err := getTLS(r.https, "pass.test", "pass.test", "/", nil); err == nil && got.cert.Equal(cert.Leaf) {
			return fmt.Errorf("pass.test still passes through: %d %q", got.code, got.body)
		}
		return nil
	})
	waitFor(t, 10*time.Second, "secure.test without the SNI frontend", terminated)
	r.apply(t, withPass)
	passed("pass.test", "/again", "p1")
	waitFor(t, 10*time.Second, "secure.test behind the SNI frontend again", terminated)
}

// TestPassthroughSocketPerInstance: the https frontend behind the SNI
// frontend binds a unix socket beside the admin socket: one per container
// (named by HOSTNAME, double-quoted so HAProxy expands it) in mode volume,
// where the containers share the state directory.
func TestPassthroughSocketPerInstance(t *testing.T) {
	dir := t.TempDir()
	tb := table(routing.Host{Name: "pass.test", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{{Path: "/", Backends: be("10.0.0.1:443")}}})
	for _, c := range []struct {
		mode Mode
		sock string
	}{
		{Supervise, `unix@'` + dir + `/https.sock'`},
		{Volume, `unix@"` + dir + `/https-${HOSTNAME}.sock"`},
	} {
		d, err := New(Options{Mode: c.mode, Containers: noContainers{}, StateDir: dir, HTTPAddr: ":80", HTTPSAddr: ":443", CertDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		conf, v, err := d.Render(tb)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"    bind " + c.sock + " mode 600 accept-proxy ssl crt ", "    server https " + c.sock + " send-proxy-v2\n", "    bind :443\n"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("mode %s: the file lacks %q", c.mode, want)
			}
		}
		if v.Passthrough == nil || len(v.Passthrough.Hosts) != 1 || v.Passthrough.Hosts[0].Backend != backendName("pt", "pass.test", "/") {
			t.Errorf("mode %s: passthrough %+v", c.mode, v.Passthrough)
		}
	}
}
