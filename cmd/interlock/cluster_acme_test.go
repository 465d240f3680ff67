package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestClusterEdgesACME is ACME in the split deployment on a real Swarm
// (as TestClusterControllersAndEdges: two managers, two proxy workers
// labelled role=proxy): a service labelled com.docker.lb.ssl_acme=true
// with two names in com.docker.lb.hosts, a controller on each manager,
// both with --acme-storage on one directory of the host that every node
// mounts (ClusterSpec.SharedDir: a shared volume), and a socket-less edge
// on each proxy worker, the one on worker2 following controller 2 first.
//
// Pebble runs on the host, its ACME directory on the cluster network's
// gateway (the controllers are containers in the nodes), and validates
// HTTP-01 for real on the port the nodes publish the edges' proxy on: its
// mock DNS resolves the first name to worker1 and the second to worker2,
// so each edge passes one name's challenge on to the controller it
// follows, which is not always the one that ordered (any controller
// answers, from the shared storage). Then:
//   - both edges serve both names over HTTPS with Pebble's certificates;
//   - Pebble saw one order per name, though two controllers manage both;
//   - the edges hold no ACME storage, only the certificates the feed
//     brought (feed-certificates.json, mode 0600), and still no Docker.
func TestClusterEdgesACME(t *testing.T) {
	e := needDocker(t)
	ctx := context.Background()
	c := splitCluster(t, e, true)
	workers := []*testenv.Node{c.Node("worker1"), c.Node("worker2")}

	// The CA connects to the names on the nodes' own addresses, where each
	// node publishes its edge's proxy port (NodeHTTPPort) and TLS port.
	pb := testenv.StartPebbleWith(t, testenv.PebbleConfig{
		HTTPPort: int(testenv.NodeHTTPPort), TLSPort: int(testenv.NodeHTTPSPort), ListenHost: c.Gateway.String(),
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log (tail):\n%s", tailLines(pb.Log.String(), 60))
		}
	})
	root := filepath.Join(t.TempDir(), "pebble-listener.pem")
	if err := os.WriteFile(root, pb.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	host, alias := hostFor(t, "shop"), hostFor(t, "www")
	names := []string{host, alias}
	for i, name := range names {
		pb.Resolve(t, name, workers[i].IP.String())
	}

	ov := c.Overlay(t)

	// Two controllers on one storage: the node's shared directory, bind
	// mounted; the Pebble listener's root copied in.
	const caRoot, storage = testenv.FeedCertsDir + "/pebble-listener.pem", testenv.NodeSharedDir + "/acme"
	acmeArgs := []string{"--acme-hosts", "labelled", "--acme-ca", pb.Dir, "--acme-ca-root", caRoot,
		"--acme-email", "ops@example.com", "--acme-storage", storage, "--acme-challenge-addr", "127.0.0.1:8082"}
	pki := testenv.NewFeedPKI(t, "controller1", "controller2")
	var ctrls []testenv.FeedContainer
	var urls []string
	for i, m := range c.Managers() {
		ct := c.RunFeed(t, testenv.ClusterFeedSpec{
			Node: m, Network: ov, Alias: fmt.Sprintf("controller%d", i+1), PKI: pki, Args: acmeArgs,
			Files:  map[string]string{caRoot: root},
			Mounts: []mount.Mount{{Type: mount.TypeBind, Source: testenv.NodeSharedDir, Target: testenv.NodeSharedDir}},
		})
		ctrls, urls = append(ctrls, ct), append(urls, ct.URL)
	}
	var edges []testenv.FeedContainer
	for i, n := range workers {
		order := slices.Clone(urls)
		if i == 1 {
			slices.Reverse(order) // worker2's edge follows controller 2
		}
		edges = append(edges, c.RunFeed(t, testenv.ClusterFeedSpec{Node: n, Network: ov, PKI: pki, Controllers: order}))
	}

	waitReadyz(t, edges, "200 ready")
	waitFollowing(t, edges[:1], urls[0])
	waitFollowing(t, edges[1:], urls[1])

	// The labelled service comes once every edge follows its controller:
	// a controller orders a name once the edges connected to it route it,
	// and knows nothing of those that follow the other one (nor of those
	// not started yet), through which the CA may validate.
	began := time.Now()
	c.Service(t, testenv.ClusterServiceSpec{
		ServiceSpec: testenv.ServiceSpec{
			Name: "shop", Replicas: 2, Network: ov,
			Labels: map[string]string{"com.docker.lb.hosts": host + "," + alias, "com.docker.lb.port": "8000",
				"com.docker.lb.ssl_acme": "true"},
		},
		Constraints: []string{"node.labels.role!=proxy"},
	})

	// 1. Both names over HTTPS through both edges, with Pebble's
	// certificates (the edges could not have them otherwise: they never
	// talk to the CA).
	issuing := pb.IssuingRoot(t)
	for _, ed := range edges {
		addr := "127.0.0.1:" + strconv.Itoa(int(ed.Node.HostPort(testenv.NodeHTTPSPort)))
		for _, name := range names {
			testenv.WaitFor(t, 60*time.Second, name+" with Pebble's certificate through the edge on "+ed.Node.Name, func() error {
				return servedACME(addr, name, issuing)
			})
		}
	}
	t.Logf("both names served by both edges with Pebble's certificates %v after the service was created", time.Since(began).Round(time.Millisecond))

	// 2. One order per name, though both controllers manage both names.
	// A certificate is in the shared storage for each.
	if n := pb.Orders(); n != len(names) {
		t.Errorf("pebble saw %d orders; want %d, one per name, though two controllers manage both", n, len(names))
	}
	for _, name := range names {
		crts, _ := filepath.Glob(filepath.Join(c.SharedDir, "acme", "certificates", "*", name, name+".crt"))
		if len(crts) != 1 {
			t.Errorf("the shared storage holds %d certificates for %s (%v); want one", len(crts), name, crts)
		}
	}
	for _, ct := range ctrls {
		logs, err := c.Logs(ctx, ct.Node, ct.ID)
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("controller on %s: %d certificate(s) obtained, %d found in the shared storage already (by its log)", ct.Node,
			strings.Count(logs, "certificate obtained successfully"), strings.Count(logs, "certificate already exists in storage"))
	}

	// 3. The edges hold the certificates the feed brought, and nothing of
	// ACME besides: no account, no storage; and no way to Docker.
	for _, ed := range edges {
		st := statusOf(t, ed.API)
		if len(st.CertificateProblems) != 0 {
			t.Errorf("%s: the edge reports certificate problems: %+v", ed.Node, st.CertificateProblems)
		}
		entries, err := stateEntries(ctx, ed)
		if err != nil {
			t.Fatal(err)
		}
		var listing []string
		for p, mode := range entries {
			listing = append(listing, fmt.Sprintf("%s %v", p, mode))
			if slices.Contains(strings.Split(p, "/"), "acme") || strings.HasSuffix(p, ".key") {
				t.Errorf("%s: the edge's state directory holds %s (%v): an edge must hold no ACME account or storage", ed.Node, p, mode)
			}
		}
		slices.Sort(listing)
		mode, ok := entries[feedCertsFile]
		if !ok || mode.Perm() != 0o600 || !mode.IsRegular() {
			t.Errorf("%s: %s in the edge's state directory: present %v, mode %v; want a file of mode 0600\nthe directory: %s",
				ed.Node, feedCertsFile, ok, mode, strings.Join(listing, ", "))
		}
		saved, err := ed.Node.ReadFile(ctx, ed.ID, testenv.FeedStateDir+"/"+feedCertsFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			if !strings.Contains(string(saved), name) {
				t.Errorf("%s: the edge's %s (%d bytes) lacks %s", ed.Node, feedCertsFile, len(saved), name)
			}
		}
		t.Logf("%s: the edge's state directory: %s", ed.Node, strings.Join(listing, ", "))
		checkNoDocker(t, ed)
	}
}

// servedACME checks that the proxy at addr (host:port) serves name over
// HTTPS, by SNI, with a certificate that verifies against roots, and routes
// it to a task of the service (X-Backend "<node>.<slot>").
func servedACME(addr, name string, roots *x509.CertPool) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+name+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if b := res.Header.Get("X-Backend"); res.StatusCode != http.StatusOK || !strings.HasPrefix(b, "manager") {
		return fmt.Errorf("%d from %q (%s)", res.StatusCode, b, res.Header.Get("X-Interlock-Error"))
	}
	return nil
}

// stateEntries lists an edge's state directory (FeedStateDir, docker cp
// from its container): each path under it, and its mode.
func stateEntries(ctx context.Context, ed testenv.FeedContainer) (map[string]fs.FileMode, error) {
	res, err := ed.Node.Client.CopyFromContainer(ctx, ed.ID, client.CopyFromContainerOptions{SourcePath: testenv.FeedStateDir})
	if err != nil {
		return nil, fmt.Errorf("copy %s from %s on %s: %w", testenv.FeedStateDir, ed.Name, ed.Node, err)
	}
	defer res.Content.Close()
	out := map[string]fs.FileMode{}
	tr := tar.NewReader(res.Content)
	base := path.Base(testenv.FeedStateDir)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("copy %s from %s on %s: %w", testenv.FeedStateDir, ed.Name, ed.Node, err)
		}
		if p, ok := strings.CutPrefix(strings.TrimSuffix(hdr.Name, "/"), base+"/"); ok {
			out[p] = hdr.FileInfo().Mode()
		}
	}
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
