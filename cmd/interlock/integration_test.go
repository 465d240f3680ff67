package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/client"
)

func TestContainerStartStopRoute(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "web")
	c := e.Run(t, testenv.ContainerSpec{Name: "web", Labels: labelsFor(host), PublishPort: 8000, Env: map[string]string{"NAME": "web"}})

	r := in.waitStatus(t, host, "/hello", http.StatusOK)
	if r.backend != "web" || !strings.Contains(r.body, `"/hello"`) {
		t.Errorf("response from %q with body %s, want the web container echoing /hello", r.backend, r.body)
	}
	// A paused container cannot answer: out while paused, back after.
	if err := e.Pause(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	in.waitStatus(t, host, "/", http.StatusNotFound)
	if err := e.Unpause(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	in.waitStatus(t, host, "/", http.StatusOK)

	if err := e.Stop(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	r = in.waitStatus(t, host, "/", http.StatusNotFound)
	if !strings.Contains(r.body, "no route") {
		t.Errorf("404 body %q, want it to say there is no route", r.body)
	}
	if err := e.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	in.waitStatus(t, host, "/", http.StatusOK)
}

func TestReplicasShareHostAndAreBalanced(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "app")
	names := []string{"r1", "r2", "r3"}
	for _, n := range names {
		e.Run(t, testenv.ContainerSpec{Name: n, Labels: labelsFor(host), PublishPort: 8000, Env: map[string]string{"NAME": n}})
	}
	testenv.WaitFor(t, 15*time.Second, "three backends routed", func() error {
		for _, h := range in.routes(t).Hosts {
			if h.Name == host && len(h.Routes) == 1 && len(h.Routes[0].Backends) == 3 {
				return nil
			}
		}
		return fmt.Errorf("host %s does not have 3 backends yet", host)
	})
	counts := map[string]int{}
	for range 30 {
		r, err := in.get(host, "/")
		if err != nil || r.code != http.StatusOK {
			t.Fatalf("GET: %v %d", err, r.code)
		}
		counts[r.backend]++
	}
	for _, n := range names {
		if counts[n] != 10 {
			t.Errorf("round robin over 30 requests: %v, want 10 each", counts)
			break
		}
	}
}

func TestBadLabelIsolated(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	good := hostFor(t, "good")
	bad := hostFor(t, "bad")
	e.Run(t, testenv.ContainerSpec{Name: "good", Labels: labelsFor(good), PublishPort: 8000, Env: map[string]string{"NAME": "good"}})
	badPort := e.Run(t, testenv.ContainerSpec{Name: "badport", Labels: labelsFor(bad, "interlock.port", "80;"), PublishPort: 8000})
	badHost := e.Run(t, testenv.ContainerSpec{Name: "badhost", Labels: labelsFor("evil.test;\nserver{", "interlock.domain", "x"), PublishPort: 8000})
	// Same host as the good one, but a setting that disagrees with it.
	e.Run(t, testenv.ContainerSpec{Name: "conflict", Labels: labelsFor(good, "interlock.ssl_only", "true"), PublishPort: 8000, Env: map[string]string{"NAME": "conflict"}})

	testenv.WaitFor(t, 15*time.Second, "bad and conflicting containers reported", func() error {
		want := map[string]string{badPort.ID: "interlock.port", badHost.ID: "interlock.hostname"}
		conflictSeen := false
		for _, p := range in.routes(t).LeftOut {
			if label, ok := want[p.ID]; ok && p.Label == label && p.Reason == "invalid_label" && p.Message != "" {
				delete(want, p.ID)
			}
			if strings.HasSuffix(p.Name, "conflict") && p.Reason == "conflict" {
				conflictSeen = true
			}
		}
		if len(want) > 0 || !conflictSeen {
			return fmt.Errorf("not reported yet: %v, conflict seen %v", want, conflictSeen)
		}
		return nil
	})
	for range 10 {
		r, err := in.get(good, "/")
		if err != nil || r.code != http.StatusOK || r.backend != "good" {
			t.Fatalf("good host while bad ones are around: %v %d from %q", err, r.code, r.backend)
		}
	}
	if r, _ := in.get(bad, "/"); r.code != http.StatusNotFound {
		t.Errorf("host of the container with a bad port label answers %d, want 404", r.code)
	}
}

func TestDockerConnectionCutAndRestored(t *testing.T) {
	e := needDocker(t)
	relay, err := testenv.NewRelay("/var/run/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	in := startInterlock(t, "--docker-host", relay.Addr())

	before := hostFor(t, "before")
	after := hostFor(t, "after")
	old := e.Run(t, testenv.ContainerSpec{Name: "before", Labels: labelsFor(before), PublishPort: 8000})
	in.waitStatus(t, before, "/", http.StatusOK)

	relay.Cut()
	testenv.WaitFor(t, 10*time.Second, "readyz reports the lost connection, degraded but serving", func() error {
		code, body, err := httpGet(in.api+"/readyz", "")
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "degraded: not connected to docker") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	// While Interlock is blind: the old container goes, a new one comes.
	// The last good table keeps serving meanwhile.
	if r, err := in.get(before, "/"); err != nil || r.code != http.StatusOK {
		t.Errorf("while disconnected, the last good table must keep serving: %v %d", err, r.code)
	}
	e.Run(t, testenv.ContainerSpec{Name: "after", Labels: labelsFor(after), PublishPort: 8000})
	if err := e.Stop(context.Background(), old.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let Interlock retry against the dead relay a few times
	if err := relay.Restore(); err != nil {
		t.Fatal(err)
	}
	in.waitStatus(t, after, "/", http.StatusOK)
	in.waitStatus(t, before, "/", http.StatusNotFound)
	if strings.Count(in.logs.String(), "docker connection lost") != 1 {
		t.Errorf("want exactly one 'docker connection lost' line for one outage:\n%s", in.logs.String())
	}
	if !strings.Contains(in.logs.String(), "docker connection restored") {
		t.Errorf("reconnect not logged")
	}
}

// TestDockerHostListFailsOver: --docker-host lists two endpoints of the
// same engine (relays standing in for two managers). When the one in use
// dies, Interlock moves to the next at once, lists everything again and
// keeps routing; the table never stops serving.
func TestDockerHostListFailsOver(t *testing.T) {
	e := needDocker(t)
	first, err := testenv.NewRelay("/var/run/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := testenv.NewRelay("/var/run/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	in := startInterlock(t, "--docker-host", first.Addr()+","+second.Addr())
	before, after := hostFor(t, "before"), hostFor(t, "after")
	e.Run(t, testenv.ContainerSpec{Name: "before", Labels: labelsFor(before), PublishPort: 8000})
	in.waitStatus(t, before, "/", http.StatusOK)

	first.Cut()
	cut := time.Now()
	e.Run(t, testenv.ContainerSpec{Name: "after", Labels: labelsFor(after), PublishPort: 8000})
	in.waitStatus(t, after, "/", http.StatusOK) // seen through the second endpoint
	t.Logf("a container started after the first endpoint died was routed %v later", time.Since(cut).Round(time.Millisecond))
	if r, err := in.get(before, "/"); err != nil || r.code != http.StatusOK {
		t.Errorf("the host routed before the failover: %v %d", err, r.code)
	}
	var st struct {
		Docker struct {
			Connected bool   `json:"connected"`
			Host      string `json:"host"`
		} `json:"docker"`
	}
	_, body := in.status(t)
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Docker.Connected || st.Docker.Host != second.Addr() {
		t.Errorf("docker status %+v, want connected to %s", st.Docker, second.Addr())
	}
	if !strings.Contains(in.logs.String(), "trying the next docker endpoint") {
		t.Errorf("the failover is not logged")
	}
}

func TestStoppingContainerDrainsBeforeItDies(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "drain")
	spec := func(n string) testenv.ContainerSpec {
		return testenv.ContainerSpec{Name: n, Labels: labelsFor(host), PublishPort: 8000,
			Env: map[string]string{"NAME": n, "DRAIN_DELAY": "2s"}}
	}
	stopping := e.Run(t, spec("stopping"))
	e.Run(t, spec("staying"))
	testenv.WaitFor(t, 15*time.Second, "two backends", func() error {
		for _, h := range in.routes(t).Hosts {
			if h.Name == host && len(h.Routes[0].Backends) == 2 {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})

	// Load from 4 clients for the whole stop.
	ctx, cancel := context.WithCancel(context.Background())
	var failures, total, fromStoppingAfterKill atomic.Int64
	var killed atomic.Bool
	var wg sync.WaitGroup
	var firstFailure atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r, err := in.get(host, "/")
				total.Add(1)
				if err != nil || r.code != http.StatusOK {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%v %d %s", err, r.code, r.body))
					continue
				}
				if killed.Load() && r.backend == "stopping" {
					fromStoppingAfterKill.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	stopDone := make(chan error, 1)
	go func() { stopDone <- e.Stop(context.Background(), stopping.ID) }()
	// The proxy must stop using it while its process still runs.
	testenv.WaitFor(t, 2*time.Second, "stopping container leaves the table", func() error {
		for _, h := range in.routes(t).Hosts {
			if h.Name == host && len(h.Routes[0].Backends) == 1 {
				return nil
			}
		}
		return fmt.Errorf("still 2 backends")
	})
	if running, err := running(e, stopping.ID); err != nil || !running {
		t.Errorf("the container was gone (running=%v, %v) before it left the table", running, err)
	}
	// Requests already sent may still land on it; give them a moment, then
	// nothing new may go there.
	time.Sleep(100 * time.Millisecond)
	killed.Store(true)
	if err := <-stopDone; err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if failures.Load() > 0 {
		t.Errorf("%d of %d requests failed during a stop; first: %v", failures.Load(), total.Load(), firstFailure.Load())
	}
	if n := fromStoppingAfterKill.Load(); n > 0 {
		t.Errorf("%d requests reached the stopping container after it left the table", n)
	}
	if total.Load() < 20 {
		t.Errorf("only %d requests during the test; the load generator did not run", total.Load())
	}
}

func running(e *testenv.Env, id string) (bool, error) {
	res, err := e.Client.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		return false, err
	}
	return res.Container.State != nil && res.Container.State.Running, nil
}

func TestUnhealthyContainerLeavesTable(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "health")
	c := e.Run(t, testenv.ContainerSpec{Name: "health", Labels: labelsFor(host), PublishPort: 8000, HealthCheck: true})
	in.waitStatus(t, host, "/", http.StatusOK) // only once healthy
	if code, _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/health/fail", c.HostPort), ""); err != nil || code != http.StatusOK {
		t.Fatalf("make the container unhealthy: %v %d", err, code)
	}
	in.waitStatus(t, host, "/", http.StatusNotFound)
	if code, _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/health/ok", c.HostPort), ""); err != nil || code != http.StatusOK {
		t.Fatalf("make the container healthy: %v %d", err, code)
	}
	in.waitStatus(t, host, "/", http.StatusOK)
}

func TestContextRootAliasAndHeaders(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "site")
	alias := hostFor(t, "alias")
	e.Run(t, testenv.ContainerSpec{Name: "root", Labels: labelsFor(host, "interlock.alias_domain", alias), PublishPort: 8000, Env: map[string]string{"NAME": "root"}})
	e.Run(t, testenv.ContainerSpec{Name: "api", Labels: labelsFor(host, "interlock.alias_domain", alias, "interlock.context_root", "/api", "interlock.context_root_rewrite", "true"),
		PublishPort: 8000, Env: map[string]string{"NAME": "api"}})

	// The root container answers /api/users too until the api route is in.
	var r response
	testenv.WaitFor(t, 15*time.Second, "the api container answering /api/users", func() error {
		var err error
		if r, err = in.get(host, "/api/users"); err == nil && r.backend != "api" {
			err = fmt.Errorf("answered by %q (%d)", r.backend, r.code)
		}
		return err
	})
	if r.code != http.StatusOK || !strings.Contains(r.body, `"path":"/users"`) {
		t.Errorf("/api/users answered by %q with %s; want the api container seeing /users", r.backend, r.body)
	}
	r = in.waitStatus(t, alias, "/apis", http.StatusOK)
	if r.backend != "root" {
		t.Errorf("alias /apis answered by %q, want root (context roots match whole segments)", r.backend)
	}
	req, _ := http.NewRequest(http.MethodGet, in.proxy+"/", nil)
	req.Host = host
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "6.6.6.6") || !strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("X-Forwarded-For from an untrusted client must be replaced by its address: %s", body)
	}
	if !strings.Contains(string(body), `"X-Forwarded-Host":"`+host) {
		t.Errorf("X-Forwarded-Host missing: %s", body)
	}
}

func TestWebSocketUpgradeThroughProxy(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "ws")
	e.Run(t, testenv.ContainerSpec{Name: "ws", Labels: labelsFor(host, "interlock.websocket_endpoint", "/ws"), PublishPort: 8000})
	in.waitStatus(t, host, "/", http.StatusOK)
	checkWebSocketEcho(t, strings.TrimPrefix(in.proxy, "http://"), host)
}

// checkWebSocketEcho upgrades GET /ws of host through the proxy at addr
// and checks that the backend's echo comes back through the tunnel.
func checkWebSocketEcho(t *testing.T, addr, host string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d, want 101", resp.StatusCode)
	}
	fmt.Fprint(conn, "ping over the tunnel\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping over the tunnel\n" {
		t.Fatalf("echo through the upgraded connection: %q %v", line, err)
	}
}

func TestNetworkModeRoutesByContainerIP(t *testing.T) {
	e := needDocker(t)
	network := e.Network(t)
	in := startInterlock(t, "--network", network)
	host := hostFor(t, "net")
	// Not published at all: reachable only by its IP on the network.
	c := e.Run(t, testenv.ContainerSpec{Name: "net", Labels: labelsFor(host), ExposePorts: []uint16{8000}, Network: network})
	in.waitStatus(t, host, "/", http.StatusOK)
	found := false
	for _, h := range in.routes(t).Hosts {
		if h.Name == host && h.Routes[0].Backends[0].Address == net.JoinHostPort(c.IPs[network], "8000") {
			found = true
		}
	}
	if !found {
		t.Errorf("backend address is not the container's IP %s on %s: %+v", c.IPs[network], network, in.routes(t).Hosts)
	}
}

func TestRenderPrintsTable(t *testing.T) {
	e := needDocker(t)
	host := hostFor(t, "render")
	e.Run(t, testenv.ContainerSpec{Name: "render", Labels: labelsFor(host), PublishPort: 8000})
	var out strings.Builder
	var errOut strings.Builder
	if code := realMain(context.Background(), []string{"render"}, []string{}, &out, &errOut); code != 0 {
		t.Fatalf("render exited %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), `"name": "`+host+`"`) || !strings.Contains(out.String(), `"left_out"`) {
		t.Errorf("render output lacks the host %s:\n%s", host, out.String())
	}
}
