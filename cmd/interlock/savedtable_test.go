package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestLastGoodTableSurvivesRestart: Interlock keeps its last applied table
// in the state directory; restarted while Docker cannot be reached, it
// serves the same routes at once (readiness "degraded", not "down") from
// that file, instead of serving nothing until Docker answers.
func TestLastGoodTableSurvivesRestart(t *testing.T) {
	e := needDocker(t)
	state := t.TempDir()
	host := hostFor(t, "kept")
	e.Run(t, testenv.ContainerSpec{Name: "kept", PublishPort: 8000, Env: map[string]string{"NAME": "kept"}, Labels: labelsFor(host)})

	// The first life, with Docker: the route is served and saved.
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	args := []string{"run", "--http-addr", httpAddr, "--https-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"--api-addr", apiAddr, "--state-dir", state}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- realMain(ctx, args, []string{}, io.Discard, logs) }()
	first := &instance{proxy: "http://" + httpAddr, api: "http://" + apiAddr, logs: logs, done: done}
	first.waitStatus(t, host, "/", http.StatusOK)
	testenv.WaitFor(t, 10*time.Second, "the table saved", func() error {
		data, err := os.ReadFile(filepath.Join(state, savedTableFile))
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), host) {
			return fmt.Errorf("saved table without %s", host)
		}
		return nil
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("first interlock exited with %d:\n%s", code, logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("first interlock did not stop")
	}

	// The second life, without Docker: the saved routes, at once.
	start := time.Now()
	in := startInterlock(t, "--state-dir", state, "--docker-host", "unix:///nonexistent/docker.sock")
	r := in.waitStatus(t, host, "/", http.StatusOK)
	if r.backend != "kept" {
		t.Errorf("answered by %q, want kept", r.backend)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the saved route took %v to serve", took)
	}
	code, body, err := httpGet(in.api+"/readyz", "")
	if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "degraded") {
		t.Errorf("readyz %d %q, %v; want 200 degraded (serving the last good table without Docker)", code, body, err)
	}
	if !strings.Contains(in.logs.String(), "serving the last good table from disk") {
		t.Errorf("no restore in the log:\n%s", in.logs)
	}
}
