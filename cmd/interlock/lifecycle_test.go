package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// The lifecycle tests run the real binary as its own process, since
// signals go to a process: SIGTERM and SIGHUP sent to this test binary
// would reach every instance in it.

// child is `interlock run` as a child process.
type child struct {
	cmd        *exec.Cmd
	proxy, api string
	httpAddr   string
	logs       *syncBuffer
	exited     chan error
}

// startChild builds the binary and runs it with args (plus free loopback
// addresses). It stops it at cleanup, printing its log if the test failed.
func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "interlock")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	c := &child{proxy: "http://" + httpAddr, api: "http://" + apiAddr, httpAddr: httpAddr, logs: &syncBuffer{}, exited: make(chan error, 1)}
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // not the shared default :8443
	c.cmd = exec.Command(bin, append([]string{"run", "--http-addr", httpAddr, "--https-addr", httpsAddr, "--api-addr", apiAddr, "--state-dir", t.TempDir()}, args...)...)
	c.cmd.Stderr = c.logs
	c.cmd.Env = withoutInterlockEnv(os.Environ())
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-c.exited:
			c.exited <- err
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("interlock log:\n%s", c.logs.String())
		}
	})
	testenv.WaitFor(t, 30*time.Second, "interlock ready", func() error {
		select {
		case err := <-c.exited:
			c.exited <- err
			return fmt.Errorf("interlock exited: %v\n%s", err, c.logs.String())
		default:
		}
		code, body, err := httpGet(c.api+"/readyz", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
	return c
}

func withoutInterlockEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "INTERLOCK_") {
			out = append(out, kv)
		}
	}
	return out
}

func (c *child) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (c *child) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("interlock still running %s later", within)
		return -1
	}
}

// waitLog waits until the log has a line containing every one of parts.
func (c *child) waitLog(t *testing.T, what string, parts ...string) string {
	t.Helper()
	var line string
	testenv.WaitFor(t, 10*time.Second, what, func() error {
	lines:
		for _, l := range strings.Split(c.logs.String(), "\n") {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					continue lines
				}
			}
			line = l
			return nil
		}
		return fmt.Errorf("no log line with %q", parts)
	})
	return line
}

// routeTo starts a backend container for a fresh host and waits until it
// answers through the child.
func (c *child) routeTo(t *testing.T, e *testenv.Env, name string) (host string, ctr testenv.Container) {
	t.Helper()
	host = hostFor(t, name)
	ctr = e.Run(t, testenv.ContainerSpec{Name: name, Labels: labelsFor(host), PublishPort: 8000})
	testenv.WaitFor(t, 15*time.Second, host+" routed", func() error {
		code, body, err := httpGet(c.proxy+"/", host)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
	return host, ctr
}

// slowRequest sends GET /slow?d=... through the child's proxy and reports
// the result on the returned channel.
func (c *child) slowRequest(host string, d time.Duration) <-chan response {
	out := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, c.proxy+"/slow?d="+d.String(), nil)
		req.Host = host
		client := &http.Client{Timeout: d + 20*time.Second}
		res, err := client.Do(req)
		if err != nil {
			out <- response{code: -1, body: err.Error()}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			out <- response{code: -2, body: err.Error()}
			return
		}
		out <- response{code: res.StatusCode, backend: res.Header.Get("X-Backend"), body: string(b)}
	}()
	return out
}

// waitInFlight waits until the proxy has a request in flight to backend.
func (c *child) waitInFlight(t *testing.T, backend string) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "a request in flight to "+backend, func() error {
		_, body, err := httpGet(c.api+"/api/backends", "")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"address": "`+backend+`"`) || !strings.Contains(body, `"in_flight": 1`) {
			return fmt.Errorf("backends: %s", body)
		}
		return nil
	})
}

func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	e := needDocker(t)
	c := startChild(t, "--log-level", "info")
	host, ctr := c.routeTo(t, e, "slow")
	const slow = 3 * time.Second
	result := c.slowRequest(host, slow)
	c.waitInFlight(t, fmt.Sprintf("127.0.0.1:%d", ctr.HostPort))

	sent := time.Now()
	c.signal(t, syscall.SIGTERM)

	// While the request drains: not ready, and no new connections.
	testenv.WaitFor(t, 2*time.Second, "readyz to say shutting down", func() error {
		code, body, err := httpGet(c.api+"/readyz", "")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
			return fmt.Errorf("readyz %d %q", code, body)
		}
		return nil
	})
	testenv.WaitFor(t, 2*time.Second, "the proxy listener to close", func() error {
		conn, err := net.DialTimeout("tcp", c.httpAddr, time.Second)
		if err != nil {
			return nil
		}
		conn.Close()
		return errors.New("still accepting connections")
	})

	r := <-result
	finished := time.Now()
	if r.code != http.StatusOK || r.backend != ctr.Name {
		t.Fatalf("in-flight request during shutdown: %d from %q: %s; want 200 from %s", r.code, r.backend, r.body, ctr.Name)
	}
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	exited := time.Now()
	if exited.Before(finished.Add(-100 * time.Millisecond)) {
		t.Errorf("process exited before the in-flight request finished")
	}
	t.Logf("SIGTERM to exit %s (in-flight request of %s)", exited.Sub(sent).Round(time.Millisecond), slow)
	c.waitLog(t, "drain logged", "in-flight requests drained")
}

func TestSecondSignalStopsWaiting(t *testing.T) {
	e := needDocker(t)
	for _, engine := range []string{"nethttp", "fasthttp"} {
		t.Run(engine, func(t *testing.T) {
			c := startChild(t, "--log-level", "info", "--builtin-engine", engine)
			host, ctr := c.routeTo(t, e, "stuck-"+engine)
			result := c.slowRequest(host, time.Minute)
			c.waitInFlight(t, fmt.Sprintf("127.0.0.1:%d", ctr.HostPort))

			c.signal(t, syscall.SIGTERM)
			c.waitLog(t, "shutdown to begin", "interlock stopping")
			start := time.Now()
			c.signal(t, syscall.SIGTERM)
			if code := c.wait(t, 5*time.Second); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("exit took %s after the second signal", took)
			}
			c.waitLog(t, "the cut logged", "second signal")
			if r := <-result; r.code == http.StatusOK {
				t.Errorf("a one-minute request completed although the drain was cut short")
			}
		})
	}
}

func TestSIGHUPReloadsConfig(t *testing.T) {
	e := needDocker(t)
	file := filepath.Join(t.TempDir(), "interlock.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("log_level = \"info\"\nresync_interval = \"30s\"\n")
	c := startChild(t, "--config", file)

	// The log level changes live; every other changed setting is reported
	// as needing a restart.
	t.Run("live level", func(t *testing.T) {
		write("log_level = \"debug\"\nresync_interval = \"5s\"\n")
		c.signal(t, syscall.SIGHUP)
		line := c.waitLog(t, "the reload logged", "configuration reloaded", "log_level info -> debug")
		if !strings.Contains(line, "resync_interval 30s -> 5s") {
			t.Errorf("reload line does not list resync_interval as needing a restart: %s", line)
		}
		c.waitLog(t, "the restart warning", "level=WARN", "needs a restart", "setting=resync_interval", "running=30s", "configured=5s")
		// Debug lines now appear: a container event is logged at debug.
		c.routeTo(t, e, "hup")
		c.waitLog(t, "a debug line", "level=DEBUG", "docker event")
	})

	// A file that does not load keeps the running configuration.
	t.Run("bad file", func(t *testing.T) {
		write("log_level = \"loud\"\n")
		c.signal(t, syscall.SIGHUP)
		c.waitLog(t, "the failure logged", "level=ERROR", "configuration reload failed", "log_level")
		failures := strings.Count(c.logs.String(), "configuration reload failed")
		write("log_level = \"debug\"\nthis is not toml\n")
		c.signal(t, syscall.SIGHUP)
		testenv.WaitFor(t, 10*time.Second, "the second failure", func() error {
			if strings.Count(c.logs.String(), "configuration reload failed") <= failures {
				return errors.New("not logged yet")
			}
			return nil
		})
		if code, body, err := httpGet(c.api+"/readyz", ""); err != nil || code != http.StatusOK {
			t.Fatalf("after bad reloads readyz = %d %q %v", code, body, err)
		}
		// Still at debug: the level from the last good file stays.
		n := strings.Count(c.logs.String(), "docker event")
		c.routeTo(t, e, "hup2")
		testenv.WaitFor(t, 10*time.Second, "more debug lines", func() error {
			if strings.Count(c.logs.String(), "docker event") <= n {
				return errors.New("no new debug line")
			}
			return nil
		})
	})

	// The dashboard's feed shows reloads.
	t.Run("feed", func(t *testing.T) {
		_, page, err := httpGet(c.api+"/", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"configuration reloaded; applied: log_level info -&gt; debug; needs a restart: resync_interval 30s -&gt; 5s", "configuration reload failed"} {
			if !strings.Contains(page, want) {
				t.Errorf("dashboard feed lacks %q", want)
			}
		}
	})

	c.signal(t, syscall.SIGTERM)
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestDiffConfig(t *testing.T) {
	a := config.Default()
	b := a
	b.LogLevel, b.ResyncInterval, b.Network = "debug", 5*time.Second, "front"
	var got []string
	for _, c := range diffConfig(a, b) {
		got = append(got, c.String())
	}
	want := []string{`network "" -> front`, "resync_interval 30s -> 5s", "log_level info -> debug"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("diffConfig = %q, want %q", got, want)
	}
	if d := diffConfig(a, a); len(d) != 0 {
		t.Errorf("diffConfig of equal configs = %v", d)
	}
	for key := range liveSettings {
		found := false
		for _, attr := range a.LogValue().Group() {
			found = found || attr.Key == key
		}
		if !found {
			t.Errorf("live setting %q is no configuration key", key)
		}
	}
}
