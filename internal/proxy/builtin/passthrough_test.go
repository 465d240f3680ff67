package builtin

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// passthroughBackend is a backend that terminates TLS itself, with a
// certificate for name from ca, and answers with its own name.
func passthroughBackend(t *testing.T, ca *testCA, name, backendName string) string {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, leafSpec{names: []string{name}})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s saw %s %s tls=%v", backendName, r.Host, r.URL.Path, r.TLS != nil)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestTLSPassthrough: a passthrough host's TLS connections reach its
// backends untouched (the client sees the backend's certificate, and the
// backend sees TLS), with a refused backend skipped; other hosts on the
// same listener are still terminated by the proxy; plain HTTP to a
// passthrough host is redirected to HTTPS; and a connection that is not
// TLS still gets the TLS server's own answer.
func TestTLSPassthrough(t *testing.T) {
	proxyCA, backendCA := newTestCA(t), newTestCA(t)
	dir := t.TempDir()
	live1 := passthroughBackend(t, backendCA, "pass.test", "b1")
	live2 := passthroughBackend(t, backendCA, "pass.test", "b2")
	terminated := newBackend(t, "terminated")
	pass := hostOf("pass.test", routeOf("/", deadAddr(t), live1, live2))
	pass.Aliases = []string{"alias.pass.test"}
	pass.TLS = &routing.TLS{Passthrough: true}
	p := newTestProxy(t, Options{CertDir: dir}, nil)
	mustApply(t, p, tableOf(pass, tlsHost("own.test", proxyCA.writePair(t, dir, "own", leafSpec{names: []string{"own.test"}}), addr(terminated))))
	tlsAddr := serveTLS(t, p)

	seen := map[string]bool{}
	for i := range 6 {
		name := []string{"pass.test", "alias.pass.test"}[i%2]
		c := httpsClient(t, tlsAddr, backendCA.pool, false)
		c.Transport.(*http.Transport).TLSClientConfig.ServerName = "pass.test" // the backend's certificate names pass.test only
		req, _ := http.NewRequest(http.MethodGet, "https://"+name+"/x", nil)
		if name != "pass.test" {
			// The SNI names the alias: dial it by that name.
			c.Transport.(*http.Transport).TLSClientConfig.ServerName = ""
			c.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // checked below by the leaf's issuer
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET https://%s/x: %v", name, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if issuer := res.TLS.PeerCertificates[0].Issuer.CommonName; !strings.Contains(string(b), "tls=true") ||
			!slices.Equal(res.TLS.PeerCertificates[0].DNSNames, []string{"pass.test"}) {
			t.Fatalf("%s: answer %q from certificate %v issued by %q; want the backend's own TLS", name, b, res.TLS.PeerCertificates[0].DNSNames, issuer)
		}
		seen[strings.Fields(string(b))[0]] = true
	}
	if !seen["b1"] || !seen["b2"] {
		t.Errorf("backends that answered: %v; want both live ones, the refused one skipped", seen)
	}

	// The proxy still terminates its own hosts on the same listener.
	if leaf := mustLeaf(t, tlsAddr, "own.test", proxyCA.pool); !slices.Equal(leaf.DNSNames, []string{"own.test"}) {
		t.Errorf("own.test got the certificate for %v", leaf.DNSNames)
	}
	if r := doTLS(t, httpsClient(t, tlsAddr, proxyCA.pool, true), http.MethodGet, "https://own.test/"); r.status != 200 || r.echo.Backend != "terminated" || r.proto != "HTTP/2.0" {
		t.Errorf("own.test over TLS: %d %s from %q", r.status, r.proto, r.echo.Backend)
	}

	// Plain HTTP to a passthrough host goes to HTTPS.
	plain := serve(t, p)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if r := do(t, noFollow, plain, http.MethodGet, "pass.test", "/a?b=1", nil, nil); r.status != http.StatusMovedPermanently || r.header.Get("Location") != "https://pass.test:"+portOf(tlsAddr)+"/a?b=1" {
		t.Errorf("plain GET to pass.test: %d Location %q", r.status, r.header.Get("Location"))
	}

	// Not TLS at all: the TLS server answers as it would without
	// passthrough.
	conn, err := net.DialTimeout("tcp", tlsAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.0 400") {
		t.Errorf("plain HTTP to the TLS port: %q, want net/http's 400", line)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
