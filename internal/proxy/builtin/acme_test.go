package builtin

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// fakeCerts is a CertSource without a CA: it serves a fixed certificate
// for the names it was last told, a challenge certificate to acme-tls/1
// hellos, and a fixed body to HTTP-01 requests for one token. The real
// one (internal/acme, against a real ACME server) is tested there.
type fakeCerts struct {
	cert, challenge *tls.Certificate
	token           string

	mu       sync.Mutex
	synced   [][]string
	asked    []string // server names GetCertificate was asked about
	failures map[string]error
}

func (f *fakeCerts) Sync(names []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced = append(f.synced, slices.Clone(names))
}

func (f *fakeCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, hello.ServerName)
	if slices.Equal(hello.SupportedProtos, []string{acmeTLS1}) {
		return f.challenge, nil
	}
	if f.failures[hello.ServerName] != nil {
		return nil, f.failures[hello.ServerName]
	}
	return f.cert, nil
}

func (f *fakeCerts) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != acmeChallengePrefix+f.token {
		return false
	}
	io.WriteString(w, f.token+".keyauth")
	return true
}

func (f *fakeCerts) Failure(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures[name]
}

func (f *fakeCerts) lastSync() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.synced) == 0 {
		return nil
	}
	return f.synced[len(f.synced)-1]
}

func pairOf(t *testing.T, ca *testCA, names ...string) *tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, leafSpec{names: names})
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

// TestACMESync: every Apply hands the certificate source the names
// (primary and aliases) of the ACME hosts, sorted, and nothing of hosts
// with a certificate of their own, passthrough or plain HTTP; a host that
// leaves the table leaves the list.
func TestACMESync(t *testing.T) {
	f := &fakeCerts{}
	p := newTestProxy(t, Options{Certificates: f}, nil)
	b := newBackend(t, "b")
	acme := tlsHost("a.test", &routing.TLS{ACME: true}, addr(b), "www.a.test")
	mustApply(t, p, tableOf(
		acme,
		tlsHost("z.test", &routing.TLS{ACME: true, Only: true}, addr(b)),
		tlsHost("own.test", &routing.TLS{CertFile: "c.pem", KeyFile: "k.pem"}, addr(b)),
		tlsHost("pass.test", &routing.TLS{Passthrough: true}, addr(b)),
		tlsHost("tls.test", &routing.TLS{}, addr(b)),
		hostOf("plain.test", routeOf("/", addr(b))),
	))
	if got, want := f.lastSync(), []string{"a.test", "www.a.test", "z.test"}; !slices.Equal(got, want) {
		t.Errorf("Sync(%v), want %v", got, want)
	}
	mustApply(t, p, tableOf(acme))
	if got, want := f.lastSync(), []string{"a.test", "www.a.test"}; !slices.Equal(got, want) {
		t.Errorf("after z.test left: Sync(%v), want %v", got, want)
	}
	mustApply(t, p, tableOf())
	if got := f.lastSync(); len(got) != 0 {
		t.Errorf("empty table: Sync(%v), want no names", got)
	}
}

// TestACMEHTTPChallenge: a plain HTTP-01 request for an ACME host is
// answered by the certificate source before the ssl_only redirect and
// before routing; the same path of a host without ACME goes to its
// backend (which may solve its own challenges), and so does a request
// the source does not know.
func TestACMEHTTPChallenge(t *testing.T) {
	f := &fakeCerts{token: "tok-123"}
	p := newTestProxy(t, Options{Certificates: f}, nil)
	b := newBackend(t, "backend")
	mustApply(t, p, tableOf(
		tlsHost("acme.test", &routing.TLS{ACME: true, Only: true}, addr(b), "alias.acme.test"),
		tlsHost("other.test", &routing.TLS{}, addr(b)),
	))
	srv := serve(t, p)
	// Redirects are looked at, never followed (that would look the name up).
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(t *testing.T, srv *httptest.Server, host, target string) response {
		t.Helper()
		return do(t, noFollow, srv, http.MethodGet, host, target, nil, nil)
	}
	for _, host := range []string{"acme.test", "alias.acme.test", "ACME.test:80"} {
		res := get(t, srv, host, acmeChallengePrefix+"tok-123")
		if res.status != http.StatusOK || res.body != "tok-123.keyauth" {
			t.Errorf("%s: challenge answered %d %q, want 200 with the key authorization", host, res.status, res.body)
		}
	}
	// Not the source's token: the ssl_only redirect, as for any request.
	if res := get(t, srv, "acme.test", acmeChallengePrefix+"other"); res.status != http.StatusMovedPermanently {
		t.Errorf("unknown token: %d, want the ssl_only redirect", res.status)
	}
	// A host without ACME: its backend answers.
	if res := get(t, srv, "other.test", acmeChallengePrefix+"tok-123"); res.status != http.StatusOK || res.echo.Backend != "backend" {
		t.Errorf("host without ACME: %d %+v, want its backend", res.status, res.echo)
	}
	// An unknown host: 404, never the source.
	if res := get(t, srv, "unknown.test", acmeChallengePrefix+"tok-123"); res.status != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", res.status)
	}
	// Over TLS, challenges are not HTTP-01's: the request is routed.
	c := httpsClient(t, serveTLS(t, p), nil, false)
	c.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // the default certificate
	if res := doTLS(t, c, http.MethodGet, "https://acme.test"+acmeChallengePrefix+"tok-123"); res.status != http.StatusOK || res.echo.Backend != "backend" {
		t.Errorf("over TLS: %d %q, want the backend", res.status, res.body)
	}
}

// TestACMECertificates: an ACME host gets the source's certificate by SNI,
// a label certificate still comes first, other names get the default
// certificate, and a source with no certificate (yet) means the default
// one. A TLS-ALPN-01 hello (acme-tls/1 only) for an ACME host gets the
// source's challenge certificate and the acme-tls/1 protocol, even with a
// passthrough host on the listener: only passthrough names are diverted.
func TestACMECertificates(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	f := &fakeCerts{
		cert:      pairOf(t, ca, "acme.test", "www.acme.test"),
		challenge: pairOf(t, ca, "challenge.invalid"),
		failures:  map[string]error{"late.test": errors.New("not issued yet")},
	}
	p := newTestProxy(t, Options{Certificates: f, CertDir: dir}, nil)
	b := newBackend(t, "b")
	passBackend := passthroughBackend(t, newTestCA(t), "pass.test", "pass")
	mustApply(t, p, tableOf(
		tlsHost("acme.test", &routing.TLS{ACME: true}, addr(b), "www.acme.test"),
		tlsHost("late.test", &routing.TLS{ACME: true}, addr(b)),
		tlsHost("own.test", ca.writePair(t, dir, "own", leafSpec{names: []string{"own.test"}}), addr(b)),
		tlsHost("tls.test", &routing.TLS{}, addr(b)),
		tlsHost("pass.test", &routing.TLS{Passthrough: true}, passBackend),
	))
	tlsAddr := serveTLS(t, p)

	for _, name := range []string{"acme.test", "www.acme.test"} {
		if leaf := mustLeaf(t, tlsAddr, name, ca.pool); !slices.Equal(leaf.DNSNames, []string{"acme.test", "www.acme.test"}) {
			t.Errorf("%s: served %v, want the ACME certificate", name, leaf.DNSNames)
		}
	}
	if leaf := mustLeaf(t, tlsAddr, "own.test", ca.pool); !slices.Equal(leaf.DNSNames, []string{"own.test"}) {
		t.Errorf("own.test: served %v, want its label certificate", leaf.DNSNames)
	}
	for _, name := range []string{"late.test", "tls.test", "unknown.test"} {
		if leaf := mustLeaf(t, tlsAddr, name, nil); !isDefaultCert(leaf) {
			t.Errorf("%s: served %v, want the default certificate", name, leaf.DNSNames)
		}
	}
	f.mu.Lock()
	asked := slices.Clone(f.asked)
	f.mu.Unlock()
	for _, n := range asked {
		if n != "acme.test" && n != "www.acme.test" && n != "late.test" {
			t.Errorf("the source was asked about %q, which is no ACME host's", n)
		}
	}

	alpn := func(c *tls.Config) { c.NextProtos = []string{acmeTLS1} }
	leaf, st, err := handshake(tlsAddr, "acme.test", nil, alpn)
	if err != nil {
		t.Fatalf("acme-tls/1 handshake: %v", err)
	}
	if st.NegotiatedProtocol != acmeTLS1 || !slices.Equal(leaf.DNSNames, []string{"challenge.invalid"}) {
		t.Errorf("acme-tls/1 handshake: protocol %q, certificate %v; want acme-tls/1 and the challenge certificate", st.NegotiatedProtocol, leaf.DNSNames)
	}
	// A passthrough host's own TLS-ALPN challenge goes to its backend,
	// which offers no acme-tls/1 here: the handshake fails there, not in
	// the proxy, and the proxy's challenge certificate never shows.
	if leaf, _, err := handshake(tlsAddr, "pass.test", nil, alpn); err == nil && slices.Equal(leaf.DNSNames, []string{"challenge.invalid"}) {
		t.Error("a passthrough host's acme-tls/1 hello got the proxy's challenge certificate")
	}
	// Ordinary clients still get h2.
	if _, st, err := handshake(tlsAddr, "acme.test", ca.pool, func(c *tls.Config) { c.NextProtos = []string{"h2", "http/1.1"} }); err != nil || st.NegotiatedProtocol != "h2" {
		t.Errorf("h2 handshake: %q, %v", st.NegotiatedProtocol, err)
	}
}

// TestACMEProblems: without a certificate source every ACME host is a
// problem (acme_off) and a warning; with one, each name whose issuance
// failed is (acme_failed), next to the certificate file problems, and
// gone once it recovers.
func TestACMEProblems(t *testing.T) {
	b := newBackend(t, "b")
	tbl := tableOf(
		tlsHost("acme.test", &routing.TLS{ACME: true}, "127.0.0.1:1", "www.acme.test"),
		tlsHost("bad.test", &routing.TLS{CertFile: "missing.pem", KeyFile: "missing.key"}, addr(b)),
	)

	logs := &syncBuffer{}
	off := newTestProxy(t, Options{CertDir: t.TempDir()}, logs)
	mustApply(t, off, tbl)
	probs := off.CertProblems()
	if len(probs) != 2 || probs[0].Host != "acme.test" || probs[0].Reason != CertACMEOff || probs[1].Reason != CertMissing {
		t.Fatalf("CertProblems = %+v, want acme_off for acme.test and missing for bad.test", probs)
	}
	mustApply(t, off, tbl)
	if n := len(logs.lines("ACME is off")); n != 1 {
		t.Errorf("%d warnings that ACME is off over two equal Applies, want 1:\n%s", n, logs)
	}

	f := &fakeCerts{failures: map[string]error{"www.acme.test": errors.New("urn:ietf:params:acme:error:connection: refused")}}
	on := newTestProxy(t, Options{Certificates: f, CertDir: t.TempDir()}, nil)
	mustApply(t, on, tbl)
	probs = on.CertProblems()
	if len(probs) != 2 || probs[0].Host != "acme.test" || probs[0].Reason != CertACMEFailed ||
		!strings.Contains(probs[0].Message, "www.acme.test") || !strings.Contains(probs[0].Message, "refused") {
		t.Fatalf("CertProblems = %+v, want acme_failed for www.acme.test, then bad.test's", probs)
	}
	f.mu.Lock()
	f.failures = nil
	f.mu.Unlock()
	if probs := on.CertProblems(); len(probs) != 1 || probs[0].Host != "bad.test" {
		t.Errorf("after recovery: CertProblems = %+v, want only bad.test's", probs)
	}
}
