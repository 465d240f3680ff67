package main

import (
	"context"
	"crypto/tls"
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

// TestBuiltinACME runs `interlock run --acme-hosts labelled` against a real
// Pebble, with real containers: the one labelled interlock.ssl_acme=true
// (and ssl_only) gets a certificate issued by Pebble, validated through
// the proxy's own listeners, and serves HTTPS with it; the TLS container
// without the label keeps the default certificate, and Pebble never hears
// of it. The API shows the host as ACME and no certificate problem.
func TestBuiltinACME(t *testing.T) {
	e := needDocker(t)
	httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
	pb := testenv.StartPebble(t, httpPort, httpsPort)
	root := filepath.Join(t.TempDir(), "pebble-listener.pem")
	if err := os.WriteFile(root, pb.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, httpsAddr := fmt.Sprintf("127.0.0.1:%d", httpPort), fmt.Sprintf("127.0.0.1:%d", httpsPort)
	in := startInterlock(t, "--http-addr", httpAddr, "--https-addr", httpsAddr,
		"--acme-hosts", "labelled", "--acme-ca", pb.Dir, "--acme-ca-root", root,
		"--acme-email", "ops@example.com", "--acme-storage", t.TempDir())
	acmeHost, otherHost := hostFor(t, "acme"), hostFor(t, "noacme")
	e.Run(t, testenv.ContainerSpec{Name: "acme", PublishPort: 8000, Env: map[string]string{"NAME": "acme"},
		Labels: labelsFor(acmeHost, "interlock.ssl_acme", "true", "interlock.ssl_only", "true")})
	e.Run(t, testenv.ContainerSpec{Name: "noacme", PublishPort: 8000, Env: map[string]string{"NAME": "noacme"},
		Labels: labelsFor(otherHost, "interlock.ssl", "true")})

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
	testenv.WaitFor(t, 90*time.Second, "HTTPS with a certificate from Pebble", func() error {
		res, err := client.Get("https://" + acmeHost + "/")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		io.Copy(io.Discard, res.Body)
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Backend") != "acme" || res.ProtoMajor != 2 {
			return fmt.Errorf("%s %d from %q", res.Proto, res.StatusCode, res.Header.Get("X-Backend"))
		}
		return nil
	})

	conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: otherHost, InsecureSkipVerify: true}) //nolint:gosec // looking at the default certificate
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if !slices.Equal(leaf.DNSNames, []string{"interlock-default.invalid"}) {
		t.Errorf("%s (no ssl_acme) served %v, want the default certificate", otherHost, leaf.DNSNames)
	}
	if strings.Contains(pb.Log.String(), otherHost) {
		t.Errorf("pebble heard of %s, which did not opt in", otherHost)
	}
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders, want 1", n)
	}

	seen := 0
	for _, h := range in.routes(t).Hosts {
		if h.Name != acmeHost && h.Name != otherHost {
			continue // other tests' containers on the shared engine
		}
		seen++
		if want := h.Name == acmeHost; h.TLS == nil || h.TLS.ACME != want {
			t.Errorf("route %s: TLS %+v, want ACME %v", h.Name, h.TLS, want)
		}
	}
	if seen != 2 {
		t.Errorf("routes show %d of the two hosts", seen)
	}
	_, body, err := httpGet(in.api+"/api/status", "")
	if err != nil {
		t.Fatal(err)
	}
	var st api.StatusResponse
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.CertificateProblems {
		if p.Host == acmeHost || p.Host == otherHost {
			t.Errorf("certificate problem: %+v", p)
		}
	}
}
