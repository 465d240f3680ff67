package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// startHAProxyProcess runs `interlock run --proxy haproxy` as a child
// process with a supervised HAProxy, at the default --reload-quiet 100ms
// and --reload-max-wait 1s unless HAPROXY_BENCH_QUIET and
// HAPROXY_BENCH_MAX_WAIT say otherwise.
func startHAProxyProcess(t *testing.T, e *testenv.Env) (*process, haproxyRun) {
	t.Helper()
	h := newHAProxyRun(t, e)
	quiet, maxWait := cmp.Or(os.Getenv("HAPROXY_BENCH_QUIET"), "100ms"), cmp.Or(os.Getenv("HAPROXY_BENCH_MAX_WAIT"), "1s")
	t.Logf("--reload-quiet %s --reload-max-wait %s", quiet, maxWait)
	return startProcess(t, h.args("--reload-quiet="+quiet, "--reload-max-wait="+maxWait)...), h
}

// TestHAProxyConvergenceBenchmark measures, through a supervised HAProxy,
// the time from `docker start` returning to the first answer from the new
// container: for 40 replicas added one by one to a routed host (a
// backend-only change: the Runtime API, no reload), then for 40 new hosts
// (a reload each). Each start comes a calm second after the previous one
// converged, as in the nginx benchmark.
func TestHAProxyConvergenceBenchmark(t *testing.T) {
	e := needBench(t)
	p, h := startHAProxyProcess(t, e)
	const n = 40
	fast := &http.Client{Timeout: time.Second}
	spec := func(name string, labels map[string]string) testenv.ContainerSpec {
		return testenv.ContainerSpec{Name: name, Labels: labels, Network: h.network, ExposePorts: []uint16{8000}, NoStart: true,
			Env: map[string]string{"NAME": name}}
	}

	scaled := hostFor(t, "scaled")
	first := e.Run(t, spec("replica0", labelsFor(scaled)))
	if err := e.Start(context.Background(), first.ID); err != nil {
		t.Fatal(err)
	}
	awaitRoute(t, fast, p.proxy, scaled, time.Millisecond)
	replicas := make([]string, n) // IDs; replica i+1 answers as "replica<i+1>"
	for i := range replicas {
		replicas[i] = e.Run(t, spec(fmt.Sprintf("replica%d", i+1), labelsFor(scaled))).ID
	}
	r0 := p.reloads(t)
	var runtimeServed []time.Duration
	for i, id := range replicas {
		if err := e.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		runtimeServed = append(runtimeServed, awaitBackend(t, fast, p.proxy, scaled, fmt.Sprintf("replica%d", i+1)))
		time.Sleep(1100 * time.Millisecond)
	}
	runtimeReloads := p.reloads(t) - r0
	logConvergence(t, "haproxy new backend (runtime api)", "", nil, runtimeServed)
	t.Logf("haproxy reloads for %d replicas added one by one: %d", n, runtimeReloads)
	recordPercentiles(t, "convergence", "docker start -> new replica answers (runtime API)", "haproxy", runtimeServed)
	recordBench(t, "convergence", "reloads, new replicas one at a time", "haproxy", float64(runtimeReloads), "reloads")

	hosts := make([]string, n)
	ids := make([]string, n)
	for i := range hosts {
		hosts[i] = hostFor(t, fmt.Sprintf("h%d", i))
		ids[i] = e.Run(t, spec(fmt.Sprintf("host%d", i), labelsFor(hosts[i]))).ID
	}
	r1 := p.reloads(t)
	var routed, served []time.Duration
	for i := range hosts {
		if err := e.Start(context.Background(), ids[i]); err != nil {
			t.Fatal(err)
		}
		r, sv := awaitRoute(t, fast, p.proxy, hosts[i], time.Millisecond)
		routed, served = append(routed, r), append(served, sv)
		time.Sleep(1100 * time.Millisecond)
	}
	logConvergence(t, "haproxy new host (reload)", "haproxy", routed, served)
	hostReloads := p.reloads(t) - r1
	t.Logf("haproxy reloads for %d new hosts one by one: %d", n, hostReloads)
	recordBench(t, "convergence", "reloads, new hosts one at a time", "haproxy", float64(hostReloads), "reloads")
	if runtimeReloads != 0 {
		t.Errorf("%d reloads for backend-only changes; want none", runtimeReloads)
	}
}

// awaitBackend polls host through proxy until the container named backend
// answers, and returns how long that took.
func awaitBackend(t *testing.T, c *http.Client, proxy, host, backend string) time.Duration {
	t.Helper()
	started := time.Now()
	for time.Since(started) < 10*time.Second {
		req, _ := http.NewRequest(http.MethodGet, proxy+"/fast", nil)
		req.Host = host
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Backend") == backend {
				return time.Since(started)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Fatalf("%s: backend %s did not answer within 10s", host, backend)
	return 0
}

// TestHAProxyBurstBenchmark starts 200 containers at once (8 in parallel)
// and counts the HAProxy reloads until all of them are routed.
func TestHAProxyBurstBenchmark(t *testing.T) {
	e := needBench(t)
	p, h := startHAProxyProcess(t, e)
	burstBenchmark(t, e, p, "haproxy", func(name string, labels map[string]string) testenv.ContainerSpec {
		return testenv.ContainerSpec{Name: name, Labels: labels, Network: h.network, ExposePorts: []uint16{8000}, NoStart: true}
	})
}
