package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// haproxyRun is the state of one haproxy-driving Interlock: its files, the
// HAProxy listeners besides --http-addr, and the Docker network it routes
// over. Routing over a network of its own keeps the table to this test's
// containers: other test binaries share the engine, and a host of theirs
// appearing would be a reload here.
type haproxyRun struct {
	stateDir, certDir    string
	httpsAddr, statsAddr string
	network              string
}

func newHAProxyRun(t *testing.T, e *testenv.Env) haproxyRun {
	t.Helper()
	testenv.HAProxyBinary(t)
	h := haproxyRun{
		// Short: HAProxy's unix socket paths live under it.
		stateDir:  t.TempDir(),
		certDir:   t.TempDir(),
		httpsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		statsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		network:   e.Network(t),
	}
	return h
}

func (h haproxyRun) args(extra ...string) []string {
	return append([]string{"--proxy", "haproxy", "--state-dir", h.stateDir, "--cert-dir", h.certDir,
		"--https-addr", h.httpsAddr, "--stats-addr", h.statsAddr, "--network", h.network,
		"--reload-quiet", "50ms", "--drain-timeout", "10s"}, extra...)
}

// live is the haproxy.cfg Interlock writes.
func (h haproxyRun) live() string { return filepath.Join(h.stateDir, "haproxy", "haproxy.cfg") }

// start runs Interlock driving HAProxy. Idle keep-alive connections of the
// test's clients are closed before it stops: a stopping HAProxy lets an
// idle client connection live until its next request.
func (h haproxyRun) start(t *testing.T, extra ...string) *instance {
	t.Helper()
	in := startInterlock(t, h.args(extra...)...)
	t.Cleanup(httpClient.CloseIdleConnections)
	return in
}

// container runs a backend on the run's network, reached by its IP.
func (h haproxyRun) container(t *testing.T, e *testenv.Env, name string, labels map[string]string, env map[string]string) testenv.Container {
	t.Helper()
	all := map[string]string{"NAME": name}
	for k, v := range env {
		all[k] = v
	}
	return e.Run(t, testenv.ContainerSpec{Name: name, Labels: labels, Network: h.network, ExposePorts: []uint16{8000}, Env: all})
}

// cli sends one command to a HAProxy CLI socket in the state directory
// (master.sock: the master CLI; admin.sock: the Runtime API).
func (h haproxyRun) cli(sock, command string) (string, error) {
	conn, err := net.DialTimeout("unix", filepath.Join(h.stateDir, "haproxy", sock), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return "", err
	}
	_ = conn.(*net.UnixConn).CloseWrite()
	b, err := io.ReadAll(conn)
	return string(b), err
}

// masterReloads is HAProxy's own reload count: the master's line of the
// master CLI's "show proc" ("1162 master 5 [failed: 0] ..."). The master
// re-executes itself on a reload, and its socket refuses connections for
// that moment: a refusal is retried.
func (h haproxyRun) masterReloads(t *testing.T) int {
	t.Helper()
	n := 0
	testenv.WaitFor(t, 10*time.Second, "haproxy's master CLI", func() error {
		out, err := h.cli("master.sock", "show proc")
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[1] == "master" {
				if n, err = strconv.Atoi(f[2]); err != nil {
					return fmt.Errorf("show proc: master line %q", line)
				}
				return nil
			}
		}
		return fmt.Errorf("show proc: no master in %q", out)
	})
	return n
}

// servers lists the servers HAProxy has for host's routes, from the
// Runtime API ("show servers state": be_id be_name srv_id srv_name ...),
// sorted by name (IP_PORT).
func (h haproxyRun) servers(host string) ([]string, error) {
	out, err := h.cli("admin.sock", "show servers state")
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.SplitSeq(out, "\n") {
		if f := strings.Fields(line); len(f) > 3 && strings.HasPrefix(f[1], "be_"+host+"_") {
			names = append(names, f[3])
		}
	}
	slices.Sort(names)
	return names, nil
}

// reloads is the wiring's reload count: /api/status "reloads".
func (in *instance) reloads(t *testing.T) int64 {
	t.Helper()
	_, body := in.status(t)
	var s struct {
		Reloads int64 `json:"reloads"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	return s.Reloads
}

// waitReloads waits until /api/status counts at least n reloads.
func (in *instance) waitReloads(t *testing.T, n int64) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%d reloads in /api/status", n), func() error {
		if got := in.reloads(t); got < n {
			return fmt.Errorf("%d reloads", got)
		}
		return nil
	})
}

// serverName is the HAProxy server of a container on the run's network.
func (h haproxyRun) serverName(c testenv.Container) string {
	return c.IPs[h.network] + "_8000"
}

// waitServers waits until HAProxy has exactly want for host.
func (h haproxyRun) waitServers(t *testing.T, host string, want ...testenv.Container) {
	t.Helper()
	var names []string
	for _, c := range want {
		names = append(names, h.serverName(c))
	}
	slices.Sort(names)
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("haproxy's servers for %s = %v", host, names), func() error {
		got, err := h.servers(host)
		if err != nil {
			return err
		}
		if !slices.Equal(got, names) {
			return fmt.Errorf("haproxy has %v", got)
		}
		return nil
	})
}

// waitBackends waits until requests to host are answered by every one of
// names, and by nothing else.
func (in *instance) waitBackends(t *testing.T, host string, names ...string) {
	t.Helper()
	waitThrough(t, in.proxy, host, names...)
}

// TestHAProxyRoutesLabelsAndRender runs Interlock with a supervised
// HAProxy: label features end to end, a route change (a reload) under load
// without a failed request, a label crafted to break the file, and
// `render --proxy haproxy` against the live file.
func TestHAProxyRoutesLabelsAndRender(t *testing.T) {
	e := needDocker(t)
	h := newHAProxyRun(t, e)
	web, alias, app, bad := hostFor(t, "web"), hostFor(t, "alias"), hostFor(t, "app"), hostFor(t, "bad")
	h.container(t, e, "web", labelsFor(web, "interlock.alias_domain", alias), nil)
	h.container(t, e, "app", labelsFor(app, "interlock.context_root", "/app", "interlock.context_root_rewrite", "true",
		"interlock.balance_algorithm", "leastconn"), nil)
	// A value that would end the path match and add a rule of its own.
	h.container(t, e, "bad", labelsFor(bad, "interlock.context_root", "/x' } || { always_true } #pwned"), nil)

	in := h.start(t)
	if r := in.waitStatus(t, web, "/", http.StatusOK); r.backend != "web" {
		t.Errorf("web answered by %q", r.backend)
	}
	if r := in.waitStatus(t, alias, "/", http.StatusOK); r.backend != "web" {
		t.Errorf("alias answered by %q, want web", r.backend)
	}
	if r := in.waitStatus(t, app, "/app/users", http.StatusOK); r.backend != "app" || !strings.Contains(r.body, `"path":"/users"`) {
		t.Errorf("/app/users: %q %s; want app seeing /users (context_root_rewrite)", r.backend, r.body)
	}
	in.waitStatus(t, app, "/apps", http.StatusNotFound)
	if r, _ := in.get(hostFor(t, "nobody"), "/"); r.code != http.StatusNotFound {
		t.Errorf("unknown host: %d", r.code)
	}

	// Headers: replaced, never appended (invariant 8).
	req, _ := http.NewRequest(http.MethodGet, in.proxy+"/", nil)
	req.Host = web
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "6.6.6.6") || !strings.Contains(string(body), `"X-Forwarded-Host":"`+web) {
		t.Errorf("forwarded headers: %s", body)
	}

	// The bad label never reaches the file; its container is reported.
	leftOut := false
	for _, p := range in.routes(t).LeftOut {
		leftOut = leftOut || p.Label == "interlock.context_root" && strings.Contains(p.Name, "bad")
	}
	if !leftOut {
		t.Errorf("the bad container is not reported as left out: %+v", in.routes(t).LeftOut)
	}
	live, err := os.ReadFile(h.live())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(live, []byte("pwned")) || bytes.Contains(live, []byte("always_true")) || bytes.Contains(live, []byte(bad)) {
		t.Errorf("the bad label reached haproxy.cfg:\n%s", live)
	}

	// A route change is a reload, and web keeps serving through it.
	reloads, master := in.reloads(t), h.masterReloads(t)
	l := startLoad(4, func() (response, error) { return in.get(web, "/") })
	// (Host settings such as the alias must agree among a host's containers.)
	apiC := h.container(t, e, "api", labelsFor(web, "interlock.alias_domain", alias, "interlock.context_root", "/api"), nil)
	testenv.WaitFor(t, 20*time.Second, web+"/api/x answered by api", func() error {
		r, err := in.get(web, "/api/x")
		if err != nil {
			return err
		}
		if r.code != http.StatusOK || r.backend != "api" {
			return fmt.Errorf("%d from %q", r.code, r.backend)
		}
		return nil
	})
	// The new worker serves a moment before the apply returns and the
	// reload is counted.
	in.waitReloads(t, reloads+1)
	total, failed, first := l.Stop()
	if failed != 0 {
		t.Errorf("%d of %d requests failed across the reload; first: %v", failed, total, first)
	}
	if total < 20 {
		t.Errorf("only %d requests during the reload; the load generator did not run", total)
	}
	if n := h.masterReloads(t); n <= master {
		t.Errorf("haproxy's own reloads (show proc): %d before the route change, %d after; want more", master, n)
	}
	if r := in.waitStatus(t, web, "/", http.StatusOK); r.backend != "web" {
		t.Errorf("%s/ answered by %q after the route change, want web", web, r.backend)
	}

	// interlock render --proxy haproxy prints exactly the live file. The
	// state may move between an apply and a render (containers of other
	// tests come and go on the engine): compare until both saw the same.
	renderArgs := append([]string{"render", "--http-addr", strings.TrimPrefix(in.proxy, "http://")}, h.args()...)
	testenv.WaitFor(t, 20*time.Second, "render --proxy haproxy equal to the live file", func() error {
		var out, errOut bytes.Buffer
		if code := realMain(context.Background(), renderArgs, []string{}, &out, &errOut); code != 0 {
			return fmt.Errorf("render exited %d: %s", code, errOut.String())
		}
		live, err := os.ReadFile(h.live())
		if err != nil {
			return err
		}
		if !bytes.Equal(out.Bytes(), live) {
			return fmt.Errorf("render differs from the live file:\n%s\n---- live:\n%s", out.Bytes(), live)
		}
		if !bytes.Contains(live, []byte(web)) {
			return fmt.Errorf("the live file lacks %s", web)
		}
		return nil
	})

	// The route goes again (a reload too) before the test ends, so that
	// removing the containers at cleanup changes nothing while Interlock
	// stops.
	reloads = in.reloads(t)
	if err := e.Remove(context.Background(), apiC.ID); err != nil {
		t.Fatal(err)
	}
	in.waitReloads(t, reloads+1)
	// An idle keep-alive connection to the old worker would carry one more
	// request there (idle-close-on-response), on the old configuration,
	// to the container just killed: ask the new worker.
	httpClient.CloseIdleConnections()
	if r := in.waitStatus(t, web, "/api/x", http.StatusOK); r.backend != "web" {
		t.Errorf("%s/api/x answered by %q once the api route is gone, want web", web, r.backend)
	}
}

// TestHAProxyScaleWithoutReload scales a host from one replica to three
// and back under a small load: every change goes over HAProxy's Runtime
// API, so there is not one reload (the wiring's count and HAProxy's own
// agree), every replica answers, the stopping ones are drained (they leave
// Interlock's table and then HAProxy's) and not one request fails.
func TestHAProxyScaleWithoutReload(t *testing.T) {
	e := needDocker(t)
	h := newHAProxyRun(t, e)
	host := hostFor(t, "scale")
	// Stopping replicas keep serving for a while after SIGTERM, as real
	// ones finishing their requests do: the proxy must have stopped
	// sending them anything new by then.
	drain := map[string]string{"DRAIN_DELAY": "2s"}
	r1 := h.container(t, e, "r1", labelsFor(host), drain)
	in := h.start(t)
	in.waitBackends(t, host, "r1")
	h.waitServers(t, host, r1)
	reloads, master := in.reloads(t), h.masterReloads(t)
	if reloads < 1 {
		t.Errorf("reloads in /api/status = %d after the first start, want it counted", reloads)
	}

	l := startLoad(4, func() (response, error) { return in.get(host, "/") })
	r2 := h.container(t, e, "r2", labelsFor(host), drain)
	r3 := h.container(t, e, "r3", labelsFor(host), drain)
	in.waitBackends(t, host, "r1", "r2", "r3")
	h.waitServers(t, host, r1, r2, r3)

	// Back to one: the two leave the table on their kill event, while
	// their processes still run, and HAProxy drains them.
	stopped := make(chan error, 2)
	for _, c := range []testenv.Container{r2, r3} {
		go func() { stopped <- e.Stop(context.Background(), c.ID) }()
	}
	testenv.WaitFor(t, 5*time.Second, "the stopping replicas leave Interlock's table", func() error {
		for _, hh := range in.routes(t).Hosts {
			if hh.Name == host && len(hh.Routes[0].Backends) == 1 {
				return nil
			}
		}
		return fmt.Errorf("still more than one backend")
	})
	for _, c := range []testenv.Container{r2, r3} {
		if up, err := running(e, c.ID); err != nil || !up {
			t.Errorf("%s was gone (running=%v, %v) before it left the table", c.Name, up, err)
		}
	}
	for range 2 {
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	}
	h.waitServers(t, host, r1)
	in.waitBackends(t, host, "r1")
	total, failed, first := l.Stop()
	t.Logf("scaling 1 -> 3 -> 1: %d requests, %d failed; reloads %d -> %d (/api/status)", total, failed, reloads, in.reloads(t))
	if failed != 0 {
		t.Errorf("%d of %d requests failed while scaling; first: %v", failed, total, first)
	}
	if total < 20 {
		t.Errorf("only %d requests while scaling; the load generator did not run", total)
	}
	if n := in.reloads(t); n != reloads {
		t.Errorf("reloads in /api/status: %d before scaling, %d after; want none", reloads, n)
	}
	if n := h.masterReloads(t); n != master {
		t.Errorf("haproxy's own reloads (show proc): %d before scaling, %d after; want none", master, n)
	}
}

// TestHAProxyCheckTemplate: interlock check --template FILE --proxy
// haproxy renders a sample and runs haproxy -c on it.
func TestHAProxyCheckTemplate(t *testing.T) {
	testenv.HAProxyBinary(t)
	var out, errOut bytes.Buffer
	builtIn := filepath.Join("..", "..", "internal", "proxy", "haproxy", "haproxy.cfg.tmpl")
	if code := realMain(context.Background(), []string{"check", "--template", builtIn, "--proxy", "haproxy"}, nil, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "-c accepted it") {
		t.Fatalf("check --template %s --proxy haproxy: exit %d, %q %q", builtIn, code, out.String(), errOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.tmpl")
	if err := os.WriteFile(bad, []byte("global\n    this_is_not_haproxy on\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := realMain(context.Background(), []string{"check", "--proxy=haproxy", "--template=" + bad}, nil, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "this_is_not_haproxy") || !strings.Contains(errOut.String(), "haproxy -c rejected") {
		t.Fatalf("check --template with a template haproxy refuses: exit %d, %q", code, errOut.String())
	}
	// The nginx template is no haproxy file; builtin takes no template.
	errOut.Reset()
	if code := realMain(context.Background(), []string{"check", "--template", builtIn, "--proxy", "builtin"}, nil, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "takes no template") {
		t.Fatalf("check --template --proxy builtin: exit %d, %q", code, errOut.String())
	}
}

// TestHAProxyContainers drives side-loaded HAProxy containers that share
// Interlock's state directory: the first reads the file Interlock wrote
// before it started, one with a host name of its own starts later; both
// serve every change. Scaling 1 -> 3 -> 1 under load through both goes
// over each container's own admin socket: no request fails and neither
// HAProxy reloads (its worker's pid stays). A route change reloads both
// with SIGUSR2.
func TestHAProxyContainers(t *testing.T) {
	e := needDocker(t)
	h := newHAProxyRun(t, e)
	// Short: each container's admin socket lives there, named by its host
	// name, and unix socket paths take at most 103 bytes.
	shared, err := os.MkdirTemp("", "ilk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	h.stateDir = shared
	label := "haproxy-" + env.RunID + "-" + sanitize(t.Name())
	host, other := hostFor(t, "web"), hostFor(t, "other")
	drain := map[string]string{"DRAIN_DELAY": "2s"}
	h.container(t, e, "r1", labelsFor(host), drain)

	in := h.start(t, "--haproxy-target", "containers", "--proxy-container-label", label,
		"--http-addr", ":80", "--https-addr", ":443")
	conf := h.live()
	testenv.WaitFor(t, 15*time.Second, "the file written before any proxy runs", func() error {
		b, err := os.ReadFile(conf)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(host)) {
			return fmt.Errorf("%s does not route %s yet", conf, host)
		}
		return nil
	})
	dir := filepath.Dir(conf)
	run := func(name, hostname string) (testenv.ProxyContainer, string) {
		p := e.RunHAProxy(t, testenv.ProxySpec{Name: name, Hostname: hostname,
			Labels: map[string]string{"interlock.ext.name": label}, Ports: []uint16{80}, Network: h.network,
			Binds: []string{dir + ":" + dir}, Cmd: []string{"-f", conf}})
		return p, fmt.Sprintf("http://127.0.0.1:%d", p.Ports[80])
	}
	p1, addr1 := run("p1", "")
	_, addr2 := run("p2", "edge-two")
	sockets := []string{filepath.Join(dir, "admin-"+p1.ID[:12]+".sock"), filepath.Join(dir, "admin-edge-two.sock")}
	for _, addr := range []string{addr1, addr2} {
		waitThrough(t, addr, host, "r1")
	}
	// Both are Interlock's instances now: it sees their admin sockets.
	pids := make([]int, len(sockets))
	for i, sock := range sockets {
		pids[i] = workerPid(t, sock)
	}
	reloads := in.reloads(t)

	loads := []*load{
		startLoad(2, func() (response, error) { return getThrough(addr1, host, "/") }),
		startLoad(2, func() (response, error) { return getThrough(addr2, host, "/") }),
	}
	r2 := h.container(t, e, "r2", labelsFor(host), drain)
	r3 := h.container(t, e, "r3", labelsFor(host), drain)
	for _, addr := range []string{addr1, addr2} {
		waitThrough(t, addr, host, "r1", "r2", "r3")
	}
	stopped := make(chan error, 2)
	for _, c := range []testenv.Container{r2, r3} {
		go func() { stopped <- e.Stop(context.Background(), c.ID) }()
	}
	for range 2 {
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	}
	for _, addr := range []string{addr1, addr2} {
		waitThrough(t, addr, host, "r1")
	}
	for i, l := range loads {
		total, failed, first := l.Stop()
		t.Logf("through proxy container %d while scaling 1 -> 3 -> 1: %d requests, %d failed", i+1, total, failed)
		if failed != 0 {
			t.Errorf("proxy container %d: %d of %d requests failed while scaling; first: %v", i+1, failed, total, first)
		}
		if total < 20 {
			t.Errorf("proxy container %d: only %d requests while scaling; the load generator did not run", i+1, total)
		}
	}
	if n := in.reloads(t); n != reloads {
		t.Errorf("reloads in /api/status: %d before scaling, %d after; want none", reloads, n)
	}
	for i, sock := range sockets {
		if pid := workerPid(t, sock); pid != pids[i] {
			t.Errorf("proxy container %d: worker pid %d before scaling, %d after: it reloaded", i+1, pids[i], pid)
		}
	}

	// A new host is a route change: both containers reload onto it.
	h.container(t, e, "other", labelsFor(other), nil)
	for _, addr := range []string{addr1, addr2} {
		waitThrough(t, addr, other, "other")
		waitThrough(t, addr, host, "r1")
	}
	for i, sock := range sockets {
		if pid := workerPid(t, sock); pid == pids[i] {
			t.Errorf("proxy container %d: still worker pid %d after a route change; want a reload", i+1, pid)
		}
	}
}

// waitThrough waits until requests to host through the proxy at base are
// answered by every one of names, and by nothing else.
func waitThrough(t *testing.T, base, host string, names ...string) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%s via %s answered by %v", host, base, names), func() error {
		seen := map[string]bool{}
		for range 10 * len(names) {
			r, err := getThrough(base, host, "/")
			if err != nil {
				return err
			}
			if r.code != http.StatusOK {
				return fmt.Errorf("status %d: %s", r.code, strings.TrimSpace(r.body))
			}
			if !slices.Contains(names, r.backend) {
				return fmt.Errorf("answered by %q", r.backend)
			}
			seen[r.backend] = true
		}
		if len(seen) != len(names) {
			return fmt.Errorf("only %v answered", seen)
		}
		return nil
	})
}

// workerPid is the pid of the HAProxy worker answering on the admin socket
// sock.
func workerPid(t *testing.T, sock string) int {
	t.Helper()
	pid := 0
	testenv.WaitFor(t, 10*time.Second, "the worker's pid on "+sock, func() error {
		conn, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "show info\n"); err != nil {
			return err
		}
		_ = conn.(*net.UnixConn).CloseWrite()
		b, err := io.ReadAll(conn)
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Pid: "); ok {
				pid, err = strconv.Atoi(strings.TrimSpace(v))
				return err
			}
		}
		return fmt.Errorf("no Pid in %q", b)
	})
	return pid
}
