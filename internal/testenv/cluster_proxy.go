package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// ClusterNginxSpec describes a side-loaded nginx container on one node of
// a cluster, for Cluster.RunNginx.
type ClusterNginxSpec struct {
	// Node is where the container runs.
	Node *Node
	// Network is the overlay the container is attached to, to reach
	// tasks by their IPs.
	Network string
	// Label is its interlock.ext.name: the value of Interlock's
	// --proxy-container-label.
	Label string
	// HTTPPort and HTTPSPort are the ports the rendered configuration
	// listens on inside the container (Interlock's --http-addr and
	// --https-addr), published on the node's NodeHTTPPort and
	// NodeHTTPSPort. Zero means 8080 and 8443, what RunInterlock passes.
	HTTPPort, HTTPSPort uint16
}

// RunNginx runs a container of the nginx image (NginxImage, copied into
// the node first) on spec.Node, labelled interlock.ext.name=spec.Label, for
// an Interlock with --nginx-target containers to find and configure on
// this node's engine: one that watches it, or one that watches a manager
// with ClusterInterlockSpec.NodeSocket (--proxy-docker-host). It starts on NginxBootstrap (503 for every request). The
// ports its configuration will listen on are published on the node's
// NodeHTTPPort and NodeHTTPSPort, so run the Interlock that drives it
// with ClusterInterlockSpec.APIOnly. The container is removed when the
// test ends (its log is shown if the test failed), unless its node was
// killed.
func (c *Cluster) RunNginx(t testing.TB, spec ClusterNginxSpec) ProxyContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, n := c.env, spec.Node
	img, err := e.NginxImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.LoadImage(ctx, img, n); err != nil {
		t.Fatal(err)
	}
	httpPort, httpsPort := spec.HTTPPort, spec.HTTPSPort
	if httpPort == 0 {
		httpPort = 8080
	}
	if httpsPort == 0 {
		httpsPort = 8443
	}
	on := func(p uint16) []network.PortBinding {
		return []network.PortBinding{{HostIP: netip.IPv4Unspecified(), HostPort: strconv.Itoa(int(p))}}
	}
	name := e.name("", "nginx")
	cfg := &container.Config{
		Image:        img,
		Labels:       e.withLabels(map[string]string{"interlock.ext.name": spec.Label}),
		ExposedPorts: network.PortSet{tcpPort(httpPort): {}, tcpPort(httpsPort): {}},
	}
	host := &container.HostConfig{
		PortBindings: network.PortMap{tcpPort(httpPort): on(NodeHTTPPort), tcpPort(httpsPort): on(NodeHTTPSPort)},
		NetworkMode:  container.NetworkMode(spec.Network),
	}
	id := n.runContainer(ctx, t, "nginx", name, spec.Network, cfg, host, 60)
	return ProxyContainer{ID: id, Name: name, Ports: map[uint16]uint16{httpPort: n.HostPort(NodeHTTPPort), httpsPort: n.HostPort(NodeHTTPSPort)}}
}

// ReadFile returns the content of the regular file at path in the
// container id of the node's engine (docker cp).
func (n *Node) ReadFile(ctx context.Context, id, path string) ([]byte, error) {
	res, err := n.Client.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, fmt.Errorf("copy %s from %.12s on %s: %w", path, id, n.Name, err)
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("copy %s from %.12s on %s: no regular file in the archive", path, id, n.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("copy %s from %.12s on %s: %w", path, id, n.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			return io.ReadAll(tr)
		}
	}
}

// Exec runs cmd in the container id of the node's engine (docker exec)
// and returns its exit code, standard output and standard error.
func (n *Node) Exec(ctx context.Context, id string, cmd ...string) (code int, stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	created, err := n.Client.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("exec %q in %.12s on %s: %w", cmd, id, n.Name, err)
	}
	att, err := n.Client.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, nil, nil, fmt.Errorf("exec %q in %.12s on %s: %w", cmd, id, n.Name, err)
	}
	var out, errOut bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &errOut, att.Reader)
	att.Close()
	if err != nil {
		return 0, nil, nil, fmt.Errorf("exec %q in %.12s on %s: read output: %w", cmd, id, n.Name, err)
	}
	for {
		res, err := n.Client.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return 0, nil, nil, fmt.Errorf("exec %q in %.12s on %s: %w", cmd, id, n.Name, err)
		}
		if !res.Running {
			return res.ExitCode, out.Bytes(), errOut.Bytes(), nil
		}
		select {
		case <-ctx.Done():
			return 0, nil, nil, fmt.Errorf("exec %q in %.12s on %s: %w", cmd, id, n.Name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
