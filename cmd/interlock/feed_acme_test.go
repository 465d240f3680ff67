package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestEdgesShareACME: two controllers share one ACME storage and obtain
// the certificates of a labelled host and its alias from a real Pebble;
// three edges serve them. Pebble validates through the edges (the host's
// name resolves to edge 2, the alias's to edge 3, each on its own
// loopback address), which pass the challenges on to the controller they
// follow, and which is not always the one that ordered. Then:
//   - one order per name, though two controllers manage both;
//   - every edge serves both names with Pebble's certificates;
//   - no edge holds an ACME account or storage, only the certificates
//     (mode 0600);
//   - an edge restarted while no controller runs serves the certificates
//     at once from disk.
func TestEdgesShareACME(t *testing.T) {
	e := needDocker(t)
	httpPort, httpsPort := testenv.FreePort(t), testenv.FreePort(t)
	pb := testenv.StartPebble(t, httpPort, testenv.FreePort(t))
	root := filepath.Join(t.TempDir(), "pebble-listener.pem")
	if err := os.WriteFile(root, pb.RootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.NewPKI(t)
	storage := t.TempDir() // shared by the controllers, as a shared volume would be
	acmeArgs := []string{"--acme-hosts", "labelled", "--acme-ca", pb.Dir, "--acme-ca-root", root,
		"--acme-email", "ops@example.com", "--acme-storage", storage}

	host, alias := hostFor(t, "shop"), hostFor(t, "www")
	e.Run(t, testenv.ContainerSpec{Name: "shop", PublishPort: 8000, Env: map[string]string{"NAME": "shop"},
		Labels: labelsFor(host, "interlock.ssl_acme", "true", "interlock.ssl_only", "true", "interlock.alias_domain", alias)})

	var urls []string
	var stops []func()
	for range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		args := append([]string{"--role", "controller", "--feed-addr", addr, "--state-dir", t.TempDir(),
			"--acme-challenge-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}, feedArgs(p, true)...)
		in, stop := startStoppable(t, append(args, acmeArgs...)...)
		urls, stops = append(urls, "https://"+addr), append(stops, stop)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("controller %s log:\n%s", addr, in.logs)
			}
		})
	}

	// Edge i listens on 127.0.0.(i+1), on the ports Pebble validates on;
	// edge 2 prefers controller 2.
	type edgeRun struct {
		ip, state string
		in        *instance
		stop      func()
	}
	edges := make([]*edgeRun, 3)
	startEdgeAt := func(i int) {
		ed := edges[i]
		order := slices.Clone(urls)
		if i == 1 {
			slices.Reverse(order)
		}
		args := append([]string{"--role", "edge", "--controllers", strings.Join(order, ","), "--state-dir", ed.state,
			"--http-addr", fmt.Sprintf("%s:%d", ed.ip, httpPort), "--https-addr", fmt.Sprintf("%s:%d", ed.ip, httpsPort)},
			feedArgs(p, false)...)
		ed.in, ed.stop = startStoppable(t, args...)
		in := ed.in
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("edge %d (%s) log:\n%s", i+1, ed.ip, in.logs)
			}
		})
	}
	for i := range edges {
		edges[i] = &edgeRun{ip: fmt.Sprintf("127.0.0.%d", i+1), state: t.TempDir()}
		startEdgeAt(i)
	}
	pb.Resolve(t, host, edges[1].ip)
	pb.Resolve(t, alias, edges[2].ip)

	issuing := pb.IssuingRoot(t)
	served := func(ip, name string) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", fmt.Sprintf("%s:%d", ip, httpsPort),
			&tls.Config{ServerName: name, RootCAs: issuing})
		if err != nil {
			return err
		}
		defer conn.Close()
		req := "GET / HTTP/1.1\r\nHost: " + name + "\r\nConnection: close\r\n\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			return err
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Backend") != "shop" {
			return fmt.Errorf("%d from %q", res.StatusCode, res.Header.Get("X-Backend"))
		}
		return nil
	}
	for _, ed := range edges {
		for _, name := range []string{host, alias} {
			testenv.WaitFor(t, 90*time.Second, name+" with Pebble's certificate through the edge on "+ed.ip, func() error {
				return served(ed.ip, name)
			})
		}
	}
	if n := pb.Orders(); n != 2 {
		t.Errorf("pebble saw %d orders, want 2: one per name, though two controllers manage both", n)
	}
	for i, ed := range edges {
		if _, err := os.Stat(filepath.Join(ed.state, "acme")); !os.IsNotExist(err) {
			t.Errorf("edge %d has an ACME storage (%v); edges must hold no account", i+1, err)
		}
		fi, err := os.Stat(filepath.Join(ed.state, feedCertsFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("edge %d's saved certificates: %v %v; want mode 0600", i+1, fi, err)
		}
		if st := apiStatus(t, ed.in); len(st.CertificateProblems) != 0 {
			t.Errorf("edge %d reports certificate problems: %+v", i+1, st.CertificateProblems)
		}
	}
	// Plain HTTP through an edge: ssl_only redirects, and the challenge
	// path reaches a controller, which knows no such token.
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/", http.StatusMovedPermanently, ""},
		{"/.well-known/acme-challenge/no-such-token", http.StatusNotFound, "no ACME challenge pending"},
	} {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d%s", edges[0].ip, httpPort, tc.path), nil)
		req.Host = host
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code || !strings.Contains(string(body), tc.body) {
			t.Errorf("http://%s%s through edge 1: %d %q, want %d %q", host, tc.path, res.StatusCode, body, tc.code, tc.body)
		}
	}

	// No controller: an edge restarted serves the certificates at once.
	for _, stop := range stops {
		stop()
	}
	edges[0].stop()
	start := time.Now()
	startEdgeAt(0)
	var err error
	for time.Since(start) < 5*time.Second {
		if err = served(edges[0].ip, alias); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("restarted edge served the saved certificate %v after start", took)
	if err != nil || took > time.Second {
		t.Errorf("restarted edge without controllers: %v after %v; want the saved certificate within a second", err, took)
	}
	if !strings.Contains(edges[0].in.logs.String(), "ACME certificates loaded from the last run") {
		t.Errorf("no certificate restore in the log:\n%s", edges[0].in.logs)
	}
}
