package builtin

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatchCertsRotatesUnderLoad: certificate files rewritten on disk,
// with no change in the table, reach new handshakes through WatchCerts,
// while clients that open a new TLS connection per request all succeed,
// including between the certificate's and the key's rewrite (the host
// keeps its old certificate meanwhile); a certificate that stays broken is
// reported once the grace period ends, and an unchanged one is not
// re-read.
func TestWatchCertsRotatesUnderLoad(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	be := newBackend(t, "app")
	tl := ca.writePair(t, dir, "a", leafSpec{names: []string{"a.test"}, serial: 2001})
	logs := &syncBuffer{}
	p := newTestProxy(t, Options{CertDir: dir}, logs)
	mustApply(t, p, tableOf(tlsHost("a.test", tl, addr(be))))
	srv := serveTLS(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.WatchCerts(ctx, 20*time.Millisecond)

	var (
		total, failed atomic.Int64
		seen          sync.Map // serial -> true
		firstErr      atomic.Value
		wg            sync.WaitGroup
	)
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: ca.pool}, DisableKeepAlives: true,
					DialContext: (&netDialer{addr: srv}).dial}
				c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				res, err := c.Get("https://a.test/")
				total.Add(1)
				if err != nil || res.StatusCode != 200 {
					failed.Add(1)
					if err != nil {
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				seen.Store(res.TLS.PeerCertificates[0].SerialNumber.Int64(), true)
				res.Body.Close()
			}
		})
	}
	for serial := int64(2002); serial <= 2006; serial++ {
		time.Sleep(150 * time.Millisecond)
		c, k := ca.issue(t, leafSpec{names: []string{"a.test"}, serial: serial})
		// One file, a poll or two, then the other: a renewal tool's order.
		writeFile(t, dir, "a/cert.pem", c)
		time.Sleep(60 * time.Millisecond)
		writeFile(t, dir, "a/key.pem", k)
	}
	waitUntil(t, 5*time.Second, "the last certificate served", func() bool {
		return mustLeaf(t, srv, "a.test", ca.pool).SerialNumber.Int64() == 2006
	})
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during 5 rotations; first: %v", n, total.Load(), firstErr.Load())
	}
	if total.Load() < 20 {
		t.Errorf("only %d requests during the rotations", total.Load())
	}
	if len(p.CertProblems()) != 0 {
		t.Errorf("problems after the rotations: %v", p.CertProblems())
	}
	if _, ok := seen.Load(int64(2001)); !ok {
		t.Error("the first certificate was never served")
	}

	// Unchanged files: no reload, nothing re-read.
	loaded := len(logs.lines("certificate loaded"))
	if p.RefreshCerts() {
		t.Error("RefreshCerts changed something for unchanged files")
	}
	if n := len(logs.lines("certificate loaded")); n != loaded {
		t.Errorf("unchanged files read again (%d -> %d loads)", loaded, n)
	}

	// A key that stays wrong: the old certificate is kept for the grace
	// period, then the host falls back and the problem is reported.
	_, wrongKey := ca.issue(t, leafSpec{names: []string{"a.test"}})
	if err := os.WriteFile(filepath.Join(dir, "a/key.pem"), wrongKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cancel() // drive the polls by hand now
	p.RefreshCerts()
	if got := mustLeaf(t, srv, "a.test", ca.pool).SerialNumber.Int64(); got != 2006 {
		t.Errorf("during the grace period: serial %d, want the old 2006", got)
	}
	p.mu.Lock()
	for h := range p.rewriting {
		p.rewriting[h] = time.Now().Add(-rewriteGrace) // the grace has passed
	}
	p.mu.Unlock()
	p.RefreshCerts()
	if leaf := mustLeaf(t, srv, "a.test", nil); !isDefaultCert(leaf) {
		t.Errorf("a key that stays wrong: served %v", leaf.DNSNames)
	}
	if pr := p.CertProblems(); len(pr) != 1 || pr[0].Reason != CertKeyMismatch {
		t.Errorf("problems = %v, want one key_mismatch", pr)
	}
}

// netDialer dials addr whatever the URL names.
type netDialer struct{ addr string }

func (d *netDialer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, d.addr)
}

// waitUntil polls ok until it holds or the time is up.
func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
