package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// The built-in proxy's edge, end to end: PROXY protocol from a real
// HAProxy, trusted forwarded headers, the access log and its reopen on
// SIGUSR1, and the body and header limits.

// runTCPHAProxy runs the host's haproxy in TCP mode, listening on a free
// loopback port and sending every connection to target with a PROXY v2
// header (send-proxy-v2). It returns the listening address; haproxy is
// stopped at cleanup.
func runTCPHAProxy(t *testing.T, target string) string {
	t.Helper()
	bin := testenv.HAProxyBinary(t)
	front := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := fmt.Sprintf(`global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend edge
    bind %s
    default_backend interlock
backend interlock
    server interlock %s send-proxy-v2
`, front, target)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	testenv.WaitFor(t, 10*time.Second, "haproxy listening", func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("haproxy exited: %v\n%s", err, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", front, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	})
	return front
}

// edgeReply is the part of the test backend's JSON reply these tests read.
type edgeReply struct {
	Name    string            `json:"name"`
	Headers map[string]string `json:"headers"`
}

// getFrom sends GET / with Host host to addr on a connection that leaves
// from the loopback address source, with extra headers, and decodes the
// backend's reply.
func getFrom(t *testing.T, source, addr, host string, hdr http.Header) (int, edgeReply) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/", nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s from %s via %s: %v", host, source, addr, err)
	}
	defer res.Body.Close()
	var r edgeReply
	b, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(b, &r)
	return res.StatusCode, r
}

// accessEntries reads the JSON access log at path.
func accessEntries(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestBuiltinEdgeBehindHAProxy: a real HAProxy (TCP mode, send-proxy-v2)
// in front of `interlock run`, which trusts it (--proxy-protocol-trusted-ips
// 127.0.0.1). Clients leave from 127.0.0.2 and up: their containers see
// them in X-Forwarded-For, forged X-Forwarded-For is dropped except from
// the one client --forwarded-headers-trusted-ips names (appended to),
// source balancing keys on each client, and the JSON access log has them
// all. A PROXY header sent straight to Interlock is refused; the body and
// header limits answer 413 and 431.
func TestBuiltinEdgeBehindHAProxy(t *testing.T) {
	e := needDocker(t)
	host := hostFor(t, "edge")
	logPath := filepath.Join(t.TempDir(), "access.log")
	in := startInterlock(t,
		"--proxy-protocol-trusted-ips", "127.0.0.1",
		"--forwarded-headers-trusted-ips", "127.0.0.3/32",
		"--access-log", logPath, "--access-log-format", "json",
		"--max-body-bytes", "1KiB", "--max-header-bytes", "4KiB")
	for _, name := range []string{"edgea", "edgeb", "edgec"} {
		e.Run(t, testenv.ContainerSpec{Name: name, PublishPort: 8000,
			Labels: labelsFor(host, "interlock.balance_algorithm", "source")})
	}
	in.waitStatus(t, host, "/", http.StatusOK)
	testenv.WaitFor(t, 15*time.Second, "three backends routed", func() error {
		hosts := in.routes(t).Hosts
		for _, h := range hosts {
			if h.Name == host && len(h.Routes) == 1 && len(h.Routes[0].Backends) == 3 {
				return nil
			}
		}
		return fmt.Errorf("routes: %+v", hosts)
	})
	proxyAddr := strings.TrimPrefix(in.proxy, "http://")
	edge := runTCPHAProxy(t, proxyAddr)

	forged := http.Header{"X-Forwarded-For": {"6.6.6.6"}}
	sources := []string{"127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9", "127.0.0.10", "127.0.0.11", "127.0.0.12"}
	backendOf := map[string]string{}
	for _, src := range sources {
		for range 3 {
			code, r := getFrom(t, src, edge, host, forged)
			if code != 200 || r.Headers["X-Forwarded-For"] != src {
				t.Fatalf("from %s via HAProxy: %d, the container saw X-Forwarded-For %q; want %s alone", src, code, r.Headers["X-Forwarded-For"], src)
			}
			if prev, ok := backendOf[src]; ok && prev != r.Name {
				t.Errorf("source balancing moved %s from %s to %s", src, prev, r.Name)
			}
			backendOf[src] = r.Name
		}
	}
	distinct := map[string]bool{}
	for _, b := range backendOf {
		distinct[b] = true
	}
	if len(distinct) < 2 {
		t.Errorf("every client went to %v: balancing keyed on HAProxy's address", distinct)
	}
	// The one trusted for forwarded headers keeps its own, appended to.
	if _, r := getFrom(t, "127.0.0.3", edge, host, forged); r.Headers["X-Forwarded-For"] != "6.6.6.6, 127.0.0.3" {
		t.Errorf("trusted client's X-Forwarded-For reached the container as %q, want \"6.6.6.6, 127.0.0.3\"", r.Headers["X-Forwarded-For"])
	}

	// The access log, flushed within a second, names each client.
	want := len(sources)*3 + 1
	var entries []map[string]any
	testenv.WaitFor(t, 10*time.Second, "the access log written", func() error {
		entries = nil
		for _, m := range accessEntries(t, logPath) {
			if m["host"] == host {
				entries = append(entries, m)
			}
		}
		if len(entries) < want {
			return fmt.Errorf("%d lines for %s, want %d", len(entries), host, want)
		}
		return nil
	})
	perClient := map[string]int{}
	for _, m := range entries {
		perClient[fmt.Sprint(m["client"])]++
		if m["status"] != float64(200) || m["route"] != host+"/" || m["backend"] == "" || m["method"] != "GET" || m["path"] != "/" {
			t.Errorf("access log entry %v", m)
		}
	}
	for _, src := range sources {
		if perClient[src] != 3 {
			t.Errorf("client %s has %d access log lines, want 3 (all: %v)", src, perClient[src], perClient)
		}
	}
	if perClient["127.0.0.3"] != 1 {
		t.Errorf("client 127.0.0.3 has %d access log lines, want 1", perClient["127.0.0.3"])
	}

	// Straight to Interlock, from 127.0.0.2, with a header of its own.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "PROXY TCP4 203.0.113.1 127.0.0.1 1234 80\r\nGET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	if got, _ := io.ReadAll(c); len(got) != 0 {
		t.Errorf("an untrusted PROXY header got an answer: %q", got)
	}
	c.Close()
	testenv.WaitFor(t, 5*time.Second, "the refusal logged", func() error {
		if !strings.Contains(in.logs.String(), "PROXY protocol header from an address not in --proxy-protocol-trusted-ips") {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	// Limits: a body over 1KiB, a head over 4KiB (+ net/http's 4KiB slack).
	req, _ := http.NewRequest(http.MethodPost, in.proxy+"/", strings.NewReader(strings.Repeat("x", 2048)))
	req.Host = host
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("X-Interlock-Error") != "body-too-large" {
		t.Errorf("2 KiB body: %d %q, want 413 body-too-large", res.StatusCode, res.Header.Get("X-Interlock-Error"))
	}
	req, _ = http.NewRequest(http.MethodGet, in.proxy+"/", nil)
	req.Host = host
	req.Header.Set("X-Big", strings.Repeat("a", 12<<10))
	res, err = httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("12 KiB header: %d, want 431", res.StatusCode)
	}
}

// TestAccessLogReopenOnSIGUSR1 runs the real binary: after logrotate's
// rename and SIGUSR1, lines go to a new file at the path and the old one
// keeps what it had. Without an access log SIGUSR1 does not kill the
// process.
func TestAccessLogReopenOnSIGUSR1(t *testing.T) {
	needDocker(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	c := startChild(t, "--access-log", logPath)
	hit := func(path string) {
		t.Helper()
		if _, _, err := httpGet(c.proxy+path, "nobody.invalid"); err != nil {
			t.Fatal(err)
		}
	}
	contains := func(file, s string) error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), s) {
			return fmt.Errorf("%s has no %q:\n%s", file, s, b)
		}
		return nil
	}
	hit("/before-rotation")
	testenv.WaitFor(t, 10*time.Second, "the first line written", func() error { return contains(logPath, "/before-rotation") })
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	c.signal(t, syscall.SIGUSR1)
	c.waitLog(t, "reopened", "SIGUSR1: access log reopened", logPath)
	hit("/after-rotation")
	testenv.WaitFor(t, 10*time.Second, "the new file written", func() error { return contains(logPath, "/after-rotation") })
	if b, _ := os.ReadFile(rotated); strings.Contains(string(b), "/after-rotation") || !strings.Contains(string(b), "/before-rotation") {
		t.Errorf("rotated file:\n%s", b)
	}
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "/before-rotation") {
		t.Errorf("new file has the old line:\n%s", b)
	}
	// The common format, from the real binary.
	b, _ := os.ReadFile(logPath)
	if line := strings.TrimSpace(string(b)); !strings.HasPrefix(line, "127.0.0.1 - - [") || !strings.Contains(line, `"GET /after-rotation HTTP/1.1" 404 `) ||
		!strings.Contains(line, `"nobody.invalid" "" ""`) {
		t.Errorf("common line %q", line)
	}

	// No access log: SIGUSR1 is taken and noted, the process lives on.
	plain := startChild(t)
	plain.signal(t, syscall.SIGUSR1)
	plain.waitLog(t, "SIGUSR1 noted", "SIGUSR1: no access log to reopen")
	if code, _, err := httpGet(plain.api+"/readyz", ""); err != nil || code != http.StatusOK {
		t.Errorf("after SIGUSR1 without an access log: %d %v", code, err)
	}
}
