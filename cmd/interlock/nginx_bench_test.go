package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// startNginxProcess runs `interlock run --proxy nginx` as a child process
// with a supervised nginx.
func startNginxProcess(t *testing.T, extra ...string) *process {
	t.Helper()
	n := newNginxRun(t)
	// The defaults, not the tests' short quiet period, unless
	// NGINX_BENCH_QUIET and NGINX_BENCH_MAX_WAIT say otherwise.
	quiet, maxWait := cmp.Or(os.Getenv("NGINX_BENCH_QUIET"), "100ms"), cmp.Or(os.Getenv("NGINX_BENCH_MAX_WAIT"), "1s")
	t.Logf("--reload-quiet %s --reload-max-wait %s", quiet, maxWait)
	return startProcess(t, n.args(append([]string{"--reload-quiet=" + quiet, "--reload-max-wait=" + maxWait}, extra...)...)...)
}

func (p *process) reloads(t *testing.T) int64 {
	t.Helper()
	_, body, err := httpGet(p.api+"/api/status", "")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Reloads int64 `json:"reloads"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	return s.Reloads
}

// TestNginxConvergenceBenchmark measures the time from `docker start`
// returning to the first answer through nginx, over 50 containers started
// one after the other, with the default --reload-quiet 100ms and
// --reload-max-wait 1s. Each start comes a calm second after the previous
// one converged: an isolated change. Back to back, starts count as churn
// and the quiet period stretches towards the max wait (see controller).
func TestNginxConvergenceBenchmark(t *testing.T) {
	e := needBench(t)
	p := startNginxProcess(t)
	const n = 50
	type item struct{ host, id string }
	items := make([]item, n)
	for i := range items {
		host := hostFor(t, fmt.Sprintf("c%d", i))
		c := e.Run(t, testenv.ContainerSpec{Name: fmt.Sprintf("nconv%d", i), Labels: labelsFor(host), PublishPort: 8000, NoStart: true})
		items[i] = item{host: host, id: c.ID}
	}
	fast := &http.Client{Timeout: time.Second}
	var routed, served []time.Duration
	r0 := p.reloads(t)
	for _, it := range items {
		if err := e.Start(context.Background(), it.id); err != nil {
			t.Fatal(err)
		}
		r, sv := awaitRoute(t, fast, p.proxy, it.host, time.Millisecond)
		routed, served = append(routed, r), append(served, sv)
		time.Sleep(1100 * time.Millisecond) // a calm max-wait: the next start is an isolated change
	}
	logConvergence(t, "nginx convergence", "nginx", routed, served)
	reloads := p.reloads(t) - r0
	t.Logf("nginx reloads for %d sequential starts: %d", n, reloads)
	recordBench(t, "convergence", "reloads, new hosts one at a time", "nginx", float64(reloads), "reloads")
}

// TestNginxBurstBenchmark starts 200 containers at once (8 in parallel)
// and counts the nginx reloads until all of them are routed.
func TestNginxBurstBenchmark(t *testing.T) {
	e := needBench(t)
	p := startNginxProcess(t)
	burstBenchmark(t, e, p, "nginx", func(name string, labels map[string]string) testenv.ContainerSpec {
		return testenv.ContainerSpec{Name: name, Labels: labels, PublishPort: 8000, NoStart: true}
	})
}

// burstBenchmark starts 200 containers of spec at once (8 in parallel) and
// counts the reloads of p's driver until all of them are routed.
func burstBenchmark(t *testing.T, e *testenv.Env, p *process, driver string, spec func(name string, labels map[string]string) testenv.ContainerSpec) {
	const n, workers = 200, 8
	hosts := make([]string, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				hosts[i] = hostFor(t, fmt.Sprintf("b%d", i))
				ids[i] = e.Run(t, spec(fmt.Sprintf("burst%d", i), labelsFor(hosts[i]))).ID
			}
		}()
	}
	wg.Wait()
	r0 := p.reloads(t)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := e.Start(context.Background(), ids[i]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	started := time.Since(start)
	fast := &http.Client{Timeout: time.Second}
	for _, h := range hosts {
		testenv.WaitFor(t, 60*time.Second, h+" routed", func() error {
			req, _ := http.NewRequest(http.MethodGet, p.proxy+"/fast", nil)
			req.Host = h
			resp, err := fast.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	}
	routed, reloads := time.Since(start), p.reloads(t)-r0
	t.Logf("burst of %d container starts (%d at a time, %v for docker to start them): all routed after %v with %d %s reloads",
		n, workers, started.Round(time.Millisecond), routed.Round(time.Millisecond), reloads, driver)
	what := fmt.Sprintf("%d starts, %d at a time", n, workers)
	recordDuration(t, "burst", what+": docker took", driver, started, "s")
	recordDuration(t, "burst", what+": all routed after", driver, routed, "s")
	recordBench(t, "burst", what+": reloads", driver, float64(reloads), "reloads")
}
