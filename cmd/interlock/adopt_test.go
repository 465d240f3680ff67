package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// startStoppable is startInterlock with a stop of its own, for a test
// that restarts Interlock: stop ends it and waits for its exit.
func startStoppable(t *testing.T, args ...string) (*instance, func()) {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	in := &instance{proxy: "http://" + httpAddr, api: "http://" + apiAddr, logs: &syncBuffer{}, done: make(chan int, 1)}
	all := append([]string{"run", "--http-addr", httpAddr, "--api-addr", apiAddr, "--log-level", "debug"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { in.done <- realMain(ctx, all, []string{}, io.Discard, in.logs) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-in.done:
			if code != 0 {
				t.Errorf("interlock exited with %d:\n%s", code, in.logs)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("interlock did not stop within 15s")
		}
	}
	t.Cleanup(stop)
	testenv.WaitFor(t, 20*time.Second, "interlock ready", func() error {
		code, body, err := httpGet(in.api+"/readyz", "")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	return in, stop
}

// TestProxyContainersAdoptedOnRestart: Interlock is restarted while its
// side-loaded proxy serves a steady load. The proxy keeps serving the
// last good configuration meanwhile (0 failed requests), and the new
// Interlock, finding the proxy on the file it would write, adopts it
// without a reload (HAProxy's worker is the same process afterwards); the
// next route change reloads as usual.
func TestProxyContainersAdoptedOnRestart(t *testing.T) {
	e := needDocker(t)
	for _, driver := range []string{"nginx", "haproxy"} {
		t.Run(driver, func(t *testing.T) {
			netName := e.Network(t)
			host, later := hostFor(t, "web"), hostFor(t, "later")
			e.Run(t, testenv.ContainerSpec{Name: "web", Labels: labelsFor(host), Network: netName, ExposePorts: []uint16{8000}, Env: map[string]string{"NAME": "web"}})
			// Short: HAProxy's admin sockets live in the shared directory.
			shared, err := os.MkdirTemp("", "ilk")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(shared) })
			var args []string
			var addr string
			switch driver {
			case "nginx":
				n := newNginxRun(t)
				conf := filepath.Join(shared, "nginx.conf")
				args = n.args("--nginx-target", "containers", "--nginx-delivery", "volume", "--nginx-config", conf,
					"--proxy-container-label", proxyLabel(t), "--network", netName, "--http-addr", ":80", "--https-addr", ":443")
				_, stop := startStoppable(t, args...)
				p := e.RunNginx(t, testenv.ProxySpec{Name: "proxy", Labels: map[string]string{"interlock.ext.name": proxyLabel(t)}, Ports: []uint16{80},
					Network: netName, Binds: []string{shared + ":" + shared}, Cmd: []string{"-c", conf}})
				addr = fmt.Sprintf("127.0.0.1:%d", p.Ports[80])
				waitVia(t, addr, host, "/", http.StatusOK, `"path":"/"`)
				// Once the workers of Interlock's first reload are alone.
				var before string
				testenv.WaitFor(t, 15*time.Second, "nginx's processes settled", func() error {
					a := processes(t, p.ID)
					time.Sleep(time.Second)
					if before = processes(t, p.ID); a != before {
						return fmt.Errorf("%s, then %s", a, before)
					}
					return nil
				})
				restartUnderLoad(t, stop, addr, host, args)
				if after := processes(t, p.ID); after != before {
					t.Errorf("nginx's processes changed across the restart (a reload starts new workers):\nbefore %s\nafter  %s", before, after)
				}
			case "haproxy":
				h := newHAProxyRun(t, e)
				h.stateDir, h.network = shared, netName
				label := "haproxy-" + env.RunID + "-" + sanitize(t.Name())
				args = h.args("--haproxy-target", "containers", "--proxy-container-label", label, "--http-addr", ":80", "--https-addr", ":443")
				_, stop := startStoppable(t, args...)
				conf := h.live()
				testenv.WaitFor(t, 15*time.Second, "the file written", func() error {
					if b, err := os.ReadFile(conf); err != nil || !strings.Contains(string(b), host) {
						return fmt.Errorf("%s does not route %s yet (%v)", conf, host, err)
					}
					return nil
				})
				dir := filepath.Dir(conf)
				p := e.RunHAProxy(t, testenv.ProxySpec{Name: "p1", Hostname: "adopted", Labels: map[string]string{"interlock.ext.name": label},
					Ports: []uint16{80}, Network: netName, Binds: []string{dir + ":" + dir}, Cmd: []string{"-f", conf}})
				addr = fmt.Sprintf("127.0.0.1:%d", p.Ports[80])
				waitThrough(t, "http://"+addr, host, "web")
				sock := filepath.Join(dir, "admin-adopted.sock")
				before := workerPid(t, sock)
				restartUnderLoad(t, stop, addr, host, args)
				if pid := workerPid(t, sock); pid != before {
					t.Errorf("HAProxy worker %d before the restart, %d after: it was reloaded", before, pid)
				}
			}
			// After adoption, a route change reloads as usual.
			e.Run(t, testenv.ContainerSpec{Name: "later", Labels: labelsFor(later), Network: netName, ExposePorts: []uint16{8000}, Env: map[string]string{"NAME": "later"}})
			waitVia(t, addr, later, "/", http.StatusOK, `"path":"/"`)
		})
	}
}

// restartUnderLoad stops the running Interlock (stop) and starts a second
// one with args while a steady load runs through the proxy at addr; it
// checks that no request failed and that the second one adopted the proxy
// without a reload.
func restartUnderLoad(t *testing.T, stop func(), addr, host string, args []string) {
	t.Helper()
	load := startRateLoad(addr, host, 50)
	time.Sleep(500 * time.Millisecond)
	stop()
	time.Sleep(500 * time.Millisecond) // no Interlock at all for a moment
	second := startInterlock(t, args...)
	testenv.WaitFor(t, 15*time.Second, "the second interlock's table applied", func() error {
		st, _ := second.status(t)
		if !st.Controller.Applied {
			return fmt.Errorf("not applied yet")
		}
		return nil
	})
	time.Sleep(time.Second)
	total, failed, firsts := load.Stop()
	t.Logf("through the proxy while Interlock restarted: %d requests, %d failed", total, failed)
	if failed != 0 || total < 50 {
		t.Errorf("%d of %d requests failed across the restart (want none, and at least 50 sent); first: %v", failed, total, firsts)
	}
	if n := second.reloads(t); n != 0 {
		t.Errorf("the second interlock reloaded the proxy %d times; want it adopted", n)
	}
	if !strings.Contains(second.logs.String(), "adopted without a reload") {
		t.Errorf("no adoption in the log:\n%s", second.logs)
	}
}

// processes lists the pids in container id (docker top), sorted.
func processes(t *testing.T, id string) string {
	t.Helper()
	out, err := exec.Command("docker", "top", id, "-o", "pid").Output()
	if err != nil {
		t.Fatalf("docker top %s: %v", id, err)
	}
	pids := strings.Fields(string(out))[1:] // after the PID header
	slices.Sort(pids)
	return strings.Join(pids, " ")
}
