package testenv

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// What a cluster's tests create inside the nodes (overlays, services,
// containers) is removed when the test ends as long as its node lives
// (overlays and services through whichever manager still lives); a killed
// node takes its containers with it, and the whole cluster goes at the end
// of the test that made it.

// Overlay creates an attachable overlay network on the first live manager,
// carrying the run labels, and removes it when the test ends.
func (c *Cluster) Overlay(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := c.Manager()
	name := c.env.name("", "ov")
	res, err := m.Client.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "overlay", Attachable: true, Labels: c.env.Labels()})
	if err != nil {
		t.Fatalf("create overlay network %s on %s: %v", name, m.Name, err)
	}
	t.Cleanup(func() {
		// After a node loss the network stays in use for tens of seconds
		// (by tasks of the lost node, or until the agents, in backoff,
		// tell a new leader that their containers went); it goes with
		// the nodes at the cluster's teardown.
		if slices.ContainsFunc(c.Nodes, (*Node).Killed) {
			return
		}
		m := c.Manager()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// A network stays in use for a moment after the containers on
		// it went.
		retryCleanup(t, 30*time.Second, "removal of network "+name, func() error {
			_, err := m.Client.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{})
			if err != nil && !cerrdefs.IsNotFound(err) {
				return err
			}
			return nil
		})
	})
	return name
}

// retryCleanup is WaitFor for cleanups, which run after the test's
// context ended (WaitFor gives up at once then): it calls cond every
// 100ms until it returns nil, and reports the last error as a test error
// when timeout passes first.
func retryCleanup(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: timed out after %s waiting for %s: %v", timeout, what, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ClusterServiceSpec describes a service of backend tasks for
// Cluster.Service.
type ClusterServiceSpec struct {
	ServiceSpec
	// Constraints are placement constraints ("node.labels.role!=proxy").
	Constraints []string
	// RestartDelay is the wait before a failed task, or one lost with its
	// node, is replaced. Zero means 100ms (the engine's default is 5s).
	RestartDelay time.Duration
}

// Service creates a service of backend tasks through the first live
// manager and removes it when the test ends; it returns the service ID.
// NAME, the name a task answers with in X-Backend, is "<node
// hostname>.<slot>", so a response tells which node served it.
func (c *Cluster) Service(t testing.TB, spec ClusterServiceSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, m := c.env, c.Manager()
	name := e.name(spec.Name, "svc")
	env := map[string]string{"NAME": "{{.Node.Hostname}}.{{.Task.Slot}}"}
	maps.Copy(env, spec.Env)
	replicas := spec.Replicas
	delay := spec.RestartDelay
	if delay == 0 {
		delay = 100 * time.Millisecond
	}
	cs := &swarm.ContainerSpec{Image: c.backend, Env: envList(env), Labels: e.Labels()}
	if spec.StopGrace > 0 {
		cs.StopGracePeriod = &spec.StopGrace
	}
	s := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: e.withLabels(spec.Labels)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Placement:     &swarm.Placement{Constraints: spec.Constraints},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	if spec.Network != "" {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: spec.Network}}
	}
	if spec.StartFirst {
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStartFirst}
	}
	res, err := m.Client.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: s})
	if err != nil {
		t.Fatalf("create service %s on %s: %v", name, m.Name, err)
	}
	t.Cleanup(func() {
		m := c.Manager()
		if m.Killed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := m.Client.ServiceRemove(ctx, res.ID, client.ServiceRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove service %s: %v", name, err)
		}
	})
	return res.ID
}

// UpdateService applies change to the service's spec through the first
// live manager. Like every call that needs the Raft leader, it waits or
// fails while the swarm has none: give ctx a deadline.
func (c *Cluster) UpdateService(ctx context.Context, id string, change func(*swarm.ServiceSpec)) error {
	m := c.Manager()
	res, err := m.Client.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect service %.12s on %s: %w", id, m.Name, err)
	}
	spec := res.Service.Spec
	change(&spec)
	if _, err := m.Client.ServiceUpdate(ctx, id, client.ServiceUpdateOptions{Version: res.Service.Version, Spec: spec}); err != nil {
		return fmt.Errorf("update service %.12s on %s: %w", id, m.Name, err)
	}
	return nil
}

// Scale sets the service's replica count.
func (c *Cluster) Scale(ctx context.Context, id string, replicas uint64) error {
	return c.UpdateService(ctx, id, func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = &replicas })
}

// UpdateState returns the state of the service's last update ("" if it
// was never updated: UpdateStatus is nil), as the first live manager sees
// it.
func (c *Cluster) UpdateState(ctx context.Context, id string) (swarm.UpdateState, error) {
	m := c.Manager()
	res, err := m.Client.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect service %.12s on %s: %w", id, m.Name, err)
	}
	if res.Service.UpdateStatus == nil {
		return "", nil
	}
	return res.Service.UpdateStatus.State, nil
}

// ClusterTask is a task of a service as the manager sees it.
type ClusterTask struct {
	ID   string
	Slot int
	// Node is the node the task was given to; nil if none yet.
	Node *Node
	// State is the task's observed state, Desired what the orchestrator
	// wants of it: a task of a lost node stays "running" with desired
	// state "shutdown".
	State, Desired swarm.TaskState
	// Since is when the task entered State, as the node that runs it
	// reported (the task status's timestamp; the nodes share the host's
	// clock).
	Since time.Time
	// Addrs are the task's IPs by network name.
	Addrs map[string]netip.Addr
}

// Running reports whether the task runs and is meant to.
func (t ClusterTask) Running() bool {
	return t.State == swarm.TaskStateRunning && t.Desired == swarm.TaskStateRunning
}

// Tasks lists the service's tasks through the first live manager, sorted
// by slot then ID.
func (c *Cluster) Tasks(ctx context.Context, service string) ([]ClusterTask, error) {
	m := c.Manager()
	res, err := m.Client.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", service)})
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s on %s: %w", service, m.Name, err)
	}
	out := make([]ClusterTask, 0, len(res.Items))
	for _, tk := range res.Items {
		ct := ClusterTask{ID: tk.ID, Slot: tk.Slot, Node: c.NodeByID(tk.NodeID), State: tk.Status.State, Desired: tk.DesiredState,
			Since: tk.Status.Timestamp, Addrs: map[string]netip.Addr{}}
		for _, na := range tk.NetworksAttachments {
			if len(na.Addresses) > 0 {
				ct.Addrs[na.Network.Spec.Name] = na.Addresses[0].Addr()
			}
		}
		out = append(out, ct)
	}
	slices.SortFunc(out, func(a, b ClusterTask) int {
		if a.Slot != b.Slot {
			return a.Slot - b.Slot
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out, nil
}

// ClusterInterlockSpec describes Interlock run as a container on one node
// of a cluster, for Cluster.RunInterlock.
type ClusterInterlockSpec struct {
	// Node is where the container runs.
	Node *Node
	// Network is the overlay the container is attached to (attachable,
	// as Cluster.Overlay makes them).
	Network string
	// TLS makes Interlock watch the first manager over TCP with TLS, as
	// DOCKER_HOST=Cluster.TLSHost, DOCKER_TLS_VERIFY=1 and
	// DOCKER_CERT_PATH=/certs (the client certificates, mounted from
	// NodeClientCertsDir): ClusterSpec.TLS must be set. Without it,
	// Interlock watches the engine of its own node through its socket,
	// which must then be a manager's.
	TLS bool
	// Managers, with TLS, are the managers to watch instead, in order:
	// --docker-host tcp://IP1:2376,tcp://IP2:2376,... (their TLSHosts),
	// so that Interlock fails over from one to the next.
	Managers []*Node
	// NodeSocket, with TLS, also mounts the node's own engine socket at
	// /var/run/docker.sock (the image runs as nobody: the container gets
	// the group that owns the socket, no root) and passes
	// --proxy-docker-host unix:///var/run/docker.sock: Interlock watches
	// a manager and drives the side-loaded proxy containers of its own
	// node, which a manager does not list (Cluster.RunNginx on a worker).
	NodeSocket bool
	// Args follow "run --http-addr :8080 --https-addr :8443 --api-addr
	// :8081 --log-level debug".
	Args []string
	// APIOnly publishes only the API port (on NodeAPIPort): the proxy
	// Interlock drives runs in another container of the node, which
	// publishes NodeHTTPPort and NodeHTTPSPort (a side-loaded nginx,
	// Cluster.RunNginx). The returned URLs are the same.
	APIOnly bool
	// StateDir, when set, is a writable tmpfs in the container (for
	// --state-dir: the image runs as nobody, on a file system it cannot
	// write).
	StateDir string
}

// RunInterlock runs Interlock in a container of the Interlock image
// (copied into the node first) on spec.Node, its proxy, HTTPS and API
// ports published on the node's NodeHTTPPort, NodeHTTPSPort and
// NodeAPIPort, so that the returned URLs reach them from the host's
// loopback; so one Interlock per node. The container is removed when the
// test ends (its log is shown if the test failed), unless its node was
// killed.
func (c *Cluster) RunInterlock(t testing.TB, spec ClusterInterlockSpec) InterlockContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, n := c.env, spec.Node
	img, err := e.InterlockImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadImage(ctx, img, n); err != nil {
		t.Fatal(err)
	}
	name := e.name("", "interlock")
	proxyPort, httpsPort, apiPort := tcpPort(8080), tcpPort(8443), tcpPort(8081)
	on := func(p uint16) []network.PortBinding {
		return []network.PortBinding{{HostIP: netip.IPv4Unspecified(), HostPort: strconv.Itoa(int(p))}}
	}
	cfg := &container.Config{
		Image:        img,
		Cmd:          append([]string{"run", "--http-addr", ":8080", "--https-addr", ":8443", "--api-addr", ":8081", "--log-level", "debug"}, spec.Args...),
		Labels:       e.Labels(),
		ExposedPorts: network.PortSet{proxyPort: {}, apiPort: {}, httpsPort: {}},
	}
	host := &container.HostConfig{
		PortBindings: network.PortMap{proxyPort: on(NodeHTTPPort), httpsPort: on(NodeHTTPSPort), apiPort: on(NodeAPIPort)},
		NetworkMode:  container.NetworkMode(spec.Network),
	}
	if spec.APIOnly {
		host.PortBindings = network.PortMap{apiPort: on(NodeAPIPort)}
	}
	if spec.StateDir != "" {
		// The image's user owns it: over a directory of the image (its
		// /var/lib/interlock belongs to nobody, mode 0755) runc gives the
		// tmpfs that directory's mode, whatever mode= says.
		host.Tmpfs = map[string]string{spec.StateDir: "mode=1777,uid=65534,gid=65534"}
	}
	if spec.TLS {
		if c.TLSHost == "" {
			t.Fatal("RunInterlock with TLS on a cluster made without ClusterSpec.TLS")
		}
		cfg.Env = []string{"DOCKER_HOST=" + c.TLSHost, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=/certs"}
		host.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: NodeClientCertsDir, Target: "/certs", ReadOnly: true}}
		if spec.NodeSocket {
			if err := mountNodeSocket(host); err != nil {
				t.Fatal(err)
			}
			cfg.Cmd = slices.Insert(cfg.Cmd, 1, "--proxy-docker-host", "unix:///var/run/docker.sock")
		}
		if len(spec.Managers) > 0 {
			var hosts []string
			for _, m := range spec.Managers {
				if m.TLSHost == "" {
					t.Fatalf("RunInterlock: %s serves no TLS endpoint (not a manager?)", m.Name)
				}
				hosts = append(hosts, m.TLSHost)
			}
			cfg.Cmd = slices.Insert(cfg.Cmd, 1, "--docker-host", strings.Join(hosts, ","))
		}
	} else if len(spec.Managers) > 0 || spec.NodeSocket {
		t.Fatal("RunInterlock: Managers and NodeSocket need TLS (without it Interlock watches its node's socket anyway)")
	} else if err := mountNodeSocket(host); err != nil {
		t.Fatal(err)
	}
	id := n.runContainer(ctx, t, "interlock", name, spec.Network, cfg, host, 150)
	base := func(p uint16) string { return "127.0.0.1:" + strconv.Itoa(int(n.HostPort(p))) }
	return InterlockContainer{ID: id, Proxy: "http://" + base(NodeHTTPPort), API: "http://" + base(NodeAPIPort), HTTPS: base(NodeHTTPSPort)}
}

// mountNodeSocket mounts the node's engine socket at /var/run/docker.sock
// in a container of the Interlock image. The image runs as nobody; the
// node's socket belongs to the group the node image calls docker (the
// host socket's gid), which the container gets.
func mountNodeSocket(host *container.HostConfig) error {
	gid, err := dockerSocketGID()
	if err != nil {
		return err
	}
	host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: "/sock/docker.sock", Target: "/var/run/docker.sock"})
	host.GroupAdd = append(host.GroupAdd, strconv.Itoa(gid))
	return nil
}

// Logs returns the last lines of a container's output on node n.
func (c *Cluster) Logs(ctx context.Context, n *Node, id string) (string, error) {
	return nodeLogs(ctx, n, id)
}

func nodeLogs(ctx context.Context, n *Node, id string) (string, error) {
	e := &Env{Client: n.Client}
	return e.Logs(ctx, id)
}

// runContainer creates and starts a container named name on node n,
// attached to the network netName, and registers a cleanup that removes
// it (unless the node was killed), logging the last logLines lines of its
// output when the test failed. what names it in errors. It returns its ID.
func (n *Node) runContainer(ctx context.Context, t testing.TB, what, name, netName string, cfg *container.Config, host *container.HostConfig, logLines int) string {
	t.Helper()
	netcfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {}}}
	res, err := n.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host, NetworkingConfig: netcfg})
	if err != nil {
		t.Fatalf("create %s container on %s: %v", what, n.Name, err)
	}
	t.Cleanup(func() {
		if n.Killed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := nodeLogs(ctx, n, res.ID); err == nil {
				t.Logf("logs of %s on %s (tail):\n%s", name, n.Name, tail(logs, logLines))
			}
		}
		if _, err := n.Client.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove %s on %s: %v", name, n.Name, err)
		}
	})
	if _, err := n.Client.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start %s container on %s: %v", what, n.Name, err)
	}
	return res.ID
}
