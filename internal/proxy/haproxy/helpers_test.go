package haproxy

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// requireHAProxy returns the haproxy binary, or skips the test when there
// is none, except under CI=true, where a missing haproxy fails it (CI must
// never pass by skipping).
func requireHAProxy(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		// Debian puts it in /usr/sbin, which a non-root PATH often lacks.
		bin, err = exec.LookPath("/usr/sbin/haproxy")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("haproxy is not installed (Debian package haproxy): %v", err)
		}
		t.Skipf("skipping: haproxy is not installed (apt-get install haproxy): %v", err)
	}
	return bin
}

// diffLines is a small line diff for golden failures: the first lines
// that differ, with context.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}
