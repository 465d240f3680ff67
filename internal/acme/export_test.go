package acme_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/acme"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// The export for file-loading proxies: every issued certificate is
// written as NAME.pem (chain and key, 0600), the same certificate the
// Manager serves, and OnExport is told.
func TestExportWritesIssuedCertificates(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebble(t, port(t, httpAddr), port(t, httpsAddr))
	dir := filepath.Join(t.TempDir(), "export")
	var exports atomic.Int32
	in := startInstance(t, pb, t.TempDir(), httpAddr, httpsAddr, func(o *acme.Options) {
		o.DisableTLSALPN01 = true
		o.ExportDir, o.OnExport = dir, func() { exports.Add(1) }
	})
	in.apply(t, host("exp.example.com", &routing.TLS{ACME: true}, backend(t, "app"), "www.exp.example.com"))
	roots := pb.IssuingRoot(t)
	for _, name := range []string{"exp.example.com", "www.exp.example.com"} {
		served := waitIssued(t, in, name, roots)
		path := filepath.Join(dir, acme.ExportFile(name))
		var pair tls.Certificate
		deadline := time.Now().Add(10 * time.Second)
		for {
			data, err := os.ReadFile(path)
			if err == nil {
				// One file is both: nginx and HAProxy read it that way.
				if pair, err = tls.X509KeyPair(data, data); err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no usable export at %s: %v", name, path, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if !leaf.Equal(served) {
			t.Errorf("%s: exported certificate %v differs from the served one %v", name, leaf.SerialNumber, served.SerialNumber)
		}
		if len(pair.Certificate) < 2 {
			t.Errorf("%s: exported chain has %d certificates; want the intermediates too", name, len(pair.Certificate))
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600 (it holds the key)", path, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, %v; want 0700", dir, fi.Mode().Perm(), err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for exports.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if exports.Load() == 0 {
		t.Error("OnExport was never called")
	}
	before := exports.Load()
	time.Sleep(500 * time.Millisecond) // past the debounce: nothing changed, so no call
	if n := exports.Load(); n != before {
		t.Errorf("OnExport called %d more times without a change", n-before)
	}
}

// An issued certificate that cannot be written is reported per name
// (ExportFailure), not only logged: the proxy, or a controller's edges,
// do not have it.
func TestExportFailureIsReported(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebble(t, port(t, httpAddr), port(t, httpsAddr))
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, pb, t.TempDir(), httpAddr, httpsAddr, func(o *acme.Options) {
		o.DisableTLSALPN01 = true
		o.ExportDir = filepath.Join(file, "export") // under a file: never a directory
	})
	if err := in.mgr.ExportFailure("fail.example.com"); err != nil {
		t.Fatalf("ExportFailure before issuance: %v; want nil", err)
	}
	in.apply(t, host("fail.example.com", &routing.TLS{ACME: true}, backend(t, "app")))
	waitIssued(t, in, "fail.example.com", pb.IssuingRoot(t))
	deadline := time.Now().Add(10 * time.Second)
	for in.mgr.ExportFailure("fail.example.com") == nil {
		if time.Now().After(deadline) {
			t.Fatal("no ExportFailure for an issued certificate that could not be written")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := in.mgr.ExportFailure("fail.example.com"); !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("ExportFailure = %v; want the file system's reason", err)
	}
	if err := in.mgr.Failure("fail.example.com"); err != nil {
		t.Errorf("Failure = %v; the issuance itself succeeded", err)
	}
}

// ChallengeHandler 404s anything that is not a pending challenge of a
// managed name.
func TestChallengeHandlerRefusesStrangers(t *testing.T) {
	// A CA on loopback that refuses connections: the order that Sync
	// starts fails at once and never leaves the machine. Its storage is
	// removed by hand: certmagic's order goroutine may still write a lock
	// there a moment after Close.
	storage, err := os.MkdirTemp("", "acme-strangers")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			os.RemoveAll(storage)
			time.Sleep(20 * time.Millisecond)
			if _, err := os.Stat(storage); os.IsNotExist(err) {
				return
			}
		}
	})
	mgr, err := acme.New(acme.Options{CA: "https://127.0.0.1:1/directory", Storage: storage, HTTPAddr: "127.0.0.1:1", DisableTLSALPN01: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mgr.Close()
	mgr.Sync([]string{"managed.example.com"})
	for _, tc := range []struct{ host, path string }{
		{"managed.example.com", "/.well-known/acme-challenge/no-such-token"},
		{"other.example.com", "/.well-known/acme-challenge/tok"},
		{"managed.example.com", "/"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.Host = tc.host
		mgr.ChallengeHandler().ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s%s: %d, want 404", tc.host, tc.path, rec.Code)
		}
	}
}
