package testenv

import (
	"os"
	"os/exec"
	"testing"
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
