package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Interlock's roles on a cluster (interlock run --role controller and
// --role edge, internal/feed): controllers on the managers watch their
// own node's engine and serve the routing table over mutual TLS; edges on
// the proxy nodes follow them over an overlay, with no Docker access.
//
//	pki := testenv.NewFeedPKI(t, "controller1", "controller2")
//	c1 := c.RunFeed(t, testenv.ClusterFeedSpec{Node: c.Node("manager1"), Network: ov, Alias: "controller1", PKI: pki})
//	edge := c.RunFeed(t, testenv.ClusterFeedSpec{Node: c.Node("worker1"), Network: ov, PKI: pki,
//		Controllers: []string{c1.URL, c2.URL}})
//	c1.Kill(ctx)  // docker kill; c1.Start(ctx) brings it back

// FeedPort is the port a controller run by Cluster.RunFeed serves the
// feed on (--feed-addr :8444, the default).
const FeedPort = 8444

// Paths inside a container of Cluster.RunFeed.
const (
	// FeedCertsDir holds ca.pem, cert.pem and key.pem: the feed CA and
	// the container's side (the server certificate for a controller, the
	// client one for an edge), copied in before it starts, readable by
	// the image's user (nobody).
	FeedCertsDir = "/feed"
	// FeedStateMount is where an edge's state volume is mounted;
	// FeedStateDir, a directory of it that anyone may write (the image
	// runs as nobody), is its --state-dir (last-table.json is there).
	FeedStateMount = "/state"
	FeedStateDir   = FeedStateMount + "/interlock"
)

// NewFeedPKI is NewPKI with a server certificate that also names each of
// names (DNS names): the controllers as the edges dial them, their
// aliases on the overlay (ClusterFeedSpec.Alias), since an edge verifies
// a controller by the host of its URL.
func NewFeedPKI(t testing.TB, names ...string) *PKI {
	t.Helper()
	p := NewPKI(t)
	cn := "controller"
	if len(names) > 0 {
		cn = names[0]
	}
	p.issue(t, p.ServerCert, p.ServerKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, DNSNames: append([]string{"localhost"}, names...),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return p
}

// ClusterFeedSpec describes a controller or an edge for Cluster.RunFeed.
type ClusterFeedSpec struct {
	// Node is where the container runs. A controller watches this node's
	// engine through its socket, so a controller's node must be a
	// manager.
	Node *Node
	// Network is the overlay the container is attached to: edges reach
	// the controllers, and the tasks, over it.
	Network string
	// Alias is the container's name on Network, and a controller's feed
	// URL is https://ALIAS:8444: PKI's server certificate must name it
	// (NewFeedPKI). Default: the container's name.
	Alias string
	// PKI signs both sides of the feed.
	PKI *PKI
	// Controllers makes an edge that follows these feed URLs, in order
	// (FeedContainer.URL of the controllers). Empty: a controller.
	Controllers []string
	// Args follow the flags RunFeed passes.
	Args []string
	// Files are more files to copy in before the container starts
	// (container path -> host path), readable by anyone, such as an
	// --acme-ca-root.
	Files map[string]string
	// Mounts are more mounts of the container, such as a bind of the
	// node's NodeSharedDir (ClusterSpec.SharedDir) for a controller's
	// --acme-storage.
	Mounts []mount.Mount
}

// FeedContainer is a controller or an edge run by Cluster.RunFeed.
type FeedContainer struct {
	InterlockContainer
	Node *Node
	// Name is the container's name on its node's engine.
	Name string
	// URL is a controller's feed URL, https://ALIAS:8444 ("" for an
	// edge).
	URL string
	// Volume is the node's named volume an edge's state directory is on
	// (mounted at FeedStateMount): it outlives a restart of the
	// container, as the saved table must. "" for a controller.
	Volume string
}

// RunFeed runs Interlock in a container of the Interlock image on
// spec.Node, attached to spec.Network:
//
//   - a controller (no spec.Controllers): run --role controller
//     --feed-addr :8444, the node's engine socket mounted at
//     /var/run/docker.sock (as RunInterlock without TLS), its state
//     directory a tmpfs; only its API port is published (on the node's
//     NodeAPIPort): it runs no proxy.
//   - an edge: run --role edge --controllers URL,URL..., with no Docker
//     socket, no Docker environment and no Docker certificates, its
//     state directory FeedStateDir on a named volume of the node
//     (FeedContainer.Volume); its proxy, HTTPS and API ports published on
//     the node's NodeHTTPPort, NodeHTTPSPort and NodeAPIPort, as
//     RunInterlock does.
//
// The feed certificates (and spec.Files) are copied in before the
// container starts. The container (and an edge's volume) is removed when
// the test ends, its log shown if the test failed, unless its node was
// killed.
func (c *Cluster) RunFeed(t testing.TB, spec ClusterFeedSpec) FeedContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, n := c.env, spec.Node
	if spec.PKI == nil {
		t.Fatal("RunFeed: no PKI")
	}
	img, err := e.InterlockImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadImage(ctx, img, n); err != nil {
		t.Fatal(err)
	}
	edge := len(spec.Controllers) > 0
	role := "controller"
	if edge {
		role = "edge"
	}
	name := e.name("", role)
	alias := spec.Alias
	if alias == "" {
		alias = name
	}
	fc := FeedContainer{Node: n, Name: name}

	proxyPort, httpsPort, apiPort := tcpPort(8080), tcpPort(8443), tcpPort(8081)
	on := func(p uint16) []network.PortBinding {
		return []network.PortBinding{{HostIP: netip.IPv4Unspecified(), HostPort: strconv.Itoa(int(p))}}
	}
	cmd := []string{"run", "--role", role, "--http-addr", ":8080", "--https-addr", ":8443", "--api-addr", ":8081", "--log-level", "debug",
		"--feed-ca", FeedCertsDir + "/ca.pem", "--feed-cert", FeedCertsDir + "/cert.pem", "--feed-key", FeedCertsDir + "/key.pem"}
	cfg := &container.Config{Image: img, Labels: e.Labels(), ExposedPorts: network.PortSet{proxyPort: {}, apiPort: {}, httpsPort: {}}}
	host := &container.HostConfig{NetworkMode: container.NetworkMode(spec.Network)}
	var certFile, keyFile string
	var state []string // directories to make in the container, writable by nobody
	if edge {
		certFile, keyFile = spec.PKI.Cert, spec.PKI.Key
		cmd = append(cmd, "--controllers", strings.Join(spec.Controllers, ","), "--state-dir", FeedStateDir)
		host.PortBindings = network.PortMap{proxyPort: on(NodeHTTPPort), httpsPort: on(NodeHTTPSPort), apiPort: on(NodeAPIPort)}
		fc.Volume = name + "-state"
		if _, err := n.Client.VolumeCreate(ctx, client.VolumeCreateOptions{Name: fc.Volume, Labels: e.Labels()}); err != nil {
			t.Fatalf("create volume %s on %s: %v", fc.Volume, n.Name, err)
		}
		// Cleanups run last-in first-out: the volume goes after the
		// container that mounts it.
		t.Cleanup(func() {
			if n.Killed() {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := n.Client.VolumeRemove(ctx, fc.Volume, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("cleanup: remove volume %s on %s: %v", fc.Volume, n.Name, err)
			}
		})
		host.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: fc.Volume, Target: FeedStateMount}}
		state = []string{FeedStateDir}
	} else {
		certFile, keyFile = spec.PKI.ServerCert, spec.PKI.ServerKey
		cmd = append(cmd, "--feed-addr", ":"+strconv.Itoa(FeedPort), "--state-dir", "/var/lib/interlock")
		cfg.ExposedPorts[tcpPort(FeedPort)] = struct{}{}
		host.PortBindings = network.PortMap{apiPort: on(NodeAPIPort)}
		// The image's user owns it: runc gives a tmpfs over a directory
		// of the image that directory's mode (0755), whatever mode= says.
		host.Tmpfs = map[string]string{"/var/lib/interlock": "mode=1777,uid=65534,gid=65534"}
		if err := mountNodeSocket(host); err != nil {
			t.Fatal(err)
		}
		fc.URL = "https://" + alias + ":" + strconv.Itoa(FeedPort)
	}
	cfg.Cmd = append(cmd, spec.Args...)
	host.Mounts = append(host.Mounts, spec.Mounts...)

	files := map[string]string{FeedCertsDir + "/ca.pem": spec.PKI.CA, FeedCertsDir + "/cert.pem": certFile, FeedCertsDir + "/key.pem": keyFile}
	maps.Copy(files, spec.Files)
	archive, err := feedArchive(files, state)
	if err != nil {
		t.Fatal(err)
	}

	netcfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{spec.Network: {Aliases: []string{alias}}}}
	res, err := n.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host, NetworkingConfig: netcfg})
	if err != nil {
		t.Fatalf("create %s container on %s: %v", role, n.Name, err)
	}
	fc.ID = res.ID
	t.Cleanup(func() {
		if n.Killed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := nodeLogs(ctx, n, res.ID); err == nil {
				t.Logf("logs of %s %s on %s (tail):\n%s", role, alias, n.Name, tail(logs, 150))
			}
		}
		if _, err := n.Client.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove %s on %s: %v", name, n.Name, err)
		}
	})
	// A created container takes files, volumes included (docker cp).
	if _, err := n.Client.CopyToContainer(ctx, res.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: bytes.NewReader(archive)}); err != nil {
		t.Fatalf("copy the feed certificates into %s on %s: %v", name, n.Name, err)
	}
	if _, err := n.Client.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start %s container on %s: %v", role, n.Name, err)
	}
	base := func(p uint16) string { return "127.0.0.1:" + strconv.Itoa(int(n.HostPort(p))) }
	fc.API = "http://" + base(NodeAPIPort)
	if edge {
		fc.Proxy, fc.HTTPS = "http://"+base(NodeHTTPPort), base(NodeHTTPSPort)
	}
	return fc
}

// feedArchive is a tar of files (container path -> host path), readable
// by anyone, and of the directories dirs, writable by anyone: docker cp
// makes root their owner (with CopyUIDGID it wants a getent command in the
// container, which the image lacks), and the image runs as nobody.
func feedArchive(files map[string]string, dirs []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	made := map[string]bool{}
	mkdir := func(d string, mode int64) error {
		var parts []string
		for p := strings.Trim(d, "/"); p != "." && p != ""; p = path.Dir(p) {
			parts = append([]string{p}, parts...)
		}
		for _, p := range parts {
			if made[p] {
				continue
			}
			made[p] = true
			m := int64(0o755)
			if p == strings.Trim(d, "/") {
				m = mode
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: m, ModTime: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range dirs {
		if err := mkdir(d, 0o1777); err != nil {
			return nil, err
		}
	}
	for dst, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := mkdir(path.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o444, Size: int64(len(data)), ModTime: time.Now()}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Kill kills the container (docker kill: SIGKILL) and waits until its
// engine says it is no longer running.
func (f FeedContainer) Kill(ctx context.Context) error {
	if _, err := f.Node.Client.ContainerKill(ctx, f.ID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		return fmt.Errorf("kill %s on %s: %w", f.Name, f.Node.Name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ins, err := f.Inspect(ctx)
		if err != nil {
			return err
		}
		if !ins.State.Running {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill %s on %s: still running after 30s", f.Name, f.Node.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start starts the (stopped) container again (docker start), and returns
// when its engine says it started (State.StartedAt: the nodes share the
// host's clock).
func (f FeedContainer) Start(ctx context.Context) (time.Time, error) {
	if _, err := f.Node.Client.ContainerStart(ctx, f.ID, client.ContainerStartOptions{}); err != nil {
		return time.Time{}, fmt.Errorf("start %s on %s: %w", f.Name, f.Node.Name, err)
	}
	ins, err := f.Inspect(ctx)
	if err != nil {
		return time.Time{}, err
	}
	at, err := time.Parse(time.RFC3339Nano, ins.State.StartedAt)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s on %s: started at %q: %w", f.Name, f.Node.Name, ins.State.StartedAt, err)
	}
	return at, nil
}

// Inspect returns the container as its node's engine shows it.
func (f FeedContainer) Inspect(ctx context.Context) (container.InspectResponse, error) {
	res, err := f.Node.Client.ContainerInspect(ctx, f.ID, client.ContainerInspectOptions{})
	if err != nil {
		return container.InspectResponse{}, fmt.Errorf("inspect %s on %s: %w", f.Name, f.Node.Name, err)
	}
	return res.Container, nil
}
