package feed

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// placed are one side's feed files at fixed paths, which a rotation
// overwrites.
type placed struct{ ca, cert, key string }

func place(t *testing.T, dir string, p *testenv.PKI, server bool) placed {
	t.Helper()
	pl := placed{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cert, key := p.Cert, p.Key
	if server {
		cert, key = p.ServerCert, p.ServerKey
	}
	for dst, src := range map[string]string{pl.ca: p.CA, pl.cert: cert, pl.key: key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pl
}

func certDER(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	return blk.Bytes
}

// TestFeedCertificateRotation: the operator replaces the CA and both
// sides' certificates in place. The controller's next handshake uses the
// new files, the edge closes the connection it holds and reconnects with
// its new ones, and the feed goes on; a client of the old CA is refused
// from then on. A rotation that leaves a broken file keeps the last good
// set.
func TestFeedCertificateRotation(t *testing.T) {
	a, b := testenv.NewPKI(t), testenv.NewPKI(t)
	dir := t.TempDir()
	srvFiles, cliFiles := place(t, filepath.Join(dir, "controller"), a, true), place(t, filepath.Join(dir, "edge"), a, false)
	sf, err := LoadTLSFiles(srvFiles.ca, srvFiles.cert, srvFiles.key, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := LoadTLSFiles(cliFiles.ca, cliFiles.cert, cliFiles.key, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerOptions{Logger: quiet})
	_ = srv.Apply(context.Background(), table("a.example"))
	// Which client certificate each poll came with.
	var mu sync.Mutex
	var seen [][]byte
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.TLS.PeerCertificates[0].Raw)
		mu.Unlock()
		srv.ServeHTTP(w, r)
	}), sf.ServerConfig())
	lastSeen := func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}
	f := follow(t, ClientOptions{Controllers: []string{url}, Files: cf, Wait: 300 * time.Millisecond})
	f.next(t, 5*time.Second)
	if !bytes.Equal(lastSeen(), certDER(t, a.Cert)) {
		t.Fatal("the first poll did not come with the first client certificate")
	}

	// Rotate both sides to CA b.
	time.Sleep(tlsCheckEvery) // a new modification time and a due look
	place(t, filepath.Join(dir, "controller"), b, true)
	place(t, filepath.Join(dir, "edge"), b, false)
	waitFor(t, func() bool { return bytes.Equal(lastSeen(), certDER(t, b.Cert)) })
	_ = srv.Apply(context.Background(), table("a.example", "b.example"))
	if got, want := f.next(t, 5*time.Second), table("a.example", "b.example").Hash(); got != want {
		t.Fatalf("after the rotation applied %s, want %s", short(got), short(want))
	}
	if st := f.c.Status(); !st.Following {
		t.Errorf("status after the rotation %+v; want following", st)
	}
	// The old CA's client is refused now, the new one's accepted.
	for _, tc := range []struct {
		name string
		p    *testenv.PKI
		ok   bool
	}{{"old CA", a, false}, {"new CA", b, true}} {
		cfg, err := ClientTLS(tc.p.CA, tc.p.Cert, tc.p.Key)
		if err != nil {
			t.Fatal(err)
		}
		if tc.p == a {
			cfg.RootCAs = mustPool(t, b.CA) // it trusts the new controller, the controller does not trust it
		}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		res, err := c.Get(url + Path)
		if err == nil {
			res.Body.Close()
		}
		c.CloseIdleConnections()
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v; want ok=%v", tc.name, err, tc.ok)
		}
	}

	// A broken key: the last good set stays in use, on both sides.
	time.Sleep(tlsCheckEvery)
	for _, p := range []string{srvFiles.key, cliFiles.key} {
		if err := os.WriteFile(p, []byte("not a key"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(tlsCheckEvery)
	_ = srv.Apply(context.Background(), table("c.example"))
	if got := f.next(t, 5*time.Second); got != table("c.example").Hash() {
		t.Fatalf("with a broken key file applied %s", short(got))
	}
	if _, pair, _ := cf.current(); !bytes.Equal(pair.Certificate[0], certDER(t, b.Cert)) {
		t.Error("the edge dropped its last good certificate for a broken file")
	}
}

func mustPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return pool
}
