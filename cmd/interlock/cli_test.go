package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(good, []byte("proxy = \"builtin\"\nhttp_addr = \":8080\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("proxy = \"traefik\"\nhttp_adr = \":8080\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
	}{
		{name: "no command", args: nil, wantCode: 2, wantStderr: []string{"Usage:"}},
		{name: "unknown command", args: []string{"serve"}, wantCode: 2, wantStderr: []string{`unknown command "serve"`}},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: []string{"interlock "}},
		{name: "check good", args: []string{"check", good}, wantCode: 0, wantStdout: []string{"ok"}},
		{name: "check bad names the keys", args: []string{"check", bad}, wantCode: 1, wantStderr: []string{"http_adr", "proxy"}},
		{name: "check missing file", args: []string{"check", filepath.Join(dir, "nope.toml")}, wantCode: 1, wantStderr: []string{"nope.toml"}},
		{name: "check without file", args: []string{"check"}, wantCode: 1, wantStderr: []string{"interlock check"}},
		{name: "run bad proxy flag", args: []string{"run", "--proxy", "traefik"}, wantCode: 1, wantStderr: []string{"--proxy", "builtin"}},
		{name: "run help", args: []string{"run", "-h"}, wantCode: 2, wantStderr: []string{"-docker-host", "-http-addr", "INTERLOCK_DOCKER_HOST"}},
		{name: "run unknown flag", args: []string{"run", "--htp-addr", ":1"}, wantCode: 1, wantStderr: []string{"htp-addr"}},
		{name: "run bad address", args: []string{"run", "--http-addr", "localhost:99999"}, wantCode: 1, wantStderr: []string{"--http-addr"}},
		{
			name: "run haproxy without its binary", args: []string{"run", "--proxy", "haproxy", "--haproxy-binary", "/nonexistent/haproxy"},
			wantCode: 1, wantStderr: []string{"--haproxy-binary /nonexistent/haproxy: not found", "apt-get install haproxy"},
		},
		{
			name: "run haproxy stats off loopback", args: []string{"run", "--proxy", "haproxy", "--stats-addr", "0.0.0.0:8404"},
			wantCode: 1, wantStderr: []string{"--stats-addr:", "not a loopback address"},
		},
		{name: "check template without file", args: []string{"check", "--proxy", "haproxy"}, wantCode: 1, wantStderr: []string{"interlock check --template FILE"}},
		{name: "check template for builtin", args: []string{"check", "--template", good, "--proxy", "builtin"}, wantCode: 1, wantStderr: []string{`--proxy "builtin" takes no template`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := realMain(context.Background(), tc.args, []string{}, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, stdout.String(), stderr.String())
			}
			for _, s := range tc.wantStdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
		})
	}
}
