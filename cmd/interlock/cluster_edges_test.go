package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestClusterControllersAndEdges is the split deployment (--role
// controller and --role edge, internal/feed) on a real Swarm of two
// managers and two proxy workers (worker1 and worker2, labelled
// role=proxy; see testenv.Cluster):
//
//   - a controller on each manager watches its own node's engine through
//     its socket and serves the table over mutual TLS on the overlay,
//     known there as controller1 and controller2 (the names its
//     certificate carries and the edges dial);
//   - an edge on each proxy node follows both controllers over the
//     overlay, with no Docker socket, no Docker environment and no Docker
//     certificates (its container is inspected to prove it), and routes
//     to the tasks by their IPs on the overlay;
//   - the application's tasks run on the managers
//     (node.labels.role!=proxy).
//
// Then, under a steady load through both edges: controller 1 is killed
// (docker kill), the edges follow controller 2 and no request fails;
// controller 2 is killed, the edges serve on from the table they hold,
// degraded, and no request fails; the service is scaled up while no
// controller runs, which the edges cannot see (they keep the old
// backends: documented, an edge has no Docker); the controllers start
// again and the edges converge to the new scale, still with no request
// failed. Last, with every controller stopped again, an edge is killed and
// started: within a second of its start it answers for the route, from the
// table it saved on its state volume, and it follows a controller again
// once one starts.
func TestClusterControllersAndEdges(t *testing.T) {
	e := needDocker(t)
	ctx := context.Background()
	c := splitCluster(t, e, false)
	ov := c.Overlay(t)
	host := hostFor(t, "app")
	app := &clusterApp{c: c, ov: ov, host: host, replicas: 2, appNodes: map[string]bool{"manager1": true, "manager2": true}}
	app.svc = c.Service(t, testenv.ClusterServiceSpec{
		ServiceSpec: testenv.ServiceSpec{
			Name: "app", Replicas: app.replicas, Network: ov,
			Labels: map[string]string{"com.docker.lb.hosts": host, "com.docker.lb.port": "8000"},
		},
		Constraints: []string{"node.labels.role!=proxy"},
	})

	pki := testenv.NewFeedPKI(t, "controller1", "controller2")
	var ctrls []testenv.FeedContainer
	var urls []string
	for i, m := range c.Managers() {
		ct := c.RunFeed(t, testenv.ClusterFeedSpec{Node: m, Network: ov, Alias: fmt.Sprintf("controller%d", i+1), PKI: pki})
		ctrls, urls = append(ctrls, ct), append(urls, ct.URL)
	}
	var edges []testenv.FeedContainer
	var served []clusterEdge // the edges as waitServed takes them
	for _, name := range []string{"worker1", "worker2"} {
		ed := c.RunFeed(t, testenv.ClusterFeedSpec{Node: c.Node(name), Network: ov, PKI: pki, Controllers: urls})
		edges = append(edges, ed)
		served = append(served, clusterEdge{node: ed.Node, il: ed.InterlockContainer})
	}

	// 1. Every running task answers through each edge, and every edge
	// holds the controllers' version of the table (equal Docker state on
	// both managers, byte-identical tables).
	began := time.Now()
	waitReadyz(t, edges, "200 ready")
	app.waitServed(t, served)
	waitSameVersion(t, ctrls, edges)
	t.Logf("%d tasks of %s served through both edges, fed by both controllers, %v after the edges started", app.replicas, host, time.Since(began).Round(time.Millisecond))

	// 2. The edges have no Docker endpoint, and follow a controller.
	for _, ed := range edges {
		checkNoDocker(t, ed)
		if st := statusOf(t, ed.API); st.Docker.Host != urls[0] || !st.Docker.Connected {
			t.Errorf("%s: the edge follows %q (connected %v, %s); want %s, the first of --controllers", ed.Node, st.Docker.Host, st.Docker.Connected, st.Docker.LastError, urls[0])
		}
	}

	// 3. Controllers killed and started again under a steady load through
	// both edges.
	var loads []*steadyLoad
	for _, ed := range edges {
		loads = append(loads, startSteadyLoad(ed.Proxy, host, 10*time.Millisecond, 15*time.Second))
	}
	stopped := false
	stopLoads := func() []steadyResult {
		var out []steadyResult
		for _, l := range loads {
			out = append(out, l.stop())
		}
		stopped = true
		return out
	}
	t.Cleanup(func() {
		if !stopped {
			stopLoads()
		}
	})
	time.Sleep(time.Second)
	killed := time.Now()
	if err := ctrls[0].Kill(ctx); err != nil {
		t.Fatal(err)
	}
	waitFollowing(t, edges, urls[1])
	t.Logf("controller 1 killed: both edges follow controller 2 after %v", time.Since(killed).Round(time.Millisecond))
	time.Sleep(time.Second)

	killed = time.Now()
	if err := ctrls[1].Kill(ctx); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, edges, "200 degraded: not connected to a controller")
	t.Logf("controller 2 killed: both edges degraded after %v", time.Since(killed).Round(time.Millisecond))
	// They serve on, from the table they hold.
	app.waitServed(t, served)

	// A change with no controller running is not seen: an edge has no
	// Docker. The new tasks run; the edges keep the backends they had.
	before, _, err := app.running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Scale(ctx, app.svc, app.replicas+2); err != nil {
		t.Fatal(err)
	}
	app.replicas += 2
	testenv.WaitFor(t, time.Minute, fmt.Sprintf("%d tasks running", app.replicas), func() error {
		addrs, _, err := app.running(ctx)
		if err != nil {
			return err
		}
		if len(addrs) != int(app.replicas) {
			return fmt.Errorf("%d of %d running", len(addrs), app.replicas)
		}
		return nil
	})
	time.Sleep(time.Second)
	for _, ed := range edges {
		if got := backendAddrs(t, ed.API, host); !slices.Equal(got, before) {
			t.Errorf("%s: with no controller running, the edge's backends are %v; want those it had, %v", ed.Node, got, before)
		}
	}
	t.Logf("scaled to %d with no controller running: the edges keep the %d backends they had", app.replicas, len(before))

	// The controllers come back: the edges follow one and converge.
	began = time.Now()
	for _, ct := range ctrls {
		if _, err := ct.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	app.waitServed(t, served)
	waitReadyz(t, edges, "200 ready")
	waitSameVersion(t, ctrls, edges)
	t.Logf("controllers started again: %d tasks served through both edges after %v", app.replicas, time.Since(began).Round(time.Millisecond))
	for _, ed := range edges {
		if st := statusOf(t, ed.API); !slices.Contains(urls, st.Docker.Host) || !st.Docker.Connected {
			t.Errorf("%s: the edge follows %q (connected %v); want one of %v", ed.Node, st.Docker.Host, st.Docker.Connected, urls)
		}
	}
	time.Sleep(time.Second)
	for i, res := range stopLoads() {
		t.Logf("%s: %d GETs (one every 10ms, open loop, keep-alive) across the controllers' kills and restarts: %d failed, longest %v, mean %v",
			edges[i].Node, res.total, len(res.failures), res.longest.Round(time.Millisecond), res.mean().Round(100*time.Microsecond))
		for j, f := range res.failures {
			if j == 10 {
				t.Errorf("... and %d more failures", len(res.failures)-10)
				break
			}
			t.Errorf("%s: a GET failed, %v after controller 2 was killed, after %v: %s", edges[i].Node, f.start.Sub(killed).Round(time.Millisecond), f.took.Round(time.Millisecond), f.err)
		}
		if res.total < 300 {
			t.Errorf("%s: only %d requests were sent: the load did not run steadily", edges[i].Node, res.total)
		}
	}

	// 4. An edge restarted while no controller runs serves the same routes
	// from its saved table within a second of its start.
	for _, ct := range ctrls {
		if err := ct.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitReadyz(t, edges, "200 degraded: not connected to a controller")
	ed := edges[0]
	want := backendAddrs(t, ed.API, host)
	saved, err := ed.Node.ReadFile(ctx, ed.ID, testenv.FeedStateDir+"/"+savedTableFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range append([]string{host}, want...) {
		if !strings.Contains(string(saved), a) {
			t.Fatalf("%s: the saved table (%d bytes on volume %s) lacks %s:\n%s", ed.Node, len(saved), ed.Volume, a, saved)
		}
	}
	// Killed, not stopped: the table must be on disk already, not written
	// on the way out.
	if err := ed.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	started, err := ed.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	first, before := firstAnswer(ed.Proxy, host, started, 10*time.Second)
	if first.IsZero() {
		t.Fatalf("%s: the restarted edge did not answer 200 for %s in 10s; tries: %s", ed.Node, host, strings.Join(before, "; "))
	}
	t.Logf("%s: the restarted edge answered 200 for %s %v after its start (as Docker reports it; %v after docker start returned), at try %d",
		ed.Node, host, first.Sub(started).Round(time.Millisecond), first.Sub(returned).Round(time.Millisecond), len(before)+1)
	if len(before) > 0 {
		t.Logf("%s: the tries before it, timed from its start: %s", ed.Node, strings.Join(before, "; "))
	}
	// Refused or reset while the process starts, never answered from an
	// empty table: the listeners serve once the saved table is live
	// (Controller.Primed).
	for _, b := range before {
		if strings.Contains(b, ": 404") {
			t.Errorf("%s: the restarted edge answered from an empty table before its saved one: %s", ed.Node, b)
		}
	}
	if d := first.Sub(started); d > time.Second {
		t.Errorf("%s: the restarted edge first answered for %s %v after its start; want within a second", ed.Node, host, d.Round(time.Millisecond))
	}
	// The same routes: every task of the saved table answers.
	app.waitServed(t, served[:1])
	if got := backendAddrs(t, ed.API, host); !slices.Equal(got, want) {
		t.Errorf("%s: after the restart the edge's backends are %v; want the saved %v", ed.Node, got, want)
	}
	if rz := readyz(&instance{api: ed.API}); !strings.HasPrefix(rz, "200 degraded") {
		t.Errorf("%s: /readyz %q after the restart with no controller; want 200 degraded", ed.Node, rz)
	}
	if logs, err := c.Logs(ctx, ed.Node, ed.ID); err != nil {
		t.Error(err)
	} else if !strings.Contains(logs, "serving the last good table from disk") {
		t.Errorf("%s: no restore of the saved table in the restarted edge's log:\n%s", ed.Node, logs)
	}

	// A controller that comes back is followed again.
	if _, err := ctrls[1].Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFollowing(t, edges[:1], urls[1])
	waitReadyz(t, edges[:1], "200 ready")
}

// splitCluster is the Swarm of the split deployment's tests: two managers
// (the controllers', and the applications' nodes) and two proxy workers,
// worker1 and worker2, labelled role=proxy (the edges'); with sharedDir,
// one host directory at NodeSharedDir in every node.
func splitCluster(t *testing.T, e *testenv.Env, sharedDir bool) *testenv.Cluster {
	t.Helper()
	proxy := map[string]string{"role": "proxy"}
	return e.Cluster(t, testenv.ClusterSpec{
		Managers: 2, Workers: 2, SharedDir: sharedDir,
		NodeLabels: map[string]map[string]string{"worker1": proxy, "worker2": proxy},
	})
}

// checkNoDocker checks that an edge's container has no way to Docker: no
// bind mount at all (so no docker.sock), its one mount the state volume,
// no DOCKER_* variable, no Docker flag; and that Interlock in it, asked to
// talk to Docker (interlock render), finds no engine.
func checkNoDocker(t *testing.T, ed testenv.FeedContainer) {
	t.Helper()
	ctx := context.Background()
	ins, err := ed.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ins.Mounts {
		if m.Type != "volume" || m.Name != ed.Volume || m.Destination != testenv.FeedStateMount ||
			strings.Contains(m.Source, "docker.sock") || strings.Contains(m.Destination, "docker.sock") {
			t.Errorf("%s: the edge container mounts %s %q at %q; want only its state volume %s at %s", ed.Node, m.Type, m.Source, m.Destination, ed.Volume, testenv.FeedStateMount)
		}
	}
	if len(ins.Mounts) != 1 {
		t.Errorf("%s: the edge container has %d mounts; want one, its state volume", ed.Node, len(ins.Mounts))
	}
	if ins.HostConfig != nil && len(ins.HostConfig.Binds) > 0 {
		t.Errorf("%s: the edge container binds %v", ed.Node, ins.HostConfig.Binds)
	}
	for _, v := range ins.Config.Env {
		if strings.HasPrefix(v, "DOCKER_") {
			t.Errorf("%s: the edge container's environment has %s", ed.Node, v)
		}
	}
	for _, a := range ins.Config.Cmd {
		if strings.Contains(a, "docker") {
			t.Errorf("%s: the edge's command line has %q: %q", ed.Node, a, ins.Config.Cmd)
		}
	}
	code, out, errOut, err := ed.Node.Exec(ctx, ed.ID, testenv.InterlockPath, "render")
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.Contains(string(errOut), "docker.sock") {
		t.Errorf("%s: interlock render in the edge container exited %d; want a failure to reach /var/run/docker.sock\nstdout:\n%s\nstderr:\n%s", ed.Node, code, out, errOut)
	} else {
		t.Logf("%s: the edge container's one mount is its state volume, no DOCKER_* variable; interlock render there finds no engine: %s", ed.Node, strings.TrimSpace(string(errOut)))
	}
}

// waitReadyz waits until every edge's /readyz answers with a line that
// starts with want ("200 ready", "200 degraded: ...").
func waitReadyz(t *testing.T, edges []testenv.FeedContainer, want string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "/readyz "+want+" on every edge", func() error {
		for _, ed := range edges {
			if r := readyz(&instance{api: ed.API}); !strings.HasPrefix(r, want) {
				return fmt.Errorf("%s: /readyz %q", ed.Node, r)
			}
		}
		return nil
	})
}

// waitFollowing waits until every edge follows the controller at url.
func waitFollowing(t *testing.T, edges []testenv.FeedContainer, url string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "every edge following "+url, func() error {
		for _, ed := range edges {
			st, err := getStatus(ed.API)
			if err != nil {
				return fmt.Errorf("%s: %w", ed.Node, err)
			}
			if st.Docker.Host != url || !st.Docker.Connected {
				return fmt.Errorf("%s: following %q, connected %v (%s)", ed.Node, st.Docker.Host, st.Docker.Connected, st.Docker.LastError)
			}
		}
		return nil
	})
}

// waitSameVersion waits until the controllers and the edges hold the same
// table (its hash, the feed's version).
func waitSameVersion(t *testing.T, ctrls, edges []testenv.FeedContainer) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "the same version on every controller and edge", func() error {
		var first string
		var seen []string
		for i, f := range append(slices.Clone(ctrls), edges...) {
			st, err := getStatus(f.API)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", f.Name, f.Node, err)
			}
			h := st.Controller.Hash
			seen = append(seen, fmt.Sprintf("%s on %s %.12s", f.Name, f.Node, h))
			if i == 0 {
				first = h
			}
			if h == "" || h != first {
				return fmt.Errorf("versions differ: %s", strings.Join(seen, ", "))
			}
		}
		return nil
	})
}

// backendAddrs lists, sorted, the backend addresses of host in the table
// of the Interlock whose API is at apiBase.
func backendAddrs(t *testing.T, apiBase, host string) []string {
	t.Helper()
	var out []string
	for _, b := range backendsFor(routesOf(t, apiBase), host) {
		out = append(out, b.Address)
	}
	slices.Sort(out)
	return out
}

// firstAnswer polls host through the proxy at base, on a new connection
// each time, until it answers 200, and returns when that answer came (zero
// after within) and what each try before it got, timed from since.
func firstAnswer(base, host string, since time.Time, within time.Duration) (time.Time, []string) {
	hc := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(within)
	var before []string
	for time.Now().Before(deadline) {
		began := time.Now()
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		req.Host = host
		res, err := hc.Do(req)
		var got string
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return time.Now(), before
			}
			got = fmt.Sprintf("%d (%s)", res.StatusCode, res.Header.Get("X-Interlock-Error"))
		} else {
			got = err.Error()
		}
		before = append(before, fmt.Sprintf("at %v, for %v: %s", began.Sub(since).Round(time.Millisecond), time.Since(began).Round(time.Millisecond), got))
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, before
}
