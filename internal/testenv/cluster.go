package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// A Cluster is a real multi-node Swarm on this machine: each node is a
// container of the host engine (the node image, see NodeImage) running a
// Docker engine of its own, with its own /var/lib/docker (a volume), on one
// user-defined bridge network with fixed addresses. Overlay networks work
// across the nodes (VXLAN); the ingress routing mesh does not, so route to
// task IPs. Killing a node container (KillNode, or PowerOffNode to cut it
// off the network first) is a real node loss.
//
// The node containers are not privileged (--privileged needs
// CAP_SYS_RESOURCE, which this machine lacks) but get every other
// capability, seccomp, apparmor and the system paths unconfined, every
// device, and a private cgroup namespace; the node's entrypoint
// (testdata/node) remounts /sys and the cgroups read-write.
//
// Everything a Cluster creates on the host engine (node containers, their
// volumes, the bridge network) carries the run labels and is removed when
// the test ends, and by the sweep of a later run if this one crashed; so is
// the host directory with the node sockets and certificates (see
// sweepClusterDirs). What runs inside the nodes dies with them.
type Cluster struct {
	// Nodes are the managers (manager1, manager2, ...), then the workers
	// (worker1, ...).
	Nodes []*Node
	// Network is the host engine's bridge network the nodes are on,
	// itest-<run>-clusterN; the node containers are named after it
	// (itest-<run>-clusterN-manager1).
	Network string
	// Dir is the host directory holding each node's socket (Dir/NAME/
	// docker.sock) and, with ClusterSpec.TLS, the certificates
	// (Dir/certs/client, Dir/certs/server).
	Dir string
	// SharedDir is, with ClusterSpec.SharedDir, the host directory
	// (Dir/shared, writable by anyone) mounted at NodeSharedDir in every
	// node; "" otherwise.
	SharedDir string
	// Gateway is the host's address on Network: the nodes, and the
	// containers in them, reach the host there.
	Gateway netip.Addr
	// TLSHost is tcp://IP:2376 of the first manager when ClusterSpec.TLS
	// is set: reachable from the nodes (and containers in them), not from
	// the host's loopback. Every manager's is Node.TLSHost.
	TLSHost string
	// Timings say where the start-up went.
	Timings ClusterTimings

	env     *Env
	backend string // the backend image tag, loaded into every node
}

// ClusterTimings are the durations of a cluster's start-up phases.
type ClusterTimings struct {
	Image  time.Duration // NodeImage: hash the binaries, build if new
	Start  time.Duration // node containers started, each engine answering
	Swarm  time.Duration // init, joins, every node ready and labelled
	Images time.Duration // docker save | docker load into every node
}

func (t ClusterTimings) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	return fmt.Sprintf("node image %v, engines up %v, swarm formed %v, images loaded %v (total %v)",
		r(t.Image), r(t.Start), r(t.Swarm), r(t.Images), r(t.Image+t.Start+t.Swarm+t.Images))
}

// ClusterSpec describes the Swarm Env.Cluster makes.
type ClusterSpec struct {
	// Managers is the number of manager nodes, at least 1; Workers the
	// number of worker nodes.
	Managers, Workers int
	// NodeLabels are Swarm node labels by node name ("manager1",
	// "worker2"), for placement constraints such as
	// node.labels.role==proxy.
	NodeLabels map[string]map[string]string
	// Images are tags of the host engine copied into every node (docker
	// save | docker load: there is no registry). The backend image is
	// always copied; the Interlock image is copied into a node when
	// RunInterlock first runs it there.
	Images []string
	// TLS makes every manager's engine serve its API on tcp://IP:2376 as
	// well, with TLS and a client certificate required (dockerd
	// --tlsverify), as production managers do, each with a server
	// certificate of its own naming its IP. Node.TLSHost is each one's
	// address (Cluster.TLSHost the first's); the client certificates are
	// in NodeClientCertsDir inside every node.
	TLS bool
	// Heartbeat is the Swarm dispatcher's heartbeat period. Zero means 1s
	// (the default is 5s), so that a lost node is marked down and its
	// tasks rescheduled within seconds.
	Heartbeat time.Duration
	// SharedDir gives every node one host directory, Cluster.SharedDir,
	// at NodeSharedDir: a shared volume, for containers in the nodes that
	// bind-mount it (ClusterFeedSpec.Mounts). It goes with the cluster.
	SharedDir bool
}

// NodeSharedDir is where every node of a cluster made with
// ClusterSpec.SharedDir mounts Cluster.SharedDir.
const NodeSharedDir = "/shared"

// The ports every node container publishes on 127.0.0.1, at random host
// ports (Node.HostPort). A container in a node publishes on them to be
// reached from the tests, as RunInterlock does.
const (
	NodeHTTPPort  uint16 = 18080
	NodeHTTPSPort uint16 = 18443
	NodeAPIPort   uint16 = 18081
)

// A Node is one engine of a Cluster.
type Node struct {
	// Name is manager1, worker2, ...: also the node's host name (its
	// Swarm hostname) and its alias on the bridge network.
	Name    string
	Manager bool
	// ID is the Swarm node ID.
	ID string
	// IP is the node's address on the cluster's bridge network.
	IP netip.Addr
	// TLSHost is tcp://IP:2376 of a manager of a cluster made with
	// ClusterSpec.TLS ("" otherwise): reachable from the nodes and the
	// containers in them.
	TLSHost string
	// ContainerID is the node container's ID on the host engine.
	ContainerID string
	// Socket is the host path of the node engine's socket.
	Socket string
	// Client is connected to the node's engine through Socket, with the
	// API version negotiated.
	Client *client.Client

	ports  map[uint16]uint16 // node port -> 127.0.0.1 port on the host
	killed atomic.Bool

	mu     sync.Mutex
	loaded map[string]bool // image tags loaded into this node
}

// HostPort is the 127.0.0.1 port on the host that the node publishes its
// port p on (NodeHTTPPort, NodeHTTPSPort, NodeAPIPort).
func (n *Node) HostPort(p uint16) uint16 { return n.ports[p] }

// Killed reports whether KillNode killed this node.
func (n *Node) Killed() bool { return n.killed.Load() }

func (n *Node) String() string { return n.Name }

// Manager returns the first manager that was not killed (KillNode,
// PowerOffNode): the one to ask about the swarm. It returns the first
// manager if every one was killed.
func (c *Cluster) Manager() *Node {
	for _, n := range c.Nodes {
		if n.Manager && !n.Killed() {
			return n
		}
	}
	return c.Nodes[0]
}

// Managers returns the manager nodes, in order (manager1, manager2, ...).
func (c *Cluster) Managers() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Manager {
			out = append(out, n)
		}
	}
	return out
}

// Leader returns the manager that is the Raft leader, as the first live
// manager sees it. It fails while there is none: after the leader was
// lost, until the others elect another. That takes 10-20 s here: this
// engine (20.10) holds the Raft election timeout at 10 ticks of 1 s
// (randomised up to twice that); it does not apply the cluster spec's
// Raft.ElectionTick (3 changed nothing), and its daemon.json refuses
// swarm-raft-election-tick. Until then every call that needs the leader
// (services, tasks, nodes) waits or fails on every manager.
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	m := c.Manager()
	nodes, err := m.Client.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("node list on %s: %w", m.Name, err)
	}
	for _, sn := range nodes.Items {
		if sn.ManagerStatus != nil && sn.ManagerStatus.Leader {
			if n := c.NodeByID(sn.ID); n != nil && !n.Killed() {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("no leader among the managers, as %s sees them", m.Name)
}

// Node returns the node of that name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeByID returns the node of that Swarm node ID, or nil.
func (c *Cluster) NodeByID(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Cluster starts a Swarm of spec.Managers managers and spec.Workers
// workers and removes all of it when the test ends. It fails the test,
// with the reason, when the cluster cannot be made; it skips only when the
// host lacks the engine binaries and CI is not "true".
func (e *Env) Cluster(t testing.TB, spec ClusterSpec) *Cluster {
	t.Helper()
	c, err := e.startCluster(t, spec)
	if err != nil {
		if errors.Is(err, ErrNoEngineBinaries) && os.Getenv("CI") != "true" {
			t.Skipf("skipping: no multi-node cluster here: %v", err)
		}
		t.Fatalf("cluster: %v", err)
	}
	t.Logf("cluster of %d managers and %d workers on %s: %v", spec.Managers, spec.Workers, c.Network, c.Timings)
	return c
}

func (e *Env) startCluster(t testing.TB, spec ClusterSpec) (*Cluster, error) {
	if spec.Managers < 1 || spec.Workers < 0 || spec.Managers+spec.Workers > 40 {
		return nil, fmt.Errorf("%d managers and %d workers: want at least one manager, at most 40 nodes", spec.Managers, spec.Workers)
	}
	heartbeat := spec.Heartbeat
	if heartbeat == 0 {
		heartbeat = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &Cluster{env: e}

	began := time.Now()
	img, err := e.NodeImage(ctx)
	if err != nil {
		return nil, err
	}
	if c.backend, err = e.BackendImage(ctx); err != nil {
		return nil, err
	}
	c.Timings.Image = time.Since(began)

	// Cleanups run last-in first-out: the directory goes after the
	// containers that mount it.
	if c.Dir, err = os.MkdirTemp("", clusterDirPrefix+e.RunID+"-"+strconv.Itoa(e.pid)+"-"); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(c.Dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if spec.SharedDir {
		// Writable by anyone: the Interlock image runs as nobody.
		c.SharedDir = filepath.Join(c.Dir, "shared")
		if err := os.Mkdir(c.SharedDir, 0o777); err != nil {
			return nil, err
		}
		if err := os.Chmod(c.SharedDir, 0o1777); err != nil {
			return nil, err
		}
	}
	began = time.Now()
	subnet, err := e.createClusterNetwork(ctx, c)
	if err != nil {
		return nil, err
	}
	c.Gateway = subnet.Addr().Next()
	t.Cleanup(func() { c.teardown(t) })

	addr := subnet.Addr().Next() // .1 is the gateway
	for i := range spec.Managers + spec.Workers {
		addr = addr.Next()
		n := &Node{Name: "manager" + strconv.Itoa(i+1), Manager: true, IP: addr, loaded: map[string]bool{}}
		if i >= spec.Managers {
			n.Name = "worker" + strconv.Itoa(i-spec.Managers+1)
			n.Manager = false
		}
		n.Socket = filepath.Join(c.Dir, n.Name, "docker.sock")
		c.Nodes = append(c.Nodes, n)
	}
	if spec.TLS {
		var ids []serverIdentity
		for _, m := range c.Managers() {
			ids = append(ids, serverIdentity{name: m.Name, ip: net.IP(m.IP.AsSlice())})
			m.TLSHost = "tcp://" + netip.AddrPortFrom(m.IP, ManagerTLSPort).String()
		}
		if err := writeClusterPKI(filepath.Join(c.Dir, "certs"), ids); err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
		c.TLSHost = c.Manager().TLSHost
	}
	if err := forEach(c.Nodes, func(n *Node) error { return e.startNode(ctx, c, n, img) }); err != nil {
		return nil, err
	}
	c.Timings.Start = time.Since(began)

	began = time.Now()
	if err := c.formSwarm(ctx, heartbeat, spec.NodeLabels); err != nil {
		return nil, err
	}
	c.Timings.Swarm = time.Since(began)

	began = time.Now()
	for _, tag := range append([]string{c.backend}, spec.Images...) {
		if err := c.LoadImage(ctx, tag); err != nil {
			return nil, err
		}
	}
	c.Timings.Images = time.Since(began)
	return c, nil
}

// createClusterNetwork makes the bridge network with a /24 of its own
// (fixed addresses need a configured subnet): the first of 192.168.200-254
// that neither the host's routes nor another network of the engine use.
func (e *Env) createClusterNetwork(ctx context.Context, c *Cluster) (netip.Prefix, error) {
	taken := hostRoutes()
	nets, err := e.Client.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list networks: %w", err)
	}
	for _, n := range nets.Items {
		for _, cfg := range n.IPAM.Config {
			if cfg.Subnet.IsValid() {
				taken = append(taken, cfg.Subnet)
			}
		}
	}
	name := e.name("", "cluster")
	var lastErr error
	for third := 200; third < 255; third++ {
		subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(third), 0}), 24)
		if slices.ContainsFunc(taken, subnet.Overlaps) {
			continue
		}
		_, err := e.Client.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver: "bridge", Labels: e.Labels(),
			IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet, Gateway: subnet.Addr().Next()}}},
		})
		if err == nil {
			c.Network = name
			return subnet, nil
		}
		// Another process may have taken the subnet since the listing.
		lastErr = err
		if !strings.Contains(err.Error(), "overlap") {
			break
		}
	}
	return netip.Prefix{}, fmt.Errorf("create the cluster's network: no free /24 in 192.168.200-254: %v", lastErr)
}

// hostRoutes are the IPv4 destinations of this machine's routing table
// (/proc/net/route), so that the cluster's subnet shadows none.
func hostRoutes() []netip.Prefix {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...,
		// addresses in little-endian hex.
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[0] == "Iface" {
			continue
		}
		dst, err1 := strconv.ParseUint(fs[1], 16, 32)
		mask, err2 := strconv.ParseUint(fs[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		var d, m [4]byte
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		binary.LittleEndian.PutUint32(m[:], uint32(mask))
		ones, _ := net.IPMask(m[:]).Size()
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(d), ones))
	}
	return out
}

// startNode creates and starts n's container and waits for its engine,
// serving TLS too on a manager with a TLSHost.
func (e *Env) startNode(ctx context.Context, c *Cluster, n *Node, img string) error {
	sockDir := filepath.Dir(n.Socket)
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		return err
	}
	volume := nodeVolume(c, n)
	if _, err := e.Client.VolumeCreate(ctx, client.VolumeCreateOptions{Name: volume, Labels: e.withLabels(map[string]string{labelNode: n.Name})}); err != nil {
		return fmt.Errorf("node %s: create volume: %w", n.Name, err)
	}
	cmd := []string{"/usr/sbin/dockerd",
		"-H", "unix:///sock/docker.sock",
		// Containers in the nodes must never ask the Internet for a name
		// (the engine would fall back to public resolvers, since the
		// node's own resolver is a loopback address): nothing answers
		// here, and tests use addresses.
		"--dns", "127.0.0.1",
	}
	mounts := []mount.Mount{
		{Type: mount.TypeVolume, Source: volume, Target: "/var/lib/docker"},
		{Type: mount.TypeBind, Source: sockDir, Target: "/sock"},
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "certs")); err == nil {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: filepath.Join(c.Dir, "certs"), Target: NodeCertsDir, ReadOnly: true})
	}
	if c.SharedDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: c.SharedDir, Target: NodeSharedDir})
	}
	if n.TLSHost != "" {
		certs := nodeServerCertsDir + "/" + n.Name
		cmd = append(cmd, "-H", "tcp://0.0.0.0:"+strconv.Itoa(ManagerTLSPort), "--tlsverify",
			"--tlscacert", certs+"/ca.pem", "--tlscert", certs+"/cert.pem", "--tlskey", certs+"/key.pem")
	}
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	for _, p := range []uint16{NodeHTTPPort, NodeHTTPSPort, NodeAPIPort} {
		exposed[tcpPort(p)] = struct{}{}
		bindings[tcpPort(p)] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
	}
	initProc := true
	cfg := &container.Config{
		Image: img, Cmd: cmd, Hostname: n.Name,
		Env:          []string{"PATH=" + nodePath},
		Labels:       e.withLabels(map[string]string{labelNode: n.Name}),
		ExposedPorts: exposed,
	}
	host := &container.HostConfig{
		// Not Privileged: see Cluster.
		CapAdd:      []string{"ALL"},
		CapDrop:     []string{"SYS_RESOURCE"},
		SecurityOpt: []string{"seccomp=unconfined", "apparmor=unconfined"},
		// systempaths=unconfined, as the CLI sends it: nothing masked or
		// read-only under /proc (dockerd writes /proc/sys).
		MaskedPaths:   []string{},
		ReadonlyPaths: []string{},
		Resources:     container.Resources{DeviceCgroupRules: []string{"a *:* rwm"}},
		// The engine's own cgroups go under the node's.
		CgroupnsMode: container.CgroupnsModePrivate,
		// docker-init as pid 1 reaps the shims dockerd leaves behind.
		Init:         &initProc,
		Mounts:       mounts,
		NetworkMode:  container.NetworkMode(c.Network),
		PortBindings: bindings,
	}
	netcfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{c.Network: {
		IPAMConfig: &network.EndpointIPAMConfig{IPv4Address: n.IP},
		Aliases:    []string{n.Name},
	}}}
	res, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: c.Network + "-" + n.Name, Config: cfg, HostConfig: host, NetworkingConfig: netcfg})
	if err != nil {
		return fmt.Errorf("node %s: create container: %w", n.Name, err)
	}
	n.ContainerID = res.ID
	if err := e.Start(ctx, res.ID); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	ins, err := e.Client.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	n.ports = map[uint16]uint16{}
	for port, bs := range ins.Container.NetworkSettings.Ports {
		for _, b := range bs {
			if hp, err := strconv.ParseUint(b.HostPort, 10, 16); err == nil && hp != 0 {
				n.ports[port.Num()] = uint16(hp)
			}
		}
	}
	n.Client, err = client.New(client.WithHost("unix://" + n.Socket))
	if err != nil {
		return fmt.Errorf("node %s: client: %w", n.Name, err)
	}
	// The engine answers about a second after its container starts.
	deadline := time.Now().Add(time.Minute)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.Client.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			return nil
		}
		st, ierr := e.Client.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
		exited := ierr == nil && st.Container.State != nil && !st.Container.State.Running
		if exited || time.Now().After(deadline) {
			logs, _ := e.Logs(ctx, res.ID)
			return fmt.Errorf("node %s: engine not answering on %s: %w\nnode log (tail):\n%s", n.Name, n.Socket, err, tail(logs, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// formSwarm inits the swarm on the first manager, joins the other managers
// one by one and the workers at once, and labels the nodes.
func (c *Cluster) formSwarm(ctx context.Context, heartbeat time.Duration, labels map[string]map[string]string) error {
	m := c.Manager()
	res, err := m.Client.SwarmInit(ctx, client.SwarmInitOptions{
		ListenAddr: "0.0.0.0:2377", AdvertiseAddr: m.IP.String(),
		Spec: swarm.Spec{Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: heartbeat}},
	})
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", m.Name, err)
	}
	m.ID = res.NodeID
	sw, err := m.Client.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return fmt.Errorf("swarm inspect on %s: %w", m.Name, err)
	}
	join := func(n *Node) error {
		token := sw.Swarm.JoinTokens.Worker
		if n.Manager {
			token = sw.Swarm.JoinTokens.Manager
		}
		_, err := n.Client.SwarmJoin(ctx, client.SwarmJoinOptions{
			ListenAddr: "0.0.0.0:2377", AdvertiseAddr: n.IP.String(),
			RemoteAddrs: []string{netip.AddrPortFrom(m.IP, 2377).String()}, JoinToken: token,
		})
		if err != nil {
			return fmt.Errorf("%s: swarm join: %w", n.Name, err)
		}
		return nil
	}
	var workers []*Node
	for _, n := range c.Nodes[1:] {
		if !n.Manager {
			workers = append(workers, n)
			continue
		}
		// Raft membership changes one at a time.
		if err := join(n); err != nil {
			return err
		}
	}
	if err := forEach(workers, join); err != nil {
		return err
	}
	// Every node ready, as the manager sees it.
	deadline := time.Now().Add(time.Minute)
	for {
		nodes, err := m.Client.NodeList(ctx, client.NodeListOptions{})
		if err != nil {
			return fmt.Errorf("node list on %s: %w", m.Name, err)
		}
		ready := 0
		for _, sn := range nodes.Items {
			if n := c.Node(sn.Description.Hostname); n != nil {
				n.ID = sn.ID
				if sn.Status.State == swarm.NodeStateReady {
					ready++
				}
			}
		}
		if ready == len(c.Nodes) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes ready after a minute", ready, len(c.Nodes))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range slices.Sorted(maps.Keys(labels)) {
		n := c.Node(name)
		if n == nil {
			return fmt.Errorf("labels for node %q: no such node", name)
		}
		if err := c.LabelNode(ctx, n, labels[name]); err != nil {
			return err
		}
	}
	return nil
}

// LabelNode adds labels to the node's Swarm labels.
func (c *Cluster) LabelNode(ctx context.Context, n *Node, labels map[string]string) error {
	m := c.Manager()
	ins, err := m.Client.NodeInspect(ctx, n.ID, client.NodeInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect node %s: %w", n.Name, err)
	}
	spec := ins.Node.Spec
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	maps.Copy(spec.Labels, labels)
	if _, err := m.Client.NodeUpdate(ctx, n.ID, client.NodeUpdateOptions{Version: ins.Node.Version, Spec: spec}); err != nil {
		return fmt.Errorf("label node %s: %w", n.Name, err)
	}
	return nil
}

// LoadImage copies an image of the host engine into the given nodes (all
// when none is given) that lack it: docker save from the host, docker load
// into each node. Killed nodes are left out.
func (c *Cluster) LoadImage(ctx context.Context, tag string, nodes ...*Node) error {
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	var todo []*Node
	for _, n := range nodes {
		n.mu.Lock()
		if !n.loaded[tag] && !n.Killed() {
			todo = append(todo, n)
		}
		n.mu.Unlock()
	}
	if len(todo) == 0 {
		return nil
	}
	rc, err := c.env.Client.ImageSave(ctx, []string{tag})
	if err != nil {
		return fmt.Errorf("save image %s: %w", tag, err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("save image %s: %w", tag, err)
	}
	return forEach(todo, func(n *Node) error {
		res, err := n.Client.ImageLoad(ctx, bytes.NewReader(archive), client.ImageLoadWithQuiet(true))
		if err != nil {
			return fmt.Errorf("load image %s into %s: %w", tag, n.Name, err)
		}
		defer res.Close()
		if err := readBuildOutput(res); err != nil {
			return fmt.Errorf("load image %s into %s: %w", tag, n.Name, err)
		}
		n.mu.Lock()
		n.loaded[tag] = true
		n.mu.Unlock()
		return nil
	})
}

// KillNode kills the node's container (SIGKILL): its engine and every
// container on it die at once, with no word to the rest of the swarm. Not
// quite a power loss: the kernel closes the dying processes' sockets, and
// the resets mostly get out before the node's network is gone, so peers
// see connections reset and connects refused. PowerOffNode is silent.
func (c *Cluster) KillNode(ctx context.Context, n *Node) error {
	n.killed.Store(true)
	if _, err := c.env.Client.ContainerKill(ctx, n.ContainerID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		return fmt.Errorf("kill node %s: %w", n.Name, err)
	}
	return nil
}

// PowerOffNode takes the node off the cluster's network, then kills its
// container: its peers hear nothing more from it, not even the resets and
// FINs the kernel sends for the sockets of processes that die (which
// KillNode lets out while the node's network is torn down), as when a
// machine loses power or its link. Connections to its containers then hang
// rather than fail, and connects to them time out.
func (c *Cluster) PowerOffNode(ctx context.Context, n *Node) error {
	n.killed.Store(true)
	if _, err := c.env.Client.NetworkDisconnect(ctx, c.Network, client.NetworkDisconnectOptions{Container: n.ContainerID, Force: true}); err != nil {
		return fmt.Errorf("power off node %s: disconnect it: %w", n.Name, err)
	}
	if _, err := c.env.Client.ContainerKill(ctx, n.ContainerID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		return fmt.Errorf("power off node %s: %w", n.Name, err)
	}
	return nil
}

// teardown removes the node containers, their volumes and the network,
// logging the tail of each engine's log first if the test failed.
func (c *Cluster) teardown(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := c.env
	for _, n := range c.Nodes {
		if n.Client != nil {
			_ = n.Client.Close()
		}
		if n.ContainerID == "" {
			continue
		}
		if t.Failed() {
			if logs, err := e.Logs(ctx, n.ContainerID); err == nil {
				t.Logf("log of node %s (tail):\n%s", n.Name, tail(logs, 40))
			}
		}
	}
	err := forEach(c.Nodes, func(n *Node) error {
		if n.ContainerID == "" {
			return nil
		}
		return e.removeContainer(ctx, n.ContainerID)
	})
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, n := range c.Nodes {
		name := nodeVolume(c, n)
		if _, err := e.Client.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove volume %s: %v", name, err)
		}
	}
	if c.Network != "" {
		retryCleanup(t, 30*time.Second, "removal of network "+c.Network, func() error {
			_, err := e.Client.NetworkRemove(ctx, c.Network, client.NetworkRemoveOptions{})
			if err != nil && !cerrdefs.IsNotFound(err) {
				return err
			}
			return nil
		})
	}
}

// nodeVolume is the name of the volume of n's /var/lib/docker.
func nodeVolume(c *Cluster, n *Node) string { return c.Network + "-" + n.Name + "-docker" }

// labelNode names the node a node container or volume belongs to.
const labelNode = "interlock-test.node"

// forEach runs f for every node at once and joins the errors.
func forEach(nodes []*Node, f func(*Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = f(n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
