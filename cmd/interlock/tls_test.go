package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestTLSToManager reaches the engine the way production reaches a Swarm
// manager on port 2376: TLS with client certificates, given as flags or as
// the classic DOCKER_CERT_PATH mount. Wrong or missing certificates fail
// with a message that says what to fix.
func TestTLSToManager(t *testing.T) {
	needDocker(t)
	pki := testenv.NewPKI(t)
	engine := testenv.NewTLSEngine(t, pki, "/var/run/docker.sock")
	other := testenv.NewPKI(t) // a CA the engine does not trust

	tests := []struct {
		name       string
		args       []string
		environ    []string
		wantCode   int
		wantStderr string
	}{
		{name: "flags", args: []string{"--docker-host", engine.Addr, "--tls-ca", pki.CA, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--tls-verify"}, wantCode: 0},
		{name: "DOCKER_CERT_PATH like a /certs mount", environ: []string{"DOCKER_HOST=" + engine.Addr, "DOCKER_CERT_PATH=" + pki.Dir, "DOCKER_TLS_VERIFY=1"}, wantCode: 0},
		{name: "no client certificate", args: []string{"--docker-host", engine.Addr, "--tls-ca", pki.CA, "--tls-verify"},
			wantCode: 1, wantStderr: "demands a client certificate"},
		{name: "client certificate of another CA", args: []string{"--docker-host", engine.Addr, "--tls-ca", pki.CA, "--tls-cert", other.Cert, "--tls-key", other.Key, "--tls-verify"},
			wantCode: 1, wantStderr: "refused the client certificate"},
		{name: "engine certificate not signed by the given CA", args: []string{"--docker-host", engine.Addr, "--tls-ca", other.CA, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--tls-verify"},
			wantCode: 1, wantStderr: "not signed by --tls-ca"},
		{name: "plain HTTP to a TLS port", args: []string{"--docker-host", engine.Addr},
			wantCode: 1, wantStderr: "speaks TLS on that port"},
		{name: "missing key file", args: []string{"--docker-host", engine.Addr, "--tls-ca", pki.CA, "--tls-cert", pki.Cert, "--tls-key", filepath.Join(pki.Dir, "nope.pem"), "--tls-verify"},
			wantCode: 1, wantStderr: "nope.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut strings.Builder
			code := realMain(ctx, append([]string{"render"}, tc.args...), tc.environ, &out, &errOut)
			if code != tc.wantCode {
				t.Fatalf("render exited %d, want %d; stderr: %s", code, tc.wantCode, errOut.String())
			}
			if tc.wantCode == 0 && !strings.Contains(out.String(), `"hash"`) {
				t.Errorf("render printed no table: %s", out.String())
			}
			if !strings.Contains(errOut.String(), tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.wantStderr)
			}
		})
	}

	t.Run("run follows the engine over TLS", func(t *testing.T) {
		e := needDocker(t)
		in := startInterlock(t, "--docker-host", engine.Addr, "--tls-ca", pki.CA, "--tls-cert", pki.Cert, "--tls-key", pki.Key, "--tls-verify")
		host := hostFor(t, "tls")
		e.Run(t, testenv.ContainerSpec{Name: "tls", Labels: labelsFor(host), PublishPort: 8000})
		in.waitStatus(t, host, "/", http.StatusOK) // an event that came through the TLS stream
	})
}
