package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/client"
)

// TestClusterProxyNodes is the production layout on a real Swarm of one
// manager and three workers (each node a container running its own
// engine; see testenv.Cluster): two proxy workers labelled role=proxy,
// worker1 and worker2, on each one Interlock and its proxy, every
// Interlock watching the manager's Engine API over TLS on port 2376 with
// client certificates (mounted at /certs, or Docker secrets in the
// stack). The application service runs its tasks on the other nodes
// (manager1 and worker3, by the constraint node.labels.role!=proxy) and
// is reached by task IP over the overlay network. One cluster serves
// every subtest, one after the other on the same proxy nodes (each proxy
// node's ports are taken by one proxy at a time):
//
//   - builtin: an Interlock and its built-in proxy on each proxy node.
//   - nginx: an Interlock in nginx mode (--nginx-target containers) and a
//     side-loaded nginx container beside it on each proxy node. The
//     manager Interlock watches lists only its own node's containers, so
//     each Interlock finds its nginx through its own node's engine
//     (--proxy-docker-host unix:///var/run/docker.sock, the node's socket
//     mounted into its container), and says so in /api/status and
//     /readyz (ready, not degraded).
//   - stack: examples/swarm/stack.yml, deployed as it is with docker stack
//     deploy: Interlock as a global service on every proxy node, the
//     certificates as Docker secrets.
//
// In each: every proxy node serves every task and no other, from the
// application nodes only; a scale-up and a scale-down converge on every
// proxy node; and the proxy nodes' configurations are byte-identical.
func TestClusterProxyNodes(t *testing.T) {
	e := needDocker(t)
	proxy := map[string]string{"role": "proxy"}
	c := e.Cluster(t, testenv.ClusterSpec{
		Managers: 1, Workers: 3, TLS: true,
		NodeLabels: map[string]map[string]string{"worker1": proxy, "worker2": proxy},
	})
	ov := c.Overlay(t)
	host := hostFor(t, "app")
	app := &clusterApp{c: c, ov: ov, host: host, replicas: 3}
	app.svc = c.Service(t, testenv.ClusterServiceSpec{
		ServiceSpec: testenv.ServiceSpec{
			Name: "app", Replicas: app.replicas, Network: ov,
			Labels: map[string]string{"com.docker.lb.hosts": host, "com.docker.lb.port": "8000"},
		},
		Constraints: []string{"node.labels.role!=proxy"},
	})
	proxyNodes := map[string]bool{"worker1": true, "worker2": true}
	app.appNodes = map[string]bool{"manager1": true, "worker3": true}

	t.Run("builtin", func(t *testing.T) {
		var edges []clusterEdge
		for _, name := range []string{"worker1", "worker2"} {
			n := c.Node(name)
			edges = append(edges, clusterEdge{node: n, il: c.RunInterlock(t, testenv.ClusterInterlockSpec{Node: n, Network: ov, TLS: true})})
		}
		for _, ed := range edges {
			waitReady(t, ed.il.API)
		}
		app.checkLayout(t, edges)
	})

	t.Run("nginx", func(t *testing.T) {
		testenv.NginxBinary(t) // the nginx image is made of the host's Debian nginx
		label := proxyLabel(t)
		var edges []clusterEdge
		for _, name := range []string{"worker1", "worker2"} {
			n := c.Node(name)
			ng := c.RunNginx(t, testenv.ClusterNginxSpec{Node: n, Network: ov, Label: label})
			args := []string{"--proxy", "nginx", "--nginx-target", "containers", "--proxy-container-label", label,
				"--state-dir", "/var/lib/interlock", "--reload-quiet", "100ms"}
			il := c.RunInterlock(t, testenv.ClusterInterlockSpec{Node: n, Network: ov, TLS: true, NodeSocket: true,
				APIOnly: true, StateDir: "/var/lib/interlock", Args: args})
			edges = append(edges, clusterEdge{node: n, il: il, nginx: &ng, renderArgs: args})
		}
		for _, ed := range edges {
			waitReady(t, ed.il.API)
		}
		app.checkLayout(t, edges)
		for _, ed := range edges {
			checkProxyContainerFound(t, ed, "interlock.ext.name="+label, "unix:///var/run/docker.sock")
		}
	})

	t.Run("stack", func(t *testing.T) {
		docker := dockerCLI(t)
		ctx := context.Background()
		img, err := e.InterlockImage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var nodes []*testenv.Node
		for _, n := range c.Nodes {
			if proxyNodes[n.Name] {
				nodes = append(nodes, n)
			}
		}
		// No registry: the image goes into the nodes that run it.
		if err := c.LoadImage(ctx, img, nodes...); err != nil {
			t.Fatal(err)
		}
		const stack = "edge"
		stackFile, err := filepath.Abs(filepath.Join("..", "..", "examples", "swarm", "stack.yml"))
		if err != nil {
			t.Fatal(err)
		}
		deployStack(t, c, docker, img, ov, stackFile, stack,
			"MANAGER="+c.TLSHost, "CERTS="+filepath.Join(c.Dir, "certs", "client"))

		// One Interlock task on each proxy node, none elsewhere.
		var edges []clusterEdge
		testenv.WaitFor(t, 90*time.Second, "an Interlock task running on each proxy node", func() error {
			tasks, err := c.Tasks(ctx, stack+"_interlock")
			if err != nil {
				return err
			}
			on := map[string]bool{}
			for _, tk := range tasks {
				if tk.Running() && tk.Node != nil {
					on[tk.Node.Name] = true
				}
			}
			if !maps.Equal(on, proxyNodes) {
				return fmt.Errorf("running on %v, want %v", slices.Sorted(maps.Keys(on)), slices.Sorted(maps.Keys(proxyNodes)))
			}
			edges = edges[:0]
			for _, n := range nodes {
				res, err := n.Client.ContainerList(ctx, client.ContainerListOptions{
					Filters: make(client.Filters).Add("label", "com.docker.swarm.service.name="+stack+"_interlock"),
				})
				if err != nil {
					return err
				}
				if len(res.Items) != 1 {
					return fmt.Errorf("%d containers of the interlock service on %s", len(res.Items), n)
				}
				base := fmt.Sprintf("http://127.0.0.1:%d", n.HostPort(testenv.NodeHTTPPort))
				edges = append(edges, clusterEdge{node: n, il: testenv.InterlockContainer{ID: res.Items[0].ID, Proxy: base}})
			}
			return nil
		})
		shop := &clusterApp{c: c, ov: ov, host: "shop.example.com", replicas: 3, svc: stack + "_shop", appNodes: app.appNodes}
		shop.checkLayout(t, edges)
		// The stack's Interlocks route the other service too.
		app.waitServed(t, edges)
	})
}

// checkProxyContainerFound checks that the edge's Interlock, which watches
// a manager, drives the one nginx container beside it on its own node's
// engine: /api/status shows it as the one target there, reloaded, with
// no error, and /readyz says ready, not degraded.
func checkProxyContainerFound(t *testing.T, ed clusterEdge, label, host string) {
	t.Helper()
	code, body, err := httpGet(ed.il.API+"/api/status", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s: /api/status = %d %v", ed.node, code, err)
	}
	var st api.StatusResponse
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	pc := st.ProxyContainers
	if pc == nil || pc.Label != label || pc.Host != host || pc.Targets != 1 || pc.Signals == 0 || pc.LastError != "" ||
		pc.Docker == nil || !pc.Docker.Connected || st.Degraded != "" {
		t.Errorf("%s: /api/status degraded %q, proxy_containers %s; want the one nginx container on %s, labelled %s, signalled, connected",
			ed.node, st.Degraded, body, host, label)
	}
	if code, body, err := httpGet(ed.il.API+"/readyz", ""); err != nil || code != http.StatusOK || body != "ready\n" {
		t.Errorf("%s: /readyz = %d %q %v; want 200 ready", ed.node, code, body, err)
	}
}

// clusterEdge is one proxy node: its Interlock and, in nginx mode, the
// side-loaded nginx that serves its traffic.
type clusterEdge struct {
	node *testenv.Node
	// il.API is "" for an Interlock whose API is not published (the
	// stack's).
	il    testenv.InterlockContainer
	nginx *testenv.ProxyContainer
	// renderArgs are the flags for interlock render that match the
	// running Interlock's, after those RunInterlock passes.
	renderArgs []string
}

// clusterApp is a routed service of backend tasks (NAME
// "<node>.<slot>" for those testenv makes, the container's host name for
// the stack's).
type clusterApp struct {
	c             *testenv.Cluster
	ov, host, svc string
	replicas      uint64
	appNodes      map[string]bool // where its tasks may run
}

// checkLayout waits until every edge serves every task of the service,
// checks that the tasks run on the application nodes only and that the
// edges' configurations are byte-identical, then scales the service up
// by two and down to two and checks it all again each time.
func (a *clusterApp) checkLayout(t *testing.T, edges []clusterEdge) {
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	a.waitServed(t, edges)
	a.checkSameConfig(t, edges)
	t.Logf("%d tasks of %s served through %s in %v", a.replicas, a.host, edgeNames(edges), time.Since(began).Round(time.Millisecond))

	for _, to := range []uint64{a.replicas + 2, 2} {
		began := time.Now()
		if err := a.c.Scale(ctx, a.svc, to); err != nil {
			t.Fatal(err)
		}
		a.replicas = to
		a.waitServed(t, edges)
		a.checkSameConfig(t, edges)
		t.Logf("scaled %s to %d: every proxy node serves exactly the running tasks after %v", a.host, to, time.Since(began).Round(time.Millisecond))
	}
}

// running returns the running tasks' backend addresses (task IP on the
// overlay, port 8000), and those of the service's tasks that are gone,
// failing when a task runs outside the application nodes.
func (a *clusterApp) running(ctx context.Context) (addrs, gone []string, err error) {
	tasks, err := a.c.Tasks(ctx, a.svc)
	if err != nil {
		return nil, nil, err
	}
	for _, tk := range tasks {
		ip, ok := tk.Addrs[a.ov]
		if !tk.Running() {
			if ok {
				gone = append(gone, ip.String()+":8000")
			}
			continue
		}
		if tk.Node == nil || !a.appNodes[tk.Node.Name] {
			return nil, nil, fmt.Errorf("task %.12s of %s runs on %v, outside %v", tk.ID, a.svc, tk.Node, slices.Sorted(maps.Keys(a.appNodes)))
		}
		if !ok {
			return nil, nil, fmt.Errorf("task %.12s of %s has no address on %s", tk.ID, a.svc, a.ov)
		}
		addrs = append(addrs, ip.String()+":8000")
	}
	slices.Sort(addrs)
	// An address of a task that is gone may be a running task's now.
	gone = slices.DeleteFunc(gone, func(g string) bool { return slices.Contains(addrs, g) })
	return addrs, gone, nil
}

// waitServed waits until the service has its replicas running and every
// edge answers for its host from exactly that many distinct tasks (no
// task that is gone), and, where the API is published, lists exactly the
// running tasks' addresses as the host's backends.
func (a *clusterApp) waitServed(t *testing.T, edges []clusterEdge) {
	t.Helper()
	ctx := context.Background()
	// What the wait waited for, each time it changed: shown when the wait
	// was long, to tell a slow swarm from a slow Interlock.
	began, last := time.Now(), ""
	var waited []string
	defer func() {
		if took := time.Since(began); took > 10*time.Second {
			t.Logf("%d tasks of %s served after %v; waited for:\n%s", a.replicas, a.host, took.Round(time.Millisecond), strings.Join(waited, "\n"))
		}
	}()
	testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d tasks of %s served through every proxy node", a.replicas, a.host), func() (err error) {
		defer func() {
			if err == nil {
				return
			}
			msg := err.Error()
			if key := msg[:min(len(msg), 40)]; key != last {
				waited = append(waited, fmt.Sprintf("  %v: %s", time.Since(began).Round(time.Millisecond), msg))
				last = key
			}
		}()
		addrs, _, err := a.running(ctx)
		if err != nil {
			return err
		}
		if len(addrs) != int(a.replicas) {
			return fmt.Errorf("%d of %d tasks running", len(addrs), a.replicas)
		}
		for _, ed := range edges {
			if ed.il.API != "" {
				var got []string
				for _, b := range backendsFor(routesOf(t, ed.il.API), a.host) {
					got = append(got, b.Address)
				}
				slices.Sort(got)
				if !slices.Equal(got, addrs) {
					return fmt.Errorf("%s: backends %v, running tasks %v", ed.node, got, addrs)
				}
			}
			// Round robin over the backends: three rounds reach each.
			seen := map[string]bool{}
			for range 3 * int(a.replicas) {
				r, err := proxyGet(ed.il.Proxy, a.host, "/")
				if err != nil {
					return fmt.Errorf("%s: %w", ed.node, err)
				}
				if r.code != http.StatusOK {
					return fmt.Errorf("%s: %d from %q: %s", ed.node, r.code, r.backend, strings.TrimSpace(r.body))
				}
				seen[r.backend] = true
			}
			if len(seen) != int(a.replicas) {
				return fmt.Errorf("%s: %d distinct tasks answered, want %d: %v", ed.node, len(seen), a.replicas, slices.Sorted(maps.Keys(seen)))
			}
			for b := range seen {
				// testenv's tasks say <node>.<slot>: none may be a proxy
				// node's.
				if n, _, ok := strings.Cut(b, "."); ok && a.c.Node(n) != nil && !a.appNodes[n] {
					return fmt.Errorf("%s: answered by %s, on a proxy node", ed.node, b)
				}
			}
		}
		return nil
	})
}

// checkSameConfig waits until the edges' configurations are the same
// bytes, naming every running task's address and none of the tasks that
// are gone: for nginx the live nginx.conf in each side-loaded container
// (and it is what interlock render prints there), otherwise what
// interlock render prints in each Interlock container (the table and what
// was left out, as JSON).
func (a *clusterApp) checkSameConfig(t *testing.T, edges []clusterEdge) {
	t.Helper()
	ctx := context.Background()
	var size int
	testenv.WaitFor(t, 30*time.Second, "the same configuration on "+edgeNames(edges), func() error {
		addrs, gone, err := a.running(ctx)
		if err != nil {
			return err
		}
		var first []byte
		for i, ed := range edges {
			var conf []byte
			what := "interlock render"
			if ed.nginx != nil {
				what = "the live nginx.conf"
				if conf, err = ed.node.ReadFile(ctx, ed.nginx.ID, "/etc/nginx/nginx.conf"); err != nil {
					return err
				}
				rendered, err := ed.render(append([]string{"--http-addr", ":8080", "--https-addr", ":8443", "--api-addr", ":8081"}, ed.renderArgs...)...)
				if err != nil {
					return err
				}
				if !bytes.Equal(rendered, conf) {
					return fmt.Errorf("%s: interlock render --proxy nginx differs from the live nginx.conf:\n%s\n---- live:\n%s", ed.node, rendered, conf)
				}
			} else if conf, err = ed.render(); err != nil {
				return err
			}
			for _, want := range append([]string{a.host}, addrs...) {
				if !bytes.Contains(conf, []byte(want)) {
					return fmt.Errorf("%s: %s lacks %s:\n%s", ed.node, what, want, conf)
				}
			}
			for _, g := range gone {
				if bytes.Contains(conf, []byte(g)) {
					return fmt.Errorf("%s: %s still names %s, a task that is gone:\n%s", ed.node, what, g, conf)
				}
			}
			if i == 0 {
				first = conf
				continue
			}
			if !bytes.Equal(conf, first) {
				return fmt.Errorf("%s on %s and %s differ:\n%s\n---- %s:\n%s", what, edges[0].node, ed.node, first, ed.node, conf)
			}
		}
		size = len(first)
		return nil
	})
	t.Logf("the configurations of %s are the same %d bytes", edgeNames(edges), size)
}

// render runs interlock render with args in the edge's Interlock
// container, which has its environment (DOCKER_HOST and the
// certificates).
func (ed clusterEdge) render(args ...string) ([]byte, error) {
	code, out, errOut, err := ed.node.Exec(context.Background(), ed.il.ID, append([]string{testenv.InterlockPath, "render"}, args...)...)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("%s: interlock render exited %d: %s", ed.node, code, errOut)
	}
	return out, nil
}

func edgeNames(edges []clusterEdge) string {
	var names []string
	for _, ed := range edges {
		names = append(names, ed.node.Name)
	}
	return strings.Join(names, " and ")
}

// deployStack deploys stackFile as stack with the docker CLI against the
// cluster's first manager, with the variables the examples' stacks read
// (INTERLOCK_IMAGE img, APP_IMAGE the backend image, NETWORK ov, the
// nodes' HTTP and HTTPS ports) and extra ones, removes it when the test
// ends, and returns a runner of more docker commands in that environment.
func deployStack(t *testing.T, c *testenv.Cluster, docker, img, ov, stackFile, stack string, extra ...string) func(args ...string) error {
	t.Helper()
	environ := append(os.Environ(),
		"DOCKER_HOST=unix://"+c.Manager().Socket, "DOCKER_TLS_VERIFY=", "DOCKER_CERT_PATH=", "DOCKER_CONTEXT=",
		"INTERLOCK_IMAGE="+img, "APP_IMAGE="+image, "NETWORK="+ov,
		fmt.Sprintf("HTTP_PORT=%d", testenv.NodeHTTPPort), fmt.Sprintf("HTTPS_PORT=%d", testenv.NodeHTTPSPort))
	environ = append(environ, extra...)
	run := func(args ...string) error {
		cmd := exec.Command(docker, args...)
		cmd.Env = environ
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("docker %s:\n%s", strings.Join(args, " "), strings.TrimSpace(string(out)))
		return nil
	}
	if err := run("stack", "deploy", "--resolve-image", "never", "-c", stackFile, stack); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run("stack", "rm", stack); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return run
}

// dockerCLI returns the docker command-line client's path: docker stack
// deploy reads a stack file as users do. Without one the test is skipped,
// or fails under CI=true (Debian package docker.io).
func dockerCLI(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("docker")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the docker CLI is missing (Debian package docker.io)")
		}
		t.Skip("skipping: the docker CLI is missing")
	}
	return p
}
