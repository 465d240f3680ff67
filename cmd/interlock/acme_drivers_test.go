package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestDriverACME runs `interlock run --proxy nginx|haproxy --acme-hosts
// labelled` against a real Pebble, with real containers and a real
// supervised nginx or HAProxy: Pebble validates HTTP-01 through the
// proxy's plain listener, which passes /.well-known/acme-challenge/ of
// the ACME host to Interlock's responder, before the ssl_only redirect.
// Each name of the host (an alias too) gets its own certificate, which
// Interlock exports as a file and the proxy is reloaded to serve: the
// table does not change when a certificate is issued, so only the
// driver's Refresh puts it live. The TLS host without the label keeps the
// default certificate and Pebble never hears of it.
func TestDriverACME(t *testing.T) {
	e := needDocker(t)
	for _, driver := range []string{"nginx", "haproxy"} {
		t.Run(driver, func(t *testing.T) {
			httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
			pb := testenv.StartPebble(t, httpPort, httpsPort)
			root := filepath.Join(t.TempDir(), "pebble-listener.pem")
			if err := os.WriteFile(root, pb.RootPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			httpAddr, httpsAddr := fmt.Sprintf("127.0.0.1:%d", httpPort), fmt.Sprintf("127.0.0.1:%d", httpsPort)
			acmeHost, alias, otherHost := hostFor(t, "acme"), hostFor(t, "www"), hostFor(t, "noacme")
			acmeLabels := labelsFor(acmeHost, "interlock.ssl_acme", "true", "interlock.ssl_only", "true", "interlock.alias_domain", alias)
			otherLabels := labelsFor(otherHost, "interlock.ssl", "true")
			var args []string
			var stateDir string
			switch driver {
			case "nginx":
				n := newNginxRun(t)
				args, stateDir = n.args(), n.stateDir
				e.Run(t, testenv.ContainerSpec{Name: "acme", PublishPort: 8000, Env: map[string]string{"NAME": "acme"}, Labels: acmeLabels})
				e.Run(t, testenv.ContainerSpec{Name: "noacme", PublishPort: 8000, Env: map[string]string{"NAME": "noacme"}, Labels: otherLabels})
			case "haproxy":
				h := newHAProxyRun(t, e)
				args, stateDir = h.args(), h.stateDir
				h.container(t, e, "acme", acmeLabels, nil)
				h.container(t, e, "noacme", otherLabels, nil)
			}
			in := startInterlock(t, append(args, "--http-addr", httpAddr, "--https-addr", httpsAddr,
				"--acme-hosts", "labelled", "--acme-ca", pb.Dir, "--acme-ca-root", root,
				"--acme-email", "ops@example.com", "--acme-storage", t.TempDir(),
				"--acme-challenge-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))...)

			issuing := pb.IssuingRoot(t)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, httpsAddr)
				},
				TLSClientConfig:   &tls.Config{RootCAs: issuing},
				ForceAttemptHTTP2: true,
			}}
			defer client.CloseIdleConnections()
			for _, name := range []string{acmeHost, alias} {
				testenv.WaitFor(t, 90*time.Second, name+" over HTTPS with a certificate from Pebble", func() error {
					res, err := client.Get("https://" + name + "/")
					if err != nil {
						return err
					}
					defer res.Body.Close()
					io.Copy(io.Discard, res.Body)
					if res.StatusCode != http.StatusOK || res.Header.Get("X-Backend") != "acme" {
						return fmt.Errorf("%s %d from %q", res.Proto, res.StatusCode, res.Header.Get("X-Backend"))
					}
					if leaf := res.TLS.PeerCertificates[0]; !slices.Equal(leaf.DNSNames, []string{name}) {
						return fmt.Errorf("certificate for %v", leaf.DNSNames)
					}
					return nil
				})
				file := filepath.Join(stateDir, driver, "acme", name+".pem")
				if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("exported certificate %s: %v, %v; want mode 0600", file, fi, err)
				}
			}

			// Plain HTTP: ssl_only still redirects, but the challenge path
			// reaches Interlock's responder, which knows no such token.
			noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			defer noRedirect.CloseIdleConnections()
			for _, tc := range []struct {
				path string
				code int
				body string
			}{
				{"/", http.StatusMovedPermanently, ""},
				{"/.well-known/acme-challenge/no-such-token", http.StatusNotFound, "no ACME challenge pending"},
			} {
				req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+tc.path, nil)
				req.Host = acmeHost
				res, err := noRedirect.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tc.code || !strings.Contains(string(body), tc.body) {
					t.Errorf("http://%s%s: %d %q, want %d %q", acmeHost, tc.path, res.StatusCode, body, tc.code, tc.body)
				}
			}

			conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: otherHost, InsecureSkipVerify: true}) //nolint:gosec // looking at the default certificate
			if err != nil {
				t.Fatal(err)
			}
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: issuing, DNSName: otherHost}); err == nil {
				t.Errorf("%s (no ssl_acme) served a certificate from Pebble: %v", otherHost, leaf.DNSNames)
			}
			if strings.Contains(pb.Log.String(), otherHost) {
				t.Errorf("pebble heard of %s, which did not opt in", otherHost)
			}
			if n := pb.Orders(); n != 2 {
				t.Errorf("pebble saw %d orders, want 2 (the host and its alias)", n)
			}
			if !strings.Contains(in.logs.String(), "ACME certificates exported for the proxy") {
				t.Errorf("no export in the log:\n%s", in.logs)
			}
		})
	}
}

// TestDriverCertRotation: nginx and HAProxy serve a label certificate
// that is rewritten in the certificate directory without a restart or a
// Docker change; a broken certificate gives the host the default one,
// reported in /api/status and interlock_certificate_problems, and a
// repaired one is served again.
func TestDriverCertRotation(t *testing.T) {
	e := needDocker(t)
	for _, driver := range []string{"nginx", "haproxy"} {
		t.Run(driver, func(t *testing.T) {
			name := hostFor(t, "rotate")
			lbls := labelsFor(name, "interlock.ssl", "true", "interlock.ssl_cert", "rot/cert.pem", "interlock.ssl_cert_key", "rot/key.pem")
			var args []string
			var certDir, httpsAddr string
			switch driver {
			case "nginx":
				n := newNginxRun(t)
				args, certDir, httpsAddr = n.args(), n.certDir, n.httpsAddr
				e.Run(t, testenv.ContainerSpec{Name: "rot", PublishPort: 8000, Env: map[string]string{"NAME": "rot"}, Labels: lbls})
			case "haproxy":
				h := newHAProxyRun(t, e)
				args, certDir, httpsAddr = h.args(), h.certDir, h.httpsAddr
				h.container(t, e, "rot", lbls, nil)
			}
			writeCert(t, certDir, "rot", name)
			in := startInterlock(t, args...)
			served := func() []byte {
				conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // comparing certificates
				if err != nil {
					return nil
				}
				defer conn.Close()
				return conn.ConnectionState().PeerCertificates[0].Raw
			}
			fileCert := func() []byte {
				data, err := os.ReadFile(filepath.Join(certDir, "rot", "cert.pem"))
				if err != nil {
					t.Fatal(err)
				}
				pair, err := tls.X509KeyPair(data, mustRead(t, filepath.Join(certDir, "rot", "key.pem")))
				if err != nil {
					t.Fatal(err)
				}
				return pair.Certificate[0]
			}
			waitServed := func(what string, want func([]byte) bool) {
				t.Helper()
				testenv.WaitFor(t, 20*time.Second, what, func() error {
					if got := served(); !want(got) {
						return fmt.Errorf("served %d bytes of another certificate", len(got))
					}
					return nil
				})
			}
			first := fileCert()
			waitServed("the label certificate", func(b []byte) bool { return bytes.Equal(b, first) })

			writeCert(t, certDir, "rot", name) // renewed: a new key and certificate
			second := fileCert()
			waitServed("the renewed certificate, without a Docker change", func(b []byte) bool { return bytes.Equal(b, second) })

			if err := os.WriteFile(filepath.Join(certDir, "rot", "cert.pem"), []byte("not a certificate\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			waitServed("the default certificate for a broken file", func(b []byte) bool {
				c, err := x509.ParseCertificate(b)
				return err == nil && slices.Equal(c.DNSNames, []string{"interlock-default.invalid"})
			})
			testenv.WaitFor(t, 10*time.Second, "the broken certificate in /api/status", func() error {
				_, body, err := httpGet(in.api+"/api/status", "")
				if err != nil {
					return err
				}
				var st api.StatusResponse
				if err := json.Unmarshal([]byte(body), &st); err != nil {
					return err
				}
				for _, p := range st.CertificateProblems {
					if p.Host == name && p.Reason == "not_pem" && p.Path == "rot/cert.pem" {
						return nil
					}
				}
				return fmt.Errorf("certificate_problems = %+v", st.CertificateProblems)
			})
			if v, ok := sample(in.scrape(t), "interlock_certificate_problems", labels("host", name, "reason", "not_pem")); !ok || v != 1 {
				t.Errorf("interlock_certificate_problems{host=%q,reason=not_pem} = %v (found %v), want 1", name, v, ok)
			}
			writeCert(t, certDir, "rot", name)
			third := fileCert()
			waitServed("the repaired certificate", func(b []byte) bool { return bytes.Equal(b, third) })
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
