package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestBuiltinHTTPS runs a real container labelled for TLS (interlock.ssl,
// ssl_only, ssl_cert, ssl_cert_key with files in --cert-dir) and reaches it
// over HTTPS through the built-in proxy: the host's own certificate,
// HTTP/2, the scheme told to the backend, HSTS; plain HTTP is redirected.
func TestBuiltinHTTPS(t *testing.T) {
	e := needDocker(t)
	host := hostFor(t, "secure")
	certDir := t.TempDir()
	roots := writeHostCert(t, certDir, "secure", host)
	in := startInterlock(t, "--cert-dir", certDir, "--hsts-max-age", "1h")
	e.Run(t, testenv.ContainerSpec{Name: "secure", PublishPort: 8000, Env: map[string]string{"NAME": "secure"},
		Labels: labelsFor(host, "interlock.ssl", "true", "interlock.ssl_only", "true",
			"interlock.ssl_cert", "secure/cert.pem", "interlock.ssl_cert_key", "secure/key.pem")})

	// Plain HTTP: a permanent redirect to the HTTPS listener's port.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	_, httpsPort, _ := net.SplitHostPort(in.httpsAddr)
	want := "https://" + host + ":" + httpsPort + "/some/path?q=1"
	testenv.WaitFor(t, 15*time.Second, "plain HTTP redirected to HTTPS", func() error {
		req, _ := http.NewRequest(http.MethodGet, in.proxy+"/some/path?q=1", nil)
		req.Host = host
		res, err := noFollow.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != want {
			return fmt.Errorf("%d Location %q, want 301 %q", res.StatusCode, res.Header.Get("Location"), want)
		}
		return nil
	})
	req, _ := http.NewRequest(http.MethodPost, in.proxy+"/form", nil)
	req.Host = host
	if res, err := noFollow.Do(req); err != nil || res.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("POST over plain HTTP: %v %v, want 308", err, res)
	} else {
		res.Body.Close()
	}

	// HTTPS, verified against the test CA, by name, over HTTP/2.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, in.httpsAddr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}}
	res, err := client.Get(want)
	if err != nil {
		t.Fatalf("GET %s: %v", want, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Backend") != "secure" {
		t.Fatalf("GET %s: %d from %q: %s", want, res.StatusCode, res.Header.Get("X-Backend"), body)
	}
	if res.Proto != "HTTP/2.0" {
		t.Errorf("protocol %s, want HTTP/2.0", res.Proto)
	}
	if got := res.TLS.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != host {
		t.Errorf("certificate for %v, want %s", got, host)
	}
	if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=3600" {
		t.Errorf("HSTS %q, want max-age=3600", got)
	}
	var reply struct {
		Path    string            `json:"path"`
		Query   string            `json:"query"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if reply.Path != "/some/path" || reply.Query != "q=1" || reply.Headers["X-Forwarded-Proto"] != "https" {
		t.Errorf("backend saw %+v, want /some/path?q=1 with X-Forwarded-Proto https", reply)
	}
	// A name no certificate serves gets the default certificate.
	conn, err := tls.Dial("tcp", in.httpsAddr, &tls.Config{ServerName: "unknown.test", InsecureSkipVerify: true}) //nolint:gosec // inspecting the default certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "interlock-default.invalid" {
		t.Errorf("unknown name got a certificate for %q, want the default one", got)
	}
}

// writeHostCert writes NAME/cert.pem and NAME/key.pem under dir, a
// certificate for host from a new CA, and returns a pool trusting the CA.
func writeHostCert(t *testing.T, dir, name, host string) *x509.CertPool {
	t.Helper()
	certPEM, keyPEM, pool := issueHostCert(t, host)
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pool
}

// issueHostCert returns a certificate and key (PEM) for host from a new
// CA, and a pool trusting the CA.
func issueHostCert(t *testing.T, host string) (certPEM, keyPEM []byte, roots *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interlock https test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}

// TestBuiltinHTTPSCertFiles: a container names certificate files that do
// not exist yet; its host gets the default certificate, /api/status and
// /metrics say why, and another TLS host keeps its own. The files then
// appear, and are later replaced, with no change in Docker: the running
// Interlock serves each new certificate within a few seconds.
func TestBuiltinHTTPSCertFiles(t *testing.T) {
	e := needDocker(t)
	good, late := hostFor(t, "good"), hostFor(t, "late")
	certDir := t.TempDir()
	goodRoots := writeHostCert(t, certDir, "good", good)
	in := startInterlock(t, "--cert-dir", certDir)
	for _, c := range []struct{ name, host string }{{"good", good}, {"late", late}} {
		e.Run(t, testenv.ContainerSpec{Name: c.name, PublishPort: 8000,
			Labels: labelsFor(c.host, "interlock.ssl", "true",
				"interlock.ssl_cert", c.name+"/cert.pem", "interlock.ssl_cert_key", c.name+"/key.pem")})
	}
	leaf := func(name string, roots *x509.CertPool) (*x509.Certificate, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", in.httpsAddr,
			&tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil}) //nolint:gosec // nil: inspecting the default certificate
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	testenv.WaitFor(t, 20*time.Second, "the missing certificate reported in /api/status", func() error {
		var s struct {
			Problems []struct{ Host, Path, Reason string } `json:"certificate_problems"`
		}
		_, body := in.status(t)
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			return err
		}
		if len(s.Problems) != 1 || s.Problems[0].Host != late || s.Problems[0].Reason != "missing" || s.Problems[0].Path != "late/cert.pem" {
			return fmt.Errorf("certificate_problems = %+v", s.Problems)
		}
		return nil
	})
	if v, ok := sample(in.scrape(t), "interlock_certificate_problems", labels("host", late, "reason", "missing")); !ok || v != 1 {
		t.Errorf("interlock_certificate_problems{host=%q,reason=missing} = %v (found %v), want 1", late, v, ok)
	}
	if c, err := leaf(late, nil); err != nil || c.Subject.CommonName != "interlock-default.invalid" {
		t.Errorf("the host without its files: %v, %v; want the default certificate", c, err)
	}
	if _, err := leaf(good, goodRoots); err != nil {
		t.Errorf("the other TLS host: %v", err)
	}

	for round := range 2 { // the files appear, then are replaced
		roots := writeHostCert(t, certDir, "late", late)
		testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("round %d: the new certificate served without a Docker change", round), func() error {
			_, err := leaf(late, roots)
			return err
		})
	}
	var after struct {
		Problems []json.RawMessage `json:"certificate_problems"`
	}
	_, body := in.status(t)
	if err := json.Unmarshal([]byte(body), &after); err != nil || after.Problems == nil || len(after.Problems) != 0 {
		t.Errorf("certificate_problems after the files appeared: %v %s", err, body)
	}
}
