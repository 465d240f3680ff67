package builtin

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// testCA is a certificate authority made for one test, with the pool that
// trusts it.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "interlock test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leafSpec describes a leaf certificate.
type leafSpec struct {
	names     []string
	ips       []net.IP
	notBefore time.Time
	notAfter  time.Time
	serial    int64
}

// issue returns a PEM certificate and PKCS#8 key for spec, signed by ca.
func (ca *testCA) issue(t testing.TB, spec leafSpec) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(12 * time.Hour)
	}
	if spec.serial == 0 {
		spec.serial = time.Now().UnixNano()
	}
	cn := "leaf"
	if len(spec.names) > 0 {
		cn = spec.names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(spec.serial),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     spec.names,
		IPAddresses:  spec.ips,
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// writeFile writes data to dir/rel, making directories.
func writeFile(t testing.TB, dir, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePair issues a certificate for spec and writes it as NAME/cert.pem
// and NAME/key.pem under dir. It returns the TLS settings naming them.
func (ca *testCA) writePair(t testing.TB, dir, name string, spec leafSpec) *routing.TLS {
	t.Helper()
	c, k := ca.issue(t, spec)
	writeFile(t, dir, name+"/cert.pem", c)
	writeFile(t, dir, name+"/key.pem", k)
	return &routing.TLS{CertFile: name + "/cert.pem", KeyFile: name + "/key.pem"}
}

// tlsHost is a host with TLS settings and one route to backend.
func tlsHost(name string, tl *routing.TLS, backend string, aliases ...string) routing.Host {
	h := hostOf(name, routeOf("/", backend))
	h.Aliases = aliases
	h.TLS = tl
	return h
}

// serveTLS runs p's TLS server on a loopback port and returns its address.
func serveTLS(t testing.TB, p *Proxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- p.ServeTLS(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// handshake connects to addr with SNI name and returns the server's leaf.
// roots nil skips verification (to look at the default certificate).
func handshake(addr, name string, roots *x509.CertPool, tune func(*tls.Config)) (*x509.Certificate, tls.ConnectionState, error) {
	cfg := &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil} //nolint:gosec // inspecting the default certificate
	if tune != nil {
		tune(cfg)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0], st, nil
}

// mustLeaf is handshake that fails the test on error.
func mustLeaf(t testing.TB, addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	leaf, _, err := handshake(addr, name, roots, nil)
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", name, err)
	}
	return leaf
}

func isDefaultCert(c *x509.Certificate) bool {
	return slices.Equal(c.DNSNames, []string{defaultCertName})
}

// httpsClient sends every request to addr, whatever the URL's host, over
// TLS verified against roots, with HTTP/2 when h2 is true.
func httpsClient(t testing.TB, addr string, roots *x509.CertPool, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type tlsResult struct {
	status int
	proto  string
	header http.Header
	echo   echo
	body   string
}

func doTLS(t testing.TB, c *http.Client, method, url string) tlsResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := tlsResult{status: res.StatusCode, proto: res.Proto, header: res.Header, body: string(b)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.echo); err != nil {
			t.Fatalf("decode echo %q: %v", b, err)
		}
	}
	return out
}

// TestTLSSelectsCertificateBySNI: each host name and alias gets its own
// certificate, a wildcard certificate serves the names it covers, and
// every other name (unknown, no SNI, a TLS host with no certificate of its
// own) gets the self-signed default.
func TestTLSSelectsCertificateBySNI(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	tbl := tableOf(
		tlsHost("a.test", ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}}), addr(be)),
		tlsHost("b.test", ca.writePair(t, dir, "b", leafSpec{names: []string{"b.test", "www.b.test"}}), addr(be), "www.b.test"),
		tlsHost("app.wild.test", ca.writePair(t, dir, "wild", leafSpec{names: []string{"*.wild.test"}}), addr(be)),
		tlsHost("nocert.test", &routing.TLS{}, addr(be)),
		hostOf("plain.test", routeOf("/", addr(be))),
	)
	p := newTestProxy(t, Options{CertDir: dir}, nil)
	mustApply(t, p, tbl)
	srv := serveTLS(t, p)

	for sni, want := range map[string][]string{
		"a.test":        {"a.test"},
		"A.Test":        {"a.test"},
		"b.test":        {"b.test", "www.b.test"},
		"www.b.test":    {"b.test", "www.b.test"},
		"app.wild.test": {"*.wild.test"},
	} {
		if leaf := mustLeaf(t, srv, sni, ca.pool); !slices.Equal(leaf.DNSNames, want) {
			t.Errorf("SNI %s: certificate for %v, want %v", sni, leaf.DNSNames, want)
		}
	}
	for _, sni := range []string{"unknown.test", "", "nocert.test", "plain.test", "other.wild.test"} {
		if leaf := mustLeaf(t, srv, sni, nil); !isDefaultCert(leaf) {
			t.Errorf("SNI %q: certificate for %v, want the default certificate", sni, leaf.DNSNames)
		}
	}
	if got := p.CertProblems(); len(got) != 0 {
		t.Errorf("CertProblems = %v, want none", got)
	}

	// Requests over TLS reach the backend, which is told the scheme.
	c := httpsClient(t, srv, ca.pool, true)
	r := doTLS(t, c, http.MethodGet, "https://a.test/x?y=1")
	if r.status != 200 || r.echo.Backend != "app" || r.echo.Path != "/x" || r.echo.RawQuery != "y=1" {
		t.Fatalf("GET https://a.test/x?y=1: %d %+v", r.status, r.echo)
	}
	if r.echo.XFProto != "https" || r.echo.Host != "a.test" {
		t.Errorf("backend saw X-Forwarded-Proto %q Host %q, want https and a.test", r.echo.XFProto, r.echo.Host)
	}
	if r.header.Get(hstsHeader) != "" {
		t.Errorf("HSTS header %q without HSTSMaxAge", r.header.Get(hstsHeader))
	}
	// A plain-HTTP host is not served over TLS.
	insecure := httpsClient(t, srv, nil, true)
	insecure.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
	if r := doTLS(t, insecure, http.MethodGet, "https://plain.test/"); r.status != 404 || !strings.Contains(r.body, "not served over HTTPS") {
		t.Errorf("plain host over TLS: %d %q, want 404 saying it is not served over HTTPS", r.status, r.body)
	}
	// A TLS host without a certificate of its own is served, with the
	// default certificate.
	if r := doTLS(t, insecure, http.MethodGet, "https://nocert.test/"); r.status != 200 || r.echo.XFProto != "https" {
		t.Errorf("TLS host with the default certificate: %d %+v", r.status, r.echo)
	}
}

// TestTLSProfiles: the protocol floor and ceiling, and the TLS 1.2 suites,
// come from the profile.
func TestTLSProfiles(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	tbl := tableOf(tlsHost("a.test", ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}}), addr(be)))
	versions := func(lo, hi uint16) func(*tls.Config) {
		return func(c *tls.Config) { c.MinVersion, c.MaxVersion = lo, hi }
	}
	for _, tc := range []struct {
		profile string
		accept  []uint16
		refuse  []uint16
	}{
		{profile: tlsconf.Modern, accept: []uint16{tls.VersionTLS13}, refuse: []uint16{tls.VersionTLS12, tls.VersionTLS11}},
		{profile: tlsconf.Intermediate, accept: []uint16{tls.VersionTLS13, tls.VersionTLS12}, refuse: []uint16{tls.VersionTLS11, tls.VersionTLS10}},
		{profile: tlsconf.Old, accept: []uint16{tls.VersionTLS13, tls.VersionTLS12, tls.VersionTLS11, tls.VersionTLS10}},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			prof, err := tlsconf.Lookup(tc.profile)
			if err != nil {
				t.Fatal(err)
			}
			p := newTestProxy(t, Options{CertDir: dir, TLSProfile: prof}, nil)
			mustApply(t, p, tbl)
			srv := serveTLS(t, p)
			for _, v := range tc.accept {
				_, st, err := handshake(srv, "a.test", ca.pool, versions(v, v))
				if err != nil {
					t.Errorf("%s refused %s: %v", tc.profile, tls.VersionName(v), err)
				} else if st.Version != v {
					t.Errorf("%s: negotiated %s, want %s", tc.profile, tls.VersionName(st.Version), tls.VersionName(v))
				}
			}
			for _, v := range tc.refuse {
				if _, st, err := handshake(srv, "a.test", ca.pool, versions(v, v)); err == nil {
					t.Errorf("%s accepted %s (negotiated %s)", tc.profile, tls.VersionName(v), tls.VersionName(st.Version))
				}
			}
		})
	}

	t.Run("intermediate refuses CBC suites", func(t *testing.T) {
		p := newTestProxy(t, Options{CertDir: dir}, nil)
		mustApply(t, p, tbl)
		srv := serveTLS(t, p)
		cbc := func(c *tls.Config) {
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}
		if _, st, err := handshake(srv, "a.test", ca.pool, cbc); err == nil {
			t.Errorf("intermediate accepted %s", tls.CipherSuiteName(st.CipherSuite))
		}
		gcm := func(c *tls.Config) {
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
		}
		if _, st, err := handshake(srv, "a.test", ca.pool, gcm); err != nil || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
			t.Errorf("intermediate with AES-256-GCM: %v, suite %s", err, tls.CipherSuiteName(st.CipherSuite))
		}
	})
}

// TestTLSALPN: HTTP/2 for clients that offer it, HTTP/1.1 for the others,
// and HTTP/1.1 only when the cipher list rules HTTP/2 out.
func TestTLSALPN(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	tbl := tableOf(tlsHost("a.test", ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}}), addr(be)))
	p := newTestProxy(t, Options{CertDir: dir}, nil)
	mustApply(t, p, tbl)
	srv := serveTLS(t, p)
	if got := p.TLSConfig().NextProtos; !slices.Equal(got, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %v", got)
	}

	r := doTLS(t, httpsClient(t, srv, ca.pool, true), http.MethodGet, "https://a.test/")
	if r.status != 200 || r.proto != "HTTP/2.0" || r.echo.Backend != "app" {
		t.Errorf("h2 client: %d %s %+v, want 200 over HTTP/2.0", r.status, r.proto, r.echo)
	}
	r = doTLS(t, httpsClient(t, srv, ca.pool, false), http.MethodPost, "https://a.test/")
	if r.status != 200 || r.proto != "HTTP/1.1" || r.echo.Method != "POST" {
		t.Errorf("http/1.1 client: %d %s %+v, want 200 over HTTP/1.1", r.status, r.proto, r.echo)
	}

	// A cipher list without the suites HTTP/2 requires: HTTP/1.1 only.
	prof, _ := tlsconf.Lookup(tlsconf.Intermediate)
	prof, err := prof.WithCiphers("ECDHE-ECDSA-AES256-GCM-SHA384")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p = newTestProxy(t, Options{CertDir: dir, TLSProfile: prof}, logs)
	mustApply(t, p, tbl)
	srv = serveTLS(t, p)
	if got := p.TLSConfig().NextProtos; !slices.Equal(got, []string{"http/1.1"}) {
		t.Errorf("NextProtos = %v with no h2 suite, want http/1.1 only", got)
	}
	r = doTLS(t, httpsClient(t, srv, ca.pool, true), http.MethodGet, "https://a.test/")
	if r.status != 200 || r.proto != "HTTP/1.1" {
		t.Errorf("no h2 suite: %d %s, want 200 over HTTP/1.1", r.status, r.proto)
	}
	if len(logs.lines("serving HTTP/1.1 only")) != 1 {
		t.Errorf("no warning about HTTP/1.1 only:\n%s", logs)
	}
}

// TestTLSOnlyRedirectAndHSTS: a plain request to an ssl_only host is
// redirected to HTTPS (301 for GET and HEAD, 308 for the rest) with its
// path and query; over TLS it is served, with HSTS when configured.
func TestTLSOnlyRedirectAndHSTS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	only := ca.writePair(t, dir, "secure", leafSpec{names: []string{"secure.test"}})
	only.Only = true
	tbl := tableOf(
		tlsHost("secure.test", only, addr(be)),
		tlsHost("both.test", ca.writePair(t, dir, "both", leafSpec{names: []string{"both.test"}}), addr(be)),
	)

	for _, tc := range []struct {
		name     string
		port     int
		wantPort string
	}{
		{name: "port 8443", port: 8443, wantPort: ":8443"},
		{name: "port 443", port: 443, wantPort: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProxy(t, Options{CertDir: dir, HTTPSPort: tc.port}, nil)
			mustApply(t, p, tbl)
			plain := serve(t, p)
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for _, m := range []struct {
				method string
				code   int
			}{{http.MethodGet, 301}, {http.MethodHead, 301}, {http.MethodPost, 308}, {http.MethodPut, 308}, {http.MethodDelete, 308}} {
				res := do(t, client, plain, m.method, "Secure.Test:8080", "/a/b%20c?x=1&y=%2F", strings.NewReader("body"), nil)
				want := "https://secure.test" + tc.wantPort + "/a/b%20c?x=1&y=%2F"
				if res.status != m.code || res.header.Get("Location") != want {
					t.Errorf("%s: %d Location %q, want %d %q", m.method, res.status, res.header.Get("Location"), m.code, want)
				}
			}
			// A TLS host that is not ssl_only serves plain HTTP too.
			if res := get(t, plain, "both.test", "/"); res.status != 200 || res.echo.XFProto != "http" {
				t.Errorf("plain request to a TLS host without ssl_only: %d %+v", res.status, res.echo)
			}
		})
	}

	t.Run("port of the listener", func(t *testing.T) {
		p := newTestProxy(t, Options{CertDir: dir}, nil)
		mustApply(t, p, tbl)
		tlsAddr := serveTLS(t, p)
		mustLeaf(t, tlsAddr, "secure.test", ca.pool) // ServeTLS is running
		_, port, _ := net.SplitHostPort(tlsAddr)
		res := do(t, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
			serve(t, p), http.MethodGet, "secure.test", "/p", nil, nil)
		if want := "https://secure.test:" + port + "/p"; res.header.Get("Location") != want {
			t.Errorf("Location %q, want %q", res.header.Get("Location"), want)
		}
	})

	for _, tc := range []struct {
		name string
		age  time.Duration
		want string
	}{
		{name: "HSTS off", age: 0, want: ""},
		{name: "HSTS on", age: 365 * 24 * time.Hour, want: "max-age=31536000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProxy(t, Options{CertDir: dir, HSTSMaxAge: tc.age, HTTPSPort: 443}, nil)
			mustApply(t, p, tbl)
			c := httpsClient(t, serveTLS(t, p), ca.pool, true)
			r := doTLS(t, c, http.MethodGet, "https://secure.test/")
			if r.status != 200 || r.echo.XFProto != "https" {
				t.Fatalf("ssl_only host over TLS: %d %+v", r.status, r.echo)
			}
			if got := r.header.Values(hstsHeader); strings.Join(got, ",") != tc.want {
				t.Errorf("HSTS %q, want %q", got, tc.want)
			}
			if got := doTLS(t, c, http.MethodGet, "https://both.test/").header.Get(hstsHeader); got != "" {
				t.Errorf("HSTS %q on a host that is not ssl_only", got)
			}
			// Never on plain HTTP, where it means nothing.
			res := do(t, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
				serve(t, p), http.MethodGet, "secure.test", "/", nil, nil)
			if res.status != 301 || res.header.Get(hstsHeader) != "" {
				t.Errorf("plain redirect: %d HSTS %q", res.status, res.header.Get(hstsHeader))
			}
		})
	}
}

// TestTLSBadCertificateIsolated: every kind of bad certificate costs only
// its own host, which gets the default certificate and a listed problem;
// the good host keeps its own certificate.
func TestTLSBadCertificateIsolated(t *testing.T) {
	ca := newTestCA(t)
	be := newBackend(t, "app")
	outside := t.TempDir() // a directory the labels must not reach
	otherCert, otherKey := ca.issue(t, leafSpec{names: []string{"bad.test"}})
	writeFile(t, outside, "cert.pem", otherCert)
	writeFile(t, outside, "key.pem", otherKey)

	tests := []struct {
		name   string
		setup  func(t *testing.T, dir string) *routing.TLS
		reason string
		path   string
	}{
		{name: "missing", reason: CertMissing, path: "nope/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				return &routing.TLS{CertFile: "nope/cert.pem", KeyFile: "nope/key.pem"}
			}},
		{name: "missing key", reason: CertMissing, path: "bad/nokey.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				tl := ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"}})
				tl.KeyFile = "bad/nokey.pem"
				return tl
			}},
		{name: "unreadable (a directory)", reason: CertUnreadable, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				tl := ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"}})
				os.Remove(filepath.Join(dir, "bad/cert.pem"))
				os.Mkdir(filepath.Join(dir, "bad/cert.pem"), 0o755)
				return tl
			}},
		{name: "not PEM", reason: CertNotPEM, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				tl := ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"}})
				writeFile(t, dir, "bad/cert.pem", []byte("hello, not a certificate\n"))
				return tl
			}},
		{name: "key not PEM", reason: CertNotPEM, path: "bad/key.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				tl := ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"}})
				c, _ := os.ReadFile(filepath.Join(dir, "bad/cert.pem"))
				writeFile(t, dir, "bad/key.pem", c) // a certificate, no key
				return tl
			}},
		{name: "key mismatch", reason: CertKeyMismatch, path: "bad/key.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				tl := ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"}})
				_, k := ca.issue(t, leafSpec{names: []string{"bad.test"}})
				writeFile(t, dir, "bad/key.pem", k)
				return tl
			}},
		{name: "expired", reason: CertExpired, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				return ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"},
					notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
			}},
		{name: "not yet valid", reason: CertNotYetValid, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				return ca.writePair(t, dir, "bad", leafSpec{names: []string{"bad.test"},
					notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(48 * time.Hour)})
			}},
		{name: "another name", reason: CertNameMismatch, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				return ca.writePair(t, dir, "bad", leafSpec{names: []string{"elsewhere.test"}})
			}},
		{name: "dot-dot", reason: CertOutsideDir, path: "../outside/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				return &routing.TLS{CertFile: "../outside/cert.pem", KeyFile: "../outside/key.pem"}
			}},
		{name: "absolute", reason: CertOutsideDir, path: filepath.Join(outside, "cert.pem"),
			setup: func(t *testing.T, dir string) *routing.TLS {
				return &routing.TLS{CertFile: filepath.Join(outside, "cert.pem"), KeyFile: filepath.Join(outside, "key.pem")}
			}},
		{name: "symlink out", reason: CertOutsideDir, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				os.MkdirAll(filepath.Join(dir, "bad"), 0o755)
				if err := os.Symlink(filepath.Join(outside, "cert.pem"), filepath.Join(dir, "bad/cert.pem")); err != nil {
					t.Fatal(err)
				}
				writeFile(t, dir, "bad/key.pem", otherKey)
				return &routing.TLS{CertFile: "bad/cert.pem", KeyFile: "bad/key.pem"}
			}},
		{name: "symlinked directory out", reason: CertOutsideDir, path: "bad/cert.pem",
			setup: func(t *testing.T, dir string) *routing.TLS {
				if err := os.Symlink(outside, filepath.Join(dir, "bad")); err != nil {
					t.Fatal(err)
				}
				return &routing.TLS{CertFile: "bad/cert.pem", KeyFile: "bad/key.pem"}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			good := ca.writePair(t, dir, "good", leafSpec{names: []string{"good.test"}})
			tbl := tableOf(
				tlsHost("good.test", good, addr(be)),
				tlsHost("bad.test", tc.setup(t, dir), addr(be)),
			)
			logs := &syncBuffer{}
			p := newTestProxy(t, Options{CertDir: dir}, logs)
			mustApply(t, p, tbl)
			srv := serveTLS(t, p)

			if leaf := mustLeaf(t, srv, "good.test", ca.pool); !slices.Equal(leaf.DNSNames, []string{"good.test"}) {
				t.Errorf("good host got a certificate for %v", leaf.DNSNames)
			}
			if leaf := mustLeaf(t, srv, "bad.test", nil); !isDefaultCert(leaf) {
				t.Errorf("bad host got a certificate for %v, want the default certificate", leaf.DNSNames)
			}
			probs := p.CertProblems()
			if len(probs) != 1 || probs[0].Host != "bad.test" || probs[0].Reason != tc.reason || probs[0].Path != tc.path || probs[0].Message == "" {
				t.Fatalf("CertProblems = %+v, want one for bad.test, reason %s, path %s", probs, tc.reason, tc.path)
			}
			if tc.reason == CertOutsideDir && strings.Contains(probs[0].Message, "BEGIN") {
				t.Errorf("message leaks file content: %s", probs[0].Message)
			}
			// Both hosts keep serving requests.
			insecure := httpsClient(t, srv, nil, true)
			insecure.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
			for _, h := range []string{"good.test", "bad.test"} {
				if r := doTLS(t, insecure, http.MethodGet, "https://"+h+"/"); r.status != 200 {
					t.Errorf("%s: %d", h, r.status)
				}
			}
			// Logged once, not again for the same table.
			mustApply(t, p, tbl)
			if n := len(logs.lines("certificate problem: the host gets the default certificate")); n != 1 {
				t.Errorf("problem logged %d times over two applies, want once:\n%s", n, logs)
			}
			// Without the bad host, the problem is gone, and says so.
			mustApply(t, p, tableOf(tlsHost("good.test", good, addr(be))))
			if got := p.CertProblems(); len(got) != 0 {
				t.Errorf("CertProblems after the bad host left: %v", got)
			}
			if len(logs.lines("certificate problem gone")) != 1 {
				t.Errorf("no log line for the problem going away:\n%s", logs)
			}
		})
	}

	t.Run("alias not covered", func(t *testing.T) {
		dir := t.TempDir()
		tbl := tableOf(tlsHost("main.test", ca.writePair(t, dir, "m", leafSpec{names: []string{"main.test"}}), addr(be), "alias.test"))
		p := newTestProxy(t, Options{CertDir: dir}, nil)
		mustApply(t, p, tbl)
		srv := serveTLS(t, p)
		if leaf := mustLeaf(t, srv, "main.test", ca.pool); !slices.Equal(leaf.DNSNames, []string{"main.test"}) {
			t.Errorf("main name: %v", leaf.DNSNames)
		}
		if leaf := mustLeaf(t, srv, "alias.test", nil); !isDefaultCert(leaf) {
			t.Errorf("uncovered alias: %v, want the default certificate", leaf.DNSNames)
		}
		if probs := p.CertProblems(); len(probs) != 1 || probs[0].Reason != CertNameMismatch || !strings.Contains(probs[0].Message, "alias.test") {
			t.Errorf("CertProblems = %+v", probs)
		}
	})

	t.Run("no certificate directory", func(t *testing.T) {
		dir := t.TempDir()
		tbl := tableOf(tlsHost("a.test", ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}}), addr(be)))
		for _, certDir := range []string{"", filepath.Join(dir, "absent")} {
			p := newTestProxy(t, Options{CertDir: certDir}, nil)
			mustApply(t, p, tbl)
			if probs := p.CertProblems(); len(probs) != 1 || probs[0].Reason != CertMissing {
				t.Errorf("cert dir %q: CertProblems = %+v", certDir, probs)
			}
		}
	})

	t.Run("symlink inside the directory", func(t *testing.T) {
		// Kubernetes-style: name -> ..data/name -> ..2024/name, all inside.
		dir := t.TempDir()
		ca.writePair(t, dir, "..2024", leafSpec{names: []string{"k8s.test"}})
		if err := os.Symlink("..2024", filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		os.Symlink("..data/cert.pem", filepath.Join(dir, "tls.crt"))
		os.Symlink("..data/key.pem", filepath.Join(dir, "tls.key"))
		p := newTestProxy(t, Options{CertDir: dir}, nil)
		mustApply(t, p, tableOf(tlsHost("k8s.test", &routing.TLS{CertFile: "tls.crt", KeyFile: "tls.key"}, addr(be))))
		if leaf := mustLeaf(t, serveTLS(t, p), "k8s.test", ca.pool); !slices.Equal(leaf.DNSNames, []string{"k8s.test"}) {
			t.Errorf("got %v (problems %v)", leaf.DNSNames, p.CertProblems())
		}
	})
}

// TestTLSCertificateRotation: a certificate rewritten on disk is served to
// new handshakes after the next Apply, while a connection made before
// keeps working; an unchanged file is not read again.
func TestTLSCertificateRotation(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	tl := ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}, serial: 1001})
	tbl := tableOf(tlsHost("a.test", tl, addr(be)))
	logs := &syncBuffer{}
	p := newTestProxy(t, Options{CertDir: dir}, logs)
	mustApply(t, p, tbl)
	srv := serveTLS(t, p)

	// An HTTP/1.1 keep-alive connection made on the first certificate.
	conn, err := tls.Dial("tcp", srv, &tls.Config{ServerName: "a.test", RootCAs: ca.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 1001 {
		t.Fatalf("first serial %d", got)
	}
	br := bufio.NewReader(conn)
	request := func() {
		t.Helper()
		fmt.Fprint(conn, "GET /keep HTTP/1.1\r\nHost: a.test\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request on the old connection: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("request on the old connection: %d", res.StatusCode)
		}
	}
	request()

	// Unchanged files are not read again.
	mustApply(t, p, tbl)
	if n := len(logs.lines("certificate loaded")); n != 1 {
		t.Errorf("certificate loaded %d times for unchanged files, want once", n)
	}

	// Rotate: rewrite both files in place.
	c, k := ca.issue(t, leafSpec{names: []string{"a.test"}, serial: 1002})
	writeFile(t, dir, "a/cert.pem", c)
	writeFile(t, dir, "a/key.pem", k)
	// Until the next Apply, the loaded certificate is served.
	if got := mustLeaf(t, srv, "a.test", ca.pool).SerialNumber.Int64(); got != 1001 {
		t.Errorf("before Apply: serial %d, want 1001", got)
	}
	mustApply(t, p, tbl)
	if got := mustLeaf(t, srv, "a.test", ca.pool).SerialNumber.Int64(); got != 1002 {
		t.Errorf("after rotation: serial %d, want 1002", got)
	}
	if n := len(logs.lines("certificate loaded")); n != 2 {
		t.Errorf("certificate loaded %d times, want twice", n)
	}
	request() // the old connection still works

	// Rotate by rename, the atomic way, to a bad certificate and back:
	// the host falls back, then recovers.
	writeFile(t, dir, "a/cert.pem.tmp", []byte("garbage"))
	if err := os.Rename(filepath.Join(dir, "a/cert.pem.tmp"), filepath.Join(dir, "a/cert.pem")); err != nil {
		t.Fatal(err)
	}
	mustApply(t, p, tbl)
	if leaf := mustLeaf(t, srv, "a.test", nil); !isDefaultCert(leaf) {
		t.Errorf("garbage certificate: served %v", leaf.DNSNames)
	}
	c, k = ca.issue(t, leafSpec{names: []string{"a.test"}, serial: 1003})
	writeFile(t, dir, "a/cert.pem.tmp", c)
	writeFile(t, dir, "a/key.pem", k)
	os.Rename(filepath.Join(dir, "a/cert.pem.tmp"), filepath.Join(dir, "a/cert.pem"))
	mustApply(t, p, tbl)
	if got := mustLeaf(t, srv, "a.test", ca.pool).SerialNumber.Int64(); got != 1003 {
		t.Errorf("after recovery: serial %d, want 1003", got)
	}
	if len(p.CertProblems()) != 0 {
		t.Errorf("problems after recovery: %v", p.CertProblems())
	}
	request()
}

// TestTLSConcurrentApplyAndHandshakes runs handshakes and requests while
// tables with and without the host's certificate are swapped in; with
// -race it checks the certificate map is published safely.
func TestTLSConcurrentApplyAndHandshakes(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	with := tableOf(tlsHost("a.test", ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}}), addr(be)))
	without := tableOf(tlsHost("a.test", &routing.TLS{}, addr(be)))
	p := newTestProxy(t, Options{CertDir: dir}, nil)
	mustApply(t, p, with)
	srv := serveTLS(t, p)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tbl := with
			if i%2 == 1 {
				tbl = without
			}
			if err := p.Apply(context.Background(), tbl); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	insecure := httpsClient(t, srv, nil, true)
	insecure.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
	for range 50 {
		leaf, _, err := handshake(srv, "a.test", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !isDefaultCert(leaf) && !slices.Equal(leaf.DNSNames, []string{"a.test"}) {
			t.Fatalf("served %v", leaf.DNSNames)
		}
		if r := doTLS(t, insecure, http.MethodGet, "https://a.test/"); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	close(stop)
	<-done
}

// TestBackendTLSVerified: with verification on, a backend certificate from
// a trusted root that names the backend's address is accepted; one that
// names something else, or comes from an unknown root, is not.
func TestBackendTLSVerified(t *testing.T) {
	ca := newTestCA(t)
	backend := func(t *testing.T, spec leafSpec) *httptest.Server {
		c, k := ca.issue(t, spec)
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(newBackend(t, "secure").Config.Handler)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	for _, tc := range []struct {
		name   string
		spec   leafSpec
		roots  *x509.CertPool
		status int
	}{
		{name: "trusted, names the address", spec: leafSpec{ips: []net.IP{net.IPv4(127, 0, 0, 1)}}, roots: ca.pool, status: 200},
		{name: "trusted, another name", spec: leafSpec{names: []string{"backend.test"}}, roots: ca.pool, status: 502},
		{name: "unknown root", spec: leafSpec{ips: []net.IP{net.IPv4(127, 0, 0, 1)}}, roots: x509.NewCertPool(), status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := backend(t, tc.spec)
			r := routeOf("/", addr(be))
			r.BackendTLS = &routing.BackendTLS{Verify: true}
			p := newTestProxy(t, Options{BackendRootCAs: tc.roots}, nil)
			mustApply(t, p, tableOf(hostOf("app.example", r)))
			res := get(t, serve(t, p), "app.example", "/")
			if res.status != tc.status {
				t.Fatalf("status %d (%q), want %d", res.status, res.body, tc.status)
			}
			if tc.status == 200 && res.echo.Backend != "secure" {
				t.Errorf("reached %q", res.echo.Backend)
			}
		})
	}
}

// needTool finds a command-line tool, installing nothing: it skips the test
// when the tool is missing, unless CI=true, where it fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is needed (apt-get install -y openssl curl): %v", name, err)
		}
		t.Skipf("%s not installed (apt-get install -y openssl curl)", name)
	}
	return p
}

// TestTLSWithOpenSSLAndCurl checks the listener with the real clients
// operators use: openssl s_client sees the right certificate per SNI name,
// and curl verifies it, speaks HTTP/2 and follows the ssl_only redirect.
func TestTLSWithOpenSSLAndCurl(t *testing.T) {
	openssl := needTool(t, "openssl")
	curl := needTool(t, "curl")
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	be := newBackend(t, "app")
	only := ca.writePair(t, dir, "secure", leafSpec{names: []string{"secure.test"}})
	only.Only = true
	p := newTestProxy(t, Options{CertDir: dir, HSTSMaxAge: time.Hour}, nil)
	mustApply(t, p, tableOf(
		tlsHost("secure.test", only, addr(be)),
		tlsHost("other.test", ca.writePair(t, dir, "other", leafSpec{names: []string{"other.test"}}), addr(be)),
	))
	tlsAddr := serveTLS(t, p)
	mustLeaf(t, tlsAddr, "secure.test", ca.pool) // ServeTLS is running
	plain := serve(t, p)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	_, plainPort, _ := net.SplitHostPort(plain.Listener.Addr().String())

	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	for _, tc := range []struct{ sni, subject string }{
		{"secure.test", "CN=secure.test"},
		{"other.test", "CN=other.test"},
		{"unknown.test", "CN=" + defaultCertName},
	} {
		out := run(openssl, "s_client", "-connect", tlsAddr, "-servername", tc.sni, "-CAfile", caFile, "-alpn", "h2,http/1.1", "-brief")
		if !strings.Contains(strings.ReplaceAll(out, " = ", "="), tc.subject) {
			t.Errorf("openssl s_client -servername %s: no %s in:\n%s", tc.sni, tc.subject, out)
		}
		if tc.sni != "unknown.test" && !strings.Contains(out, "Verification: OK") {
			t.Errorf("openssl s_client -servername %s: not verified:\n%s", tc.sni, out)
		}
	}

	// curl verifies against the CA and speaks HTTP/2.
	out := run(curl, "-sS", "--http2", "--resolve", "other.test:"+tlsPort+":127.0.0.1", "--cacert", caFile,
		"-o", "/dev/null", "-w", "%{http_code} %{http_version}", "https://other.test:"+tlsPort+"/")
	if out != "200 2" {
		t.Errorf("curl https://other.test: %q, want \"200 2\"", out)
	}
	// Plain HTTP to the ssl_only host: redirected, and curl -L follows
	// the redirect to HTTPS, where the backend is told the scheme.
	out = run(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
		"--resolve", "secure.test:"+plainPort+":127.0.0.1", "http://secure.test:"+plainPort+"/a?b=c")
	if want := "301 https://secure.test:" + tlsPort + "/a?b=c"; out != want {
		t.Errorf("curl http://secure.test: %q, want %q", out, want)
	}
	out = run(curl, "-sS", "-L", "-i", "--resolve", "secure.test:"+plainPort+":127.0.0.1", "--resolve", "secure.test:"+tlsPort+":127.0.0.1",
		"--cacert", caFile, "http://secure.test:"+plainPort+"/a?b=c")
	if !strings.Contains(out, `"xfp":"https"`) || !strings.Contains(out, `"path":"/a"`) || !strings.Contains(strings.ToLower(out), "strict-transport-security: max-age=3600") {
		t.Errorf("curl -L http://secure.test: no backend answer over HTTPS with HSTS:\n%s", out)
	}
}
