package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/api/types/swarm"
)

// The scripted benchmarks run the real binary as its own process and are
// skipped unless RUN_BENCH=1 (make bench). They print figures for
// BENCHMARKS.md; they assert no timings, since this machine is shared.

func needBench(t *testing.T) *testenv.Env {
	t.Helper()
	if os.Getenv("RUN_BENCH") != "1" {
		t.Skip("set RUN_BENCH=1 (make bench) to run the scripted benchmarks")
	}
	return needDocker(t)
}

// process is `interlock run` as a child process.
type process struct {
	cmd        *exec.Cmd
	proxy, api string
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "interlock")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := &process{proxy: "http://" + httpAddr, api: "http://" + apiAddr}
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) // not the shared default :8443
	p.cmd = exec.Command(bin, append([]string{"run", "--http-addr", httpAddr, "--https-addr", httpsAddr, "--api-addr", apiAddr, "--log-level", "warn", "--state-dir", t.TempDir()}, args...)...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
	})
	testenv.WaitFor(t, 20*time.Second, "interlock ready", func() error {
		code, body, err := httpGet(p.api+"/readyz", "")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
	return p
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// TestConvergenceBenchmark measures the time from `docker start` returning
// to the first 200 through the built-in proxy.
func TestConvergenceBenchmark(t *testing.T) {
	e := needBench(t)
	p := startProcess(t)
	const n = 60
	type item struct {
		host string
		id   string
	}
	items := make([]item, n)
	for i := range items {
		host := hostFor(t, fmt.Sprintf("c%d", i))
		c := e.Run(t, testenv.ContainerSpec{Name: fmt.Sprintf("conv%d", i), Labels: labelsFor(host), PublishPort: 8000, NoStart: true})
		items[i] = item{host: host, id: c.ID}
	}
	fast := &http.Client{Timeout: time.Second}
	// routed is when the proxy first knew the host (any answer but "no
	// route"): Interlock's own latency. served is the first 200: that plus
	// the application's start-up inside the container.
	var routed, served []time.Duration
	for _, it := range items {
		if err := e.Start(context.Background(), it.id); err != nil {
			t.Fatal(err)
		}
		r, sv := awaitRoute(t, fast, p.proxy, it.host, 500*time.Microsecond)
		routed, served = append(routed, r), append(served, sv)
	}
	logConvergence(t, "convergence", "builtin", routed, served)
}

// awaitRoute polls host through proxy every poll from now, and returns when
// the proxy first knew the host (any answer but "no route") and when it
// first answered 200.
func awaitRoute(t *testing.T, c *http.Client, proxy, host string, poll time.Duration) (routed, served time.Duration) {
	t.Helper()
	started := time.Now()
	sawRoute := false
	for {
		req, _ := http.NewRequest(http.MethodGet, proxy+"/fast", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if !sawRoute && resp.Header.Get("X-Interlock-Error") != "no-route" {
				sawRoute, routed = true, time.Since(started)
			}
			if resp.StatusCode == http.StatusOK {
				return routed, time.Since(started)
			}
		}
		if time.Since(started) > 10*time.Second {
			t.Fatalf("%s not routed within 10s", host)
		}
		time.Sleep(poll)
	}
}

// logConvergence prints percentiles of both measures of awaitRoute and,
// unless mode is "", records them for the bench summary as mode's.
func logConvergence(t *testing.T, what, mode string, routed, served []time.Duration) {
	t.Helper()
	if mode != "" {
		recordBench(t, "convergence", "containers started one at a time", mode, float64(max(len(routed), len(served))), "containers")
		recordPercentiles(t, "convergence", "docker start -> routed (not 'no route')", mode, routed)
		recordPercentiles(t, "convergence", "docker start -> first 200", mode, served)
	}
	for _, m := range []struct {
		what string
		d    []time.Duration
	}{{"routed (first answer that is not 'no route')", routed}, {"served (first 200)", served}} {
		if len(m.d) == 0 {
			continue
		}
		slices.Sort(m.d)
		t.Logf("%s over %d containers, docker start returned -> %s: p50 %v  p90 %v  p99 %v  max %v",
			what, len(m.d), m.what, percentile(m.d, .5), percentile(m.d, .9), percentile(m.d, .99), m.d[len(m.d)-1])
	}
}

// TestIdleBenchmark routes 200 containers and reads the process's CPU time
// and resident memory while nothing changes.
func TestIdleBenchmark(t *testing.T) {
	e := needBench(t)
	p := startProcess(t)
	const n = 200
	for i := range n {
		e.Run(t, testenv.ContainerSpec{Name: fmt.Sprintf("idle%d", i), Labels: labelsFor(hostFor(t, fmt.Sprintf("i%d", i))), PublishPort: 8000})
	}
	testenv.WaitFor(t, 60*time.Second, "200 routes", func() error {
		_, body, err := httpGet(p.api+"/api/status", "")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"backends": `) {
			return fmt.Errorf("no status")
		}
		i := strings.Index(body, `"backends": `) + len(`"backends": `)
		j := strings.IndexAny(body[i:], ",\n")
		got, _ := strconv.Atoi(body[i : i+j])
		if got < n {
			return fmt.Errorf("%d backends", got)
		}
		return nil
	})
	pid := p.cmd.Process.Pid
	cpu0 := cpuTime(t, pid)
	const window = 35 * time.Second // covers one periodic resync (30s)
	time.Sleep(window)
	used := cpuTime(t, pid) - cpu0
	mem := rss(t, pid)
	t.Logf("idle with %d routed containers over %v: CPU %.2f%% of one core, RSS %s",
		n, window, 100*used.Seconds()/window.Seconds(), mem)
	recordBench(t, "idle", fmt.Sprintf("CPU, %d routed containers, %v", n, window), "builtin", 100*used.Seconds()/window.Seconds(), "% of a core")
	if kb, ok := strings.CutSuffix(mem, " kB"); ok {
		if v, err := strconv.Atoi(strings.TrimSpace(kb)); err == nil {
			recordBench(t, "idle", fmt.Sprintf("RSS, %d routed containers", n), "builtin", float64(v)/1024, "MiB")
		}
	}
}

// cpuTime reads utime+stime of pid from /proc (clock ticks of 10ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func rss(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestSwarmBenchmark times, on a one-node swarm with Interlock in a
// container on the overlay: scale 1 -> 5 until every new task answers
// through the proxy, and a start-first rolling update of 5 tasks under
// load, counting failed requests.
func TestSwarmBenchmark(t *testing.T) {
	e := needBench(t)
	ctx := context.Background()
	created, err := e.EnsureSwarm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Cleanup(func() { _ = e.LeaveSwarm(context.Background()) })
	}
	ov := e.Overlay(t)
	il := e.RunInterlock(t, ov, "--log-level", "info")
	waitReady(t, il.API)
	host := hostFor(t, "bench")
	svc := e.Service(t, testenv.ServiceSpec{
		Name: "bench", Replicas: 1, Network: ov,
		Labels: map[string]string{"com.docker.lb.hosts": host, "com.docker.lb.port": "8000"},
		Env:    map[string]string{"DRAIN_DELAY": "2s"}, StopGrace: 10 * time.Second, StartFirst: true,
	})
	waitProxy(t, il.Proxy, host, http.StatusOK, 60*time.Second)

	for round := range 3 {
		if err := e.Scale(ctx, svc, 5); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		var running time.Duration
		seen := map[string]bool{}
		for len(seen) < 5 {
			if running == 0 {
				if n, _ := e.RunningTasks(ctx, svc); n == 5 {
					running = time.Since(began)
				}
			}
			if r, err := proxyGet(il.Proxy, host, "/fast"); err == nil && r.code == http.StatusOK {
				seen[r.backend] = true
			}
			if time.Since(began) > time.Minute {
				t.Fatalf("only %d tasks answered after a minute", len(seen))
			}
		}
		answering := time.Since(began)
		t.Logf("round %d: scale 1 -> 5: all 5 tasks running after %v, all answering through the proxy after %v",
			round, running.Round(time.Millisecond), answering.Round(time.Millisecond))
		recordDuration(t, "swarm", "scale 1 -> 5: all 5 tasks running", "builtin", running, "s")
		recordDuration(t, "swarm", "scale 1 -> 5: all 5 answering through the proxy", "builtin", answering, "s")
		if err := e.Scale(ctx, svc, 1); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, time.Minute, "one backend", func() error {
			if n := backendsOf(routesOf(t, il.API), host); n != 1 {
				return fmt.Errorf("%d backends", n)
			}
			return nil
		})
	}

	if err := e.Scale(ctx, svc, 5); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "five backends", func() error {
		if n := backendsOf(routesOf(t, il.API), host); n != 5 {
			return fmt.Errorf("%d backends", n)
		}
		return nil
	})
	l := startLoad(4, func() (response, error) { return proxyGet(il.Proxy, host, "/fast") })
	began := time.Now()
	if err := e.UpdateService(ctx, svc, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Env = append(s.TaskTemplate.ContainerSpec.Env, "VERSION=2")
	}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 3*time.Minute, "rolling update completed", func() error {
		res, err := e.Client.ServiceInspect(ctx, svc, swarmInspect)
		if err != nil {
			return err
		}
		if us := res.Service.UpdateStatus; us == nil || us.State != swarm.UpdateStateCompleted {
			return fmt.Errorf("update status %+v", us)
		}
		return nil
	})
	took := time.Since(began)
	time.Sleep(3 * time.Second)
	total, failed, first := l.Stop()
	t.Logf("rolling update of 5 tasks (start-first, parallelism 1): %v; %d requests through the proxy, %d failed (first: %v)",
		took.Round(time.Millisecond), total, failed, first)
	recordDuration(t, "swarm", "rolling update of 5 tasks (start-first)", "builtin", took, "s")
	recordBench(t, "swarm", "rolling update: requests through the proxy", "builtin", float64(total), "requests")
	recordBench(t, "swarm", "rolling update: failed requests", "builtin", float64(failed), "requests")
}
