package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/client"
)

// TestClusterSplitStack deploys examples/swarm/split.yml as it is, with
// docker stack deploy, on a real Swarm of two managers and two proxy
// workers: controllers as a global service on the managers, edges as a
// global service on the proxy nodes, the feed's CA and certificates as
// Docker secrets, each edge's state on its node's volume edge-state. It
// checks that the shop service is served through each proxy node by
// exactly its running tasks; that the edge containers have no Docker
// socket and no DOCKER_* setting; that with the controllers gone (their
// service constrained to no node) the edges serve on, no request failing
// under a steady load, and an edge task killed then comes back on its
// node and serves the route from its saved table within a second of its
// start; and that the controllers' return brings a scale-up to the edges.
func TestClusterSplitStack(t *testing.T) {
	e := needDocker(t)
	docker := dockerCLI(t)
	ctx := context.Background()
	c := splitCluster(t, e, false)
	ov := c.Overlay(t)
	img, err := e.InterlockImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadImage(ctx, img, c.Nodes...); err != nil { // no registry
		t.Fatal(err)
	}
	gid, err := testenv.NodeSocketGID()
	if err != nil {
		t.Fatal(err)
	}
	// The secrets' files under the names the stack reads.
	pki := testenv.NewFeedPKI(t, "controller")
	certs := t.TempDir()
	for dst, src := range map[string]string{"ca.pem": pki.CA, "controller.pem": pki.ServerCert, "controller-key.pem": pki.ServerKey,
		"edge.pem": pki.Cert, "edge-key.pem": pki.Key} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stackFile, err := filepath.Abs(filepath.Join("..", "..", "examples", "swarm", "split.yml"))
	if err != nil {
		t.Fatal(err)
	}
	const stack = "split"
	run := deployStack(t, c, docker, img, ov, stackFile, stack,
		"CERTS="+certs, "DOCKER_SOCKET="+testenv.NodeSocket, fmt.Sprintf("DOCKER_GID=%d", gid))
	managers := map[string]bool{"manager1": true, "manager2": true}
	proxyNodes := map[string]bool{"worker1": true, "worker2": true}
	waitTasksOn(t, c, stack+"_controller", managers)
	waitTasksOn(t, c, stack+"_edge", proxyNodes)

	edgeContainer := func(n *testenv.Node) (string, error) {
		res, err := n.Client.ContainerList(ctx, client.ContainerListOptions{
			Filters: make(client.Filters).Add("label", "com.docker.swarm.service.name="+stack+"_edge"),
		})
		if err != nil {
			return "", err
		}
		if len(res.Items) != 1 {
			return "", fmt.Errorf("%d running containers of the edge service on %s", len(res.Items), n)
		}
		return res.Items[0].ID, nil
	}
	var edges []clusterEdge
	for _, name := range []string{"worker1", "worker2"} {
		n := c.Node(name)
		id, err := edgeContainer(n)
		if err != nil {
			t.Fatal(err)
		}
		edges = append(edges, clusterEdge{node: n, il: testenv.InterlockContainer{ID: id, Proxy: fmt.Sprintf("http://127.0.0.1:%d", n.HostPort(testenv.NodeHTTPPort))}})
	}
	shop := &clusterApp{c: c, ov: ov, host: "shop.example.com", replicas: 3, svc: stack + "_shop", appNodes: managers}
	began := time.Now()
	shop.waitServed(t, edges)
	t.Logf("3 tasks of the stack's shop served through both edges %v after the stack's tasks ran", time.Since(began).Round(time.Millisecond))

	// The edges have no way to Docker.
	for _, ed := range edges {
		ins, err := ed.node.Client.ContainerInspect(ctx, ed.il.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ins.Container.Mounts {
			if m.Type != "volume" || m.Destination != "/var/lib/interlock" || strings.Contains(m.Source, "docker.sock") {
				t.Errorf("%s: the edge container mounts %s %q at %q; want only its state volume at /var/lib/interlock", ed.node, m.Type, m.Source, m.Destination)
			}
		}
		for _, v := range ins.Container.Config.Env {
			if strings.HasPrefix(v, "DOCKER_") {
				t.Errorf("%s: the edge container's environment has %s", ed.node, v)
			}
		}
	}

	// The controllers go away (constrained to no node) under a steady load.
	var loads []*steadyLoad
	for _, ed := range edges {
		loads = append(loads, startSteadyLoad(ed.il.Proxy, shop.host, 10*time.Millisecond, 15*time.Second))
	}
	stopped := false
	stopLoads := func() []steadyResult {
		stopped = true
		var out []steadyResult
		for _, l := range loads {
			out = append(out, l.stop())
		}
		return out
	}
	t.Cleanup(func() {
		if !stopped {
			stopLoads()
		}
	})
	time.Sleep(time.Second)
	if err := run("service", "update", "--detach", "--constraint-add", "node.labels.role==none", stack+"_controller"); err != nil {
		t.Fatal(err)
	}
	waitTasksOn(t, c, stack+"_controller", map[string]bool{})
	time.Sleep(2 * time.Second)
	for i, res := range stopLoads() {
		t.Logf("%s: %d GETs while the controllers went away: %d failed, longest %v", edges[i].node, res.total, len(res.failures), res.longest.Round(time.Millisecond))
		for j, f := range res.failures {
			if j == 5 {
				break
			}
			t.Errorf("%s: a GET failed after %v: %s", edges[i].node, f.took.Round(time.Millisecond), f.err)
		}
	}

	// An edge task killed with no controller running comes back on its
	// node (global service) and serves the route from its saved table.
	ed := edges[0]
	if _, err := ed.node.Client.ContainerKill(ctx, ed.il.ID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	var newID string
	testenv.WaitFor(t, time.Minute, "a new edge task running on "+ed.node.Name, func() error {
		id, err := edgeContainer(ed.node)
		if err != nil {
			return err
		}
		if id == ed.il.ID {
			return fmt.Errorf("still the killed container")
		}
		newID = id
		return nil
	})
	ins, err := ed.node.Client.ContainerInspect(ctx, newID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	started, err := time.Parse(time.RFC3339Nano, ins.Container.State.StartedAt)
	if err != nil {
		t.Fatal(err)
	}
	first, tries := firstAnswer(ed.il.Proxy, shop.host, started, 10*time.Second)
	if first.IsZero() {
		t.Fatalf("%s: the new edge task did not answer for %s; tries: %s", ed.node, shop.host, strings.Join(tries, "; "))
	}
	t.Logf("%s: the new edge task answered 200 for %s %v after its start, with no controller running", ed.node, shop.host, first.Sub(started).Round(time.Millisecond))
	if d := first.Sub(started); d > time.Second {
		t.Errorf("%s: the new edge task answered %v after its start; want within a second (its saved table)", ed.node, d.Round(time.Millisecond))
	}
	edges[0].il.ID = newID
	shop.waitServed(t, edges)

	// The controllers come back: a change reaches both edges again.
	if err := run("service", "update", "--detach", "--constraint-rm", "node.labels.role==none", stack+"_controller"); err != nil {
		t.Fatal(err)
	}
	waitTasksOn(t, c, stack+"_controller", managers)
	if err := c.Scale(ctx, shop.svc, 4); err != nil {
		t.Fatal(err)
	}
	shop.replicas = 4
	shop.waitServed(t, edges)
}

// waitTasksOn waits until service runs one task on each node of on, and
// none elsewhere.
func waitTasksOn(t *testing.T, c *testenv.Cluster, service string, on map[string]bool) {
	t.Helper()
	testenv.WaitFor(t, 90*time.Second, fmt.Sprintf("%s running on %v", service, slices.Sorted(maps.Keys(on))), func() error {
		tasks, err := c.Tasks(context.Background(), service)
		if err != nil {
			return err
		}
		got := map[string]int{}
		for _, tk := range tasks {
			if tk.Running() && tk.Node != nil {
				got[tk.Node.Name]++
			}
		}
		for n := range on {
			if got[n] != 1 {
				return fmt.Errorf("%d tasks on %s; running on %v", got[n], n, got)
			}
		}
		for n := range got {
			if !on[n] {
				return fmt.Errorf("a task on %s; running on %v", n, got)
			}
		}
		return nil
	})
}
