package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestDockerOutageUnderLoad: for each driver, a steady load runs through
// the proxy to a host whose backend stays alive while Interlock's Docker
// connection is cut for 10 s and restored. Not one request fails: the
// last good table keeps serving, readiness says "degraded" meanwhile, and
// Interlock resyncs when the engine is back.
func TestDockerOutageUnderLoad(t *testing.T) {
	e := needDocker(t)
	for _, driver := range []string{"builtin", "nginx", "haproxy"} {
		t.Run(driver, func(t *testing.T) {
			relay, err := testenv.NewRelay("/var/run/docker.sock")
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			host := hostFor(t, "steady")
			args := []string{"--docker-host", relay.Addr()}
			switch driver {
			case "builtin":
				e.Run(t, testenv.ContainerSpec{Name: "steady", PublishPort: 8000, Env: map[string]string{"NAME": "steady"}, Labels: labelsFor(host)})
			case "nginx":
				args = append(newNginxRun(t).args(), args...)
				e.Run(t, testenv.ContainerSpec{Name: "steady", PublishPort: 8000, Env: map[string]string{"NAME": "steady"}, Labels: labelsFor(host)})
			case "haproxy":
				h := newHAProxyRun(t, e)
				args = append(h.args(), args...)
				h.container(t, e, "steady", labelsFor(host), nil)
			}
			in := startInterlock(t, args...)
			in.waitStatus(t, host, "/", http.StatusOK)
			load := startRateLoad(strings.TrimPrefix(in.proxy, "http://"), host, 50)
			time.Sleep(time.Second)
			relay.Cut()
			testenv.WaitFor(t, 10*time.Second, "readyz degraded", func() error {
				code, body, err := httpGet(in.api+"/readyz", "")
				if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "degraded") {
					return fmt.Errorf("readyz %d %q %v", code, body, err)
				}
				return nil
			})
			time.Sleep(10 * time.Second)
			if err := relay.Restore(); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 30*time.Second, "readyz ready again", func() error {
				code, body, err := httpGet(in.api+"/readyz", "")
				if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "ready") {
					return fmt.Errorf("readyz %d %q %v", code, body, err)
				}
				return nil
			})
			time.Sleep(time.Second)
			total, failed, firsts := load.Stop()
			t.Logf("%s: %d requests across a 10 s Docker outage, %d failed", driver, total, failed)
			if failed != 0 || total < 400 {
				t.Errorf("%d of %d requests failed (want none, of at least 400); first: %v", failed, total, firsts)
			}
		})
	}
}

// TestConfigChurnUnderLoad: the built-in proxy and HAProxy (nginx:
// TestNginxReloadUnderLoad) keep a stable host answering every request
// while 50 other containers come and go, 100 table changes.
func TestConfigChurnUnderLoad(t *testing.T) {
	e := needDocker(t)
	for _, driver := range []string{"builtin", "haproxy"} {
		t.Run(driver, func(t *testing.T) {
			stable := hostFor(t, "stable")
			var in *instance
			var run func(name string, labels map[string]string) testenv.Container
			switch driver {
			case "builtin":
				run = func(name string, labels map[string]string) testenv.Container {
					return e.Run(t, testenv.ContainerSpec{Name: name, Labels: labels, PublishPort: 8000})
				}
				run("stable", labelsFor(stable))
				in = startInterlock(t)
			case "haproxy":
				h := newHAProxyRun(t, e)
				run = func(name string, labels map[string]string) testenv.Container {
					return h.container(t, e, name, labels, nil)
				}
				run("stable", labelsFor(stable))
				in = h.start(t)
			}
			in.waitStatus(t, stable, "/fast", http.StatusOK)
			churnUnderLoad(t, in, stable, run, func(id string) error { return e.Remove(context.Background(), id) })
		})
	}
}
