package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/client"
)

const sideloadConf = "/etc/nginx/nginx.conf"

func sideloadConfig(answer string) []byte {
	return []byte("error_log stderr warn;\nevents {}\nhttp {\n  access_log off;\n  server {\n    listen 80 default_server;\n    return 200 \"" + answer + "\\n\";\n  }\n}\n")
}

func answers(t *testing.T, port uint16, want string) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("port %d answering %q", port, want), func() error {
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("got %d %q", resp.StatusCode, b)
		}
		return nil
	})
}

// TestSideloadCopyCheckReload runs the Docker side against real nginx
// containers: a candidate the container's nginx -t refuses never goes
// live; one it accepts is copied in and reloaded with SIGHUP; a proxy
// container that appears later gets the current files from Run.
func TestSideloadCopyCheckReload(t *testing.T) {
	testenv.NginxBinary(t)
	e := testenv.Require(t)
	ctx := context.Background()
	value := "sideload-" + e.RunID
	labels := map[string]string{"interlock.ext.name": value}
	cli, err := NewClient(Endpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatal(err)
	}
	s := NewSideload(cli, SideloadOptions{
		Value: value, Copy: true, Stage: sideloadConf, Check: []string{"nginx", "-t", "-q", "-c", "{}"},
		Ready: "nginx: worker process", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	src := NewSource(cli, SourceOptions{})
	observe := func() {
		t.Helper()
		snap, err := src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Observe(snap)
	}

	// No proxy container yet: the files wait for the first one.
	if err := s.Reload(ctx, map[string][]byte{sideloadConf: sideloadConfig("v0")}); err != nil {
		t.Fatalf("Reload with no container = %v, want nil", err)
	}
	p1 := e.RunNginx(t, testenv.ProxySpec{Name: "p1", Labels: labels, Ports: []uint16{80}})
	answers(t, p1.Ports[80], "no configuration yet")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	observe()
	if got := s.Stats().Targets; got != 1 {
		t.Fatalf("targets = %d, want 1", got)
	}
	answers(t, p1.Ports[80], "v0") // the kept files, pushed to the newcomer

	bad := []byte("events {}\nhttp { no_such_directive; }\n")
	err = s.Reload(ctx, map[string][]byte{sideloadConf: bad})
	var ce *CheckError
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Output, `[emerg] unknown directive "no_such_directive"`) || strings.Contains(ce.Output, "test failed") {
		t.Fatalf("Reload(bad) = %v, want a CheckError with nginx -t's message", err)
	}
	answers(t, p1.Ports[80], "v0")

	if err := s.Reload(ctx, map[string][]byte{sideloadConf: sideloadConfig("v1")}); err != nil {
		t.Fatal(err)
	}
	answers(t, p1.Ports[80], "v1")

	p2 := e.RunNginx(t, testenv.ProxySpec{Name: "p2", Labels: labels, Ports: []uint16{80}})
	observe()
	answers(t, p2.Ports[80], "v1")
	if st := s.Stats(); st.Targets != 2 || st.Signals < 3 || st.LastError != "" {
		t.Errorf("stats = %+v", st)
	}
}

func TestSideloadObserveFilters(t *testing.T) {
	s := NewSideload(nil, SideloadOptions{Value: "edge"})
	s.Observe(Snapshot{Containers: []Container{
		{ID: "a", State: "running", Labels: map[string]string{"interlock.ext.name": "edge"}},
		{ID: "b", State: "running", Labels: map[string]string{"interlock.ext.name": "nginx"}},
		{ID: "c", State: "exited", Labels: map[string]string{"interlock.ext.name": "edge"}},
		{ID: "d", State: "running", Draining: true, Labels: map[string]string{"interlock.ext.name": "edge"}},
		{ID: "e", State: "running"},
	}})
	if got := s.Stats().Targets; got != 1 {
		t.Errorf("targets = %d, want 1 (running, labelled edge, not draining)", got)
	}
	if err := s.Reload(context.Background(), map[string][]byte{"/x": nil}); err == nil {
		t.Error("files given to a volume-delivery Sideload: want an error")
	}
}

// TestSideloadNoTargetWarns: a configuration that reaches no proxy
// container is said at Warn, with the label and the engine looked on (a
// manager that lists only its own node's containers is the usual cause),
// and Stats say which engine and how many targets.
func TestSideloadNoTargetWarns(t *testing.T) {
	cli, err := NewClient(Endpoint{Host: "tcp://192.0.2.1:2376"}) // never dialled: no target, no call
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var logs strings.Builder
	s := NewSideload(cli, SideloadOptions{Value: "edge", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := s.Reload(context.Background(), nil); err != nil {
		t.Fatalf("Reload with no container = %v, want nil", err)
	}
	line := logs.String()
	for _, want := range []string{"level=WARN", "no proxy container is running", `label="interlock.ext.name=edge"`, "docker_host=tcp://192.0.2.1:2376"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	want := SideloadStats{Label: "interlock.ext.name=edge", Host: "tcp://192.0.2.1:2376"}
	if got := s.Stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	s.Observe(Snapshot{Containers: []Container{{ID: "a", State: "running", Labels: map[string]string{"interlock.ext.name": "edge"}}}})
	want.Targets = 1
	if got := s.Stats(); got != want {
		t.Errorf("stats after a proxy container showed = %+v, want %+v", got, want)
	}
}
