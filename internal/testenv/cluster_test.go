package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestSweepClusterDirs(t *testing.T) {
	// Directories as Env.Cluster names them, for: a run of a dead
	// process, a run of a live one, and the run being swept.
	mk := func(run string, pid int) string {
		t.Helper()
		d, err := os.MkdirTemp("", clusterDirPrefix+run+"-"+strconv.Itoa(pid)+"-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(d, "manager1"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		return d
	}
	stale := mk("deadrun", deadPID(t))
	live := mk("liverun", os.Getpid())
	mine := mk("minerun", os.Getpid())
	exists := func(d string) bool { _, err := os.Stat(d); return err == nil }
	isStale := func(labels map[string]string) bool {
		pid, err := strconv.Atoi(labels[LabelPID])
		return err != nil || !processAlive(pid)
	}

	// One run: only its own directory goes.
	if errs := sweepClusterDirs(LabelRun+"=minerun", func(map[string]string) bool { return true }); len(errs) > 0 {
		t.Fatal(errs)
	}
	if exists(mine) || !exists(live) || !exists(stale) {
		t.Errorf("sweep of one run: its directory exists %v (want false), others %v %v (want true)", exists(mine), exists(live), exists(stale))
	}
	// Stale runs: the dead process's directory goes, the live one's stays.
	if errs := sweepClusterDirs(LabelRun, isStale); len(errs) > 0 {
		t.Fatal(errs)
	}
	if exists(stale) || !exists(live) {
		t.Errorf("stale sweep: dead process's directory exists %v (want false), live one's %v (want true)", exists(stale), exists(live))
	}
}

func TestWriteClusterPKI(t *testing.T) {
	dir := t.TempDir()
	managers := []serverIdentity{{name: "manager1", ip: net.IPv4(192, 168, 200, 2)}, {name: "manager2", ip: net.IPv4(192, 168, 200, 3)}}
	if err := writeClusterPKI(dir, managers); err != nil {
		t.Fatal(err)
	}
	load := func(sub string) (*x509.CertPool, *x509.Certificate) {
		t.Helper()
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(filepath.Join(dir, sub, "ca.pem"))
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			t.Fatalf("%s/ca.pem: %v", sub, err)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, sub, "cert.pem"), filepath.Join(dir, sub, "key.pem"))
		if err != nil {
			t.Fatalf("%s: %v", sub, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return pool, cert
	}
	// Each manager's certificate names its own IP and no other manager's,
	// for server authentication under the one CA.
	for i, m := range managers {
		roots, cert := load(filepath.Join("server", m.name))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("%s: %v", m.name, err)
		}
		if err := cert.VerifyHostname(m.ip.String()); err != nil {
			t.Errorf("%s: %v", m.name, err)
		}
		other := managers[(i+1)%len(managers)]
		if err := cert.VerifyHostname(other.ip.String()); err == nil {
			t.Errorf("%s's certificate also names %s's IP %s", m.name, other.name, other.ip)
		}
	}
	roots, cert := load("client")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client: %v", err)
	}
}
