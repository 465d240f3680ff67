package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// feedArgs are the flags of one side of the feed: a controller serves on
// addr with the PKI's server certificate, an edge uses its client one.
func feedArgs(p *testenv.PKI, controller bool) []string {
	if controller {
		return []string{"--feed-ca", p.CA, "--feed-cert", p.ServerCert, "--feed-key", p.ServerKey}
	}
	return []string{"--feed-ca", p.CA, "--feed-cert", p.Cert, "--feed-key", p.Key}
}

// startController runs `interlock run --role controller` watching the real
// engine, and returns its feed URL and its stop.
func startController(t *testing.T, p *testenv.PKI) (string, *instance, func()) {
	t.Helper()
	return startControllerAt(t, p, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
}

// startControllerAt is startController with the feed on addr.
func startControllerAt(t *testing.T, p *testenv.PKI, addr string) (string, *instance, func()) {
	t.Helper()
	in, stop := startStoppable(t, append([]string{"--role", "controller", "--feed-addr", addr, "--state-dir", t.TempDir()}, feedArgs(p, true)...)...)
	return "https://" + addr, in, stop
}

// startEdge runs `interlock run --role edge` following controllers, with
// state as its state directory.
func startEdge(t *testing.T, p *testenv.PKI, state string, controllers ...string) (*instance, func()) {
	t.Helper()
	args := append([]string{"--role", "edge", "--controllers", strings.Join(controllers, ","), "--state-dir", state,
		"--https-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}, feedArgs(p, false)...)
	return startStoppable(t, args...)
}

func apiStatus(t *testing.T, in *instance) api.StatusResponse {
	t.Helper()
	code, body, err := httpGet(in.api+"/api/status", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/status: %d %v %s", code, err, body)
	}
	var s api.StatusResponse
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decode /api/status: %v\n%s", err, body)
	}
	return s
}

func readyz(in *instance) string {
	code, body, err := httpGet(in.api+"/readyz", "")
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
}

// TestRolesControllersFeedEdge: two controllers watch the engine, one edge
// with no Docker access follows both over mutual TLS. A labelled container
// is reached through the edge; controller 1 stops under a steady load (no
// request fails, the edge moves to controller 2); both stop (the edge
// serves on, degraded); the edge restarts with no controller at all and
// serves the same route from its saved table within a second.
func TestRolesControllersFeedEdge(t *testing.T) {
	e := needDocker(t)
	p := testenv.NewPKI(t)
	host := hostFor(t, "web")
	e.Run(t, testenv.ContainerSpec{Name: "web", PublishPort: 8000, Env: map[string]string{"NAME": "web"}, Labels: labelsFor(host)})

	url1, c1, stop1 := startController(t, p)
	url2, c2, stop2 := startController(t, p)
	state := t.TempDir()
	edge, stopEdge := startEdge(t, p, state, url1, url2)
	if r := edge.waitStatus(t, host, "/", http.StatusOK); r.backend != "web" {
		t.Fatalf("answered by %q, want web", r.backend)
	}
	// Equal Docker state, byte-identical tables: the edge holds both
	// controllers' version.
	testenv.WaitFor(t, 10*time.Second, "the same version everywhere", func() error {
		h1, h2, he := apiStatus(t, c1).Controller.Hash, apiStatus(t, c2).Controller.Hash, apiStatus(t, edge).Controller.Hash
		if h1 != h2 || h1 != he {
			return fmt.Errorf("controller 1 %.12s, controller 2 %.12s, edge %.12s", h1, h2, he)
		}
		return nil
	})
	if st := apiStatus(t, edge); st.Docker.Host != url1 || !st.Docker.Connected || readyz(edge) != "200 ready" {
		t.Fatalf("edge follows %q (connected %v), readyz %q; want %s, ready", st.Docker.Host, st.Docker.Connected, readyz(edge), url1)
	}
	// Controller 1 counts what it sent the edge.
	m := c1.scrape(t)
	if v, ok := sample(m, "interlock_feed_snapshots_sent_total", nil); !ok || v < 1 {
		t.Errorf("interlock_feed_snapshots_sent_total = %v (found %v), want at least 1", v, ok)
	}
	if v, ok := sample(m, "interlock_feed_snapshot_bytes", labels("encoding", "gzip")); !ok || v <= 0 {
		t.Errorf("interlock_feed_snapshot_bytes{encoding=gzip} = %v (found %v), want the live snapshot's size", v, ok)
	}

	// Controller 1 stops under load.
	load := startRateLoad(strings.TrimPrefix(edge.proxy, "http://"), host, 50)
	time.Sleep(500 * time.Millisecond)
	stop1()
	testenv.WaitFor(t, 10*time.Second, "the edge follows controller 2", func() error {
		st := apiStatus(t, edge)
		if st.Docker.Host != url2 || !st.Docker.Connected {
			return fmt.Errorf("following %q, connected %v (%s)", st.Docker.Host, st.Docker.Connected, st.Docker.LastError)
		}
		return nil
	})
	// A change still reaches the edge, through controller 2.
	later := hostFor(t, "later")
	e.Run(t, testenv.ContainerSpec{Name: "later", PublishPort: 8000, Env: map[string]string{"NAME": "later"}, Labels: labelsFor(later)})
	edge.waitStatus(t, later, "/", http.StatusOK)
	total, failed, firsts := load.Stop()
	t.Logf("through the edge while controller 1 stopped: %d requests, %d failed", total, failed)
	if failed != 0 || total < 25 {
		t.Errorf("%d of %d requests failed (want none, and at least 25 sent); first: %v", failed, total, firsts)
	}

	// Both gone: the edge serves its last table, degraded.
	stop2()
	testenv.WaitFor(t, 15*time.Second, "readyz degraded", func() error {
		if r := readyz(edge); !strings.HasPrefix(r, "200 degraded: not connected to a controller") {
			return fmt.Errorf("readyz %q", r)
		}
		return nil
	})
	for _, h := range []string{host, later} {
		if r, err := edge.get(h, "/"); err != nil || r.code != http.StatusOK {
			t.Errorf("%s through the edge without controllers: %d %v", h, r.code, err)
		}
	}

	// The edge restarts with no controller: its saved table at once.
	stopEdge()
	start := time.Now()
	again, _ := startEdge(t, p, state, url1, url2)
	r := again.waitStatus(t, host, "/", http.StatusOK)
	took := time.Since(start)
	t.Logf("restarted edge served the saved route %v after start", took)
	if took > time.Second {
		t.Errorf("the saved route took %v after start; want under a second", took)
	}
	if r.backend != "web" {
		t.Errorf("answered by %q, want web", r.backend)
	}
	if rz := readyz(again); !strings.HasPrefix(rz, "200 degraded") {
		t.Errorf("readyz %q; want 200 degraded", rz)
	}
	if !strings.Contains(again.logs.String(), "serving the last good table from disk") {
		t.Errorf("no restore in the log:\n%s", again.logs)
	}
	// A controller that comes back is followed again.
	startControllerAt(t, p, strings.TrimPrefix(url2, "https://"))
	testenv.WaitFor(t, 15*time.Second, "readyz ready again", func() error {
		if r := readyz(again); r != "200 ready" {
			return fmt.Errorf("readyz %q", r)
		}
		return nil
	})
}

// TestRolesEdgeRefusesDocker: an edge has no Docker access; any Docker
// endpoint given to it, from a flag or the environment, stops it at start
// with an error naming the setting.
func TestRolesEdgeRefusesDocker(t *testing.T) {
	p := testenv.NewPKI(t)
	base := append([]string{"run", "--role", "edge", "--controllers", "https://127.0.0.1:8444"}, feedArgs(p, false)...)
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
		want    string
	}{
		{name: "flag", args: []string{"--docker-host", "unix:///var/run/docker.sock"}, want: "--docker-host is set, but --role is edge: an edge has no Docker access"},
		{name: "DOCKER_HOST", environ: []string{"DOCKER_HOST=tcp://127.0.0.1:2376"}, want: "DOCKER_HOST is set, but --role is edge"},
		{name: "DOCKER_CERT_PATH", environ: []string{"DOCKER_CERT_PATH=" + p.Dir}, want: "tls_ca from DOCKER_CERT_PATH is set, but --role is edge"},
		{name: "proxy docker host", args: []string{"--proxy-docker-host", "unix:///var/run/docker.sock"}, want: "--proxy-docker-host is set, but --role is edge"},
		{name: "no controllers", args: []string{"--controllers="}, want: "--controllers is empty, but --role is edge"},
		{name: "no certificate", args: []string{"--feed-cert=", "--feed-key="}, want: "--feed-cert is empty, but --role is edge: the feed is mutual TLS"},
		{name: "nginx", args: []string{"--proxy", "nginx"}, want: `--proxy is "nginx", but --role is edge`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := realMain(ctx, append(slices.Clone(base), tc.args...), tc.environ, io.Discard, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant a failure with %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// TestRolesConvergenceBenchmark: `docker start` returned -> the first 200,
// through an edge (controller -> feed -> edge) and through the single
// process, in the same run, polled side by side. RUN_BENCH=1 only.
func TestRolesConvergenceBenchmark(t *testing.T) {
	e := needBench(t)
	p := testenv.NewPKI(t)
	url, _, _ := startController(t, p)
	edge, _ := startEdge(t, p, t.TempDir(), url)
	all := startInterlock(t)
	const n = 30
	fast := &http.Client{Timeout: time.Second}
	// routed: the first answer that is not "no route" (Interlock's own
	// latency); served: the first 200 (adds the application's start-up).
	var routedEdge, routedAll, servedEdge, servedAll, extra []time.Duration
	for i := range n {
		host := hostFor(t, fmt.Sprintf("c%d", i))
		c := e.Run(t, testenv.ContainerSpec{Name: fmt.Sprintf("conv%d", i), Labels: labelsFor(host), PublishPort: 8000, NoStart: true})
		if err := e.Start(context.Background(), c.ID); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var re, se, ra, sa time.Duration
		started := time.Now()
		for _, x := range []struct {
			base           string
			routed, served *time.Duration
		}{{edge.proxy, &re, &se}, {all.proxy, &ra, &sa}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				*x.routed, *x.served = firstOK(fast, x.base, host, started)
			}()
		}
		wg.Wait()
		if se < 0 || sa < 0 {
			t.Fatalf("%s not served within 10s (edge %v, all %v)", host, se, sa)
		}
		routedEdge, routedAll = append(routedEdge, re), append(routedAll, ra)
		servedEdge, servedAll = append(servedEdge, se), append(servedAll, sa)
		extra = append(extra, re-ra)
	}
	for _, m := range []struct {
		what string
		d    []time.Duration
	}{
		{"routed through an edge", routedEdge}, {"routed all-in-one", routedAll},
		{"routed, edge minus all-in-one per sample", extra},
		{"first 200 through an edge", servedEdge}, {"first 200 all-in-one", servedAll},
	} {
		slices.Sort(m.d)
		recordPercentiles(t, "edge", "docker start -> "+m.what, "builtin", m.d)
		t.Logf("docker start -> %s: n=%d p50 %v p90 %v p99 %v max %v", m.what, len(m.d),
			percentile(m.d, 0.5).Round(10*time.Microsecond), percentile(m.d, 0.9).Round(10*time.Microsecond),
			percentile(m.d, 0.99).Round(10*time.Microsecond), m.d[len(m.d)-1].Round(10*time.Microsecond))
	}
}

// firstOK polls host through base until a 200, and returns the times
// since started of the first answer that was not "no route" and of the
// first 200 (-1 after 10s).
func firstOK(c *http.Client, base, host string, started time.Time) (routed, served time.Duration) {
	routed = -1
	for time.Since(started) < 10*time.Second {
		req, _ := http.NewRequest(http.MethodGet, base+"/fast", nil)
		req.Host = host
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if routed < 0 && resp.Header.Get("X-Interlock-Error") != "no-route" {
				routed = time.Since(started)
			}
			if resp.StatusCode == http.StatusOK {
				return routed, time.Since(started)
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
	return routed, -1
}
