package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// HAProxyBinary returns the path of the host's haproxy. Without one the
// test is skipped, or fails under CI=true (make test installs the Debian
// package).
func HAProxyBinary(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("haproxy is not installed (Debian package haproxy; make deps installs it)")
	}
	tb.Skip("skipping: haproxy is not installed (apt-get install haproxy)")
	return ""
}

// HAProxyRepo is the repository of the haproxy proxy image; its tag is a
// hash of the image content.
const HAProxyRepo = "interlock-test-haproxy"

// HAProxyBootstrap is the configuration the image starts with: it answers
// every request on port 80 with 503 until it is pointed at Interlock's
// file.
const HAProxyBootstrap = `global
    log stderr format raw local0 notice
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend http
    bind :80
    http-request return status 503 content-type text/plain string "interlock: no configuration yet"
`

// HAProxyImage returns the tag of an image FROM scratch holding the host's
// Debian haproxy (/usr/sbin/haproxy and the shared libraries ldd names,
// the CA bundle, a passwd and group with root, haproxy and nobody). It runs
// "haproxy -W -db" (master-worker, in the foreground) with the arguments
// ["-f", "/usr/local/etc/haproxy/haproxy.cfg"], which holds HAProxyBootstrap.
func (e *Env) HAProxyImage(ctx context.Context) (string, error) {
	bin, err := lookPackageBinary("haproxy")
	if err != nil {
		return "", fmt.Errorf("haproxy image: %w", err)
	}
	files, err := binaryFiles(bin, "/usr/sbin/haproxy", map[string]int{"haproxy": 99})
	if err != nil {
		return "", fmt.Errorf("haproxy image: %w", err)
	}
	files["/usr/local/etc/haproxy/haproxy.cfg"] = imageFile{mode: 0o644, data: []byte(HAProxyBootstrap)}
	return e.buildPackageImage(ctx, packageImage{
		repo: HAProxyRepo, kind: "haproxy", files: files,
		entrypoint: []string{"/usr/sbin/haproxy", "-W", "-db"}, cmd: []string{"-f", "/usr/local/etc/haproxy/haproxy.cfg"},
	})
}

// RunHAProxy creates and starts a proxy container from HAProxyImage and
// registers a t.Cleanup that force-removes it.
func (e *Env) RunHAProxy(t testing.TB, spec ProxySpec) ProxyContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := e.HAProxyImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return e.runProxy(t, "haproxy", img, spec)
}
