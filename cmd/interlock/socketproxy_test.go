package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestReadOnlyDockerSocketProxy runs Interlock (built-in proxy) through
// the read-only Docker API of examples/socket-proxy: a real HAProxy that
// passes GET and HEAD to the engine's socket and refuses the rest.
// Interlock routes a container, follows its start and stop through the
// event stream, and never needs more; a write through the same socket is
// refused.
func TestReadOnlyDockerSocketProxy(t *testing.T) {
	e := needDocker(t)
	bin := testenv.HAProxyBinary(t)
	conf, err := os.ReadFile("../../examples/socket-proxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ro") // short: a unix socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker-ro.sock")
	text := strings.ReplaceAll(string(conf), "/run/interlock/docker-ro.sock", sock)
	if !strings.Contains(text, sock) {
		t.Fatal("the example no longer binds /run/interlock/docker-ro.sock")
	}
	// Every request logged, with its status, to see what Interlock asked.
	text = strings.Replace(text, "local0 warning", "local0 info", 1)
	text = strings.Replace(text, "    log global\n", "    log global\n    option httplog\n", 1)
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfgFile)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("socket proxy log:\n%s", logs)
		}
	})
	testenv.WaitFor(t, 10*time.Second, "the read-only socket", func() error {
		_, err := os.Stat(sock)
		return err
	})

	ro := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/_ping", http.StatusOK},
		{http.MethodPost, "/containers/create", http.StatusForbidden},
		{http.MethodDelete, "/containers/anything", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(tc.method, "http://docker"+tc.path, strings.NewReader("{}"))
		res, err := ro.Do(req)
		if err != nil {
			t.Fatalf("%s %s through the socket proxy: %v", tc.method, tc.path, err)
		}
		res.Body.Close()
		if res.StatusCode != tc.code {
			t.Errorf("%s %s through the socket proxy: %d, want %d", tc.method, tc.path, res.StatusCode, tc.code)
		}
	}

	in := startInterlock(t, "--docker-host", "unix://"+sock)
	host := hostFor(t, "ro")
	c := e.Run(t, testenv.ContainerSpec{Name: "ro", PublishPort: 8000, Env: map[string]string{"NAME": "ro"}, Labels: labelsFor(host)})
	if r := in.waitStatus(t, host, "/", http.StatusOK); r.backend != "ro" {
		t.Errorf("answered by %q", r.backend)
	}
	if err := e.Stop(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	in.waitStatus(t, host, "/", http.StatusNotFound) // the stop came through the event stream
	// (The event stream is logged when it ends; the stop seen within the
	// test's seconds, not at a 30 s resync, came through it.)
	if !strings.Contains(logs.String(), "/containers/json") {
		t.Errorf("the socket proxy logged none of Interlock's requests:\n%s", logs)
	}
	if n := strings.Count(logs.String(), " 403 "); n != 2 {
		t.Errorf("%d refused requests, want the test's own 2: Interlock asked the read-only socket for a write\n%s", n, logs)
	}
}
