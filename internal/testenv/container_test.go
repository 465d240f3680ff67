package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// reply mirrors the backend's JSON body (testdata/backend/reply.go).
type reply struct {
	Name    string            `json:"name"`
	Path    string            `json:"path"`
	Host    string            `json:"host"`
	Port    string            `json:"port"`
	Headers map[string]string `json:"headers"`
}

// noKeepAlive makes each request a new connection, as a fresh client would.
var noKeepAlive = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, body
}

func TestRunPublishedPort(t *testing.T) {
	env := Require(t)
	t.Parallel()
	c := env.Run(t, ContainerSpec{Name: "web", PublishPort: 8000, Labels: map[string]string{"interlock.hostname": "web"}})
	if want := "itest-" + env.RunID + "-web"; c.Name != want {
		t.Errorf("name = %q, want %q", c.Name, want)
	}
	if c.HostPort == 0 {
		t.Fatal("no host port published")
	}

	resp, body := get(t, c.URL("/hello"), map[string]string{"X-Forwarded-For": "192.0.2.1"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /hello: %s", resp.Status)
	}
	if got := resp.Header.Get("X-Backend"); got != c.Name {
		t.Errorf("X-Backend = %q, want the container name %q", got, c.Name)
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	want := reply{Name: c.Name, Path: "/hello", Host: fmt.Sprintf("127.0.0.1:%d", c.HostPort), Port: "8000",
		Headers: map[string]string{"X-Forwarded-For": "192.0.2.1"}}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("reply = %+v, want %+v", r, want)
	}

	resp, body = get(t, c.URL("/fast"), nil)
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" || resp.Header.Get("X-Backend") != c.Name {
		t.Errorf("GET /fast = %s %q X-Backend %q, want 200 \"ok\\n\" %q", resp.Status, body, resp.Header.Get("X-Backend"), c.Name)
	}

	ci, err := env.Client.ContainerInspect(t.Context(), c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelTest: "1", LabelRun: env.RunID, "interlock.hostname": "web"} {
		if got := ci.Container.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
}

func TestRunOnNetworkWithSeveralPorts(t *testing.T) {
	env := Require(t)
	t.Parallel()
	nw := env.Network(t)
	c := env.Run(t, ContainerSpec{
		Network:     nw,
		Env:         map[string]string{"PORTS": "8000,9000"},
		PublishPort: 9000,
		ExposePorts: []uint16{8000},
	})
	if c.IPs[nw] == "" {
		t.Errorf("IPs = %v, want an address on %s", c.IPs, nw)
	}
	if _, ok := c.IPs["bridge"]; ok {
		t.Errorf("IPs = %v: attached to the default bridge too", c.IPs)
	}
	_, body := get(t, c.URL("/"), nil)
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if r.Port != "9000" {
		t.Errorf("served on port %q, want 9000", r.Port)
	}
	ci, err := env.Client.ContainerInspect(t.Context(), c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var exposed []string
	for p := range ci.Container.Config.ExposedPorts {
		exposed = append(exposed, p.String())
	}
	if len(exposed) != 2 {
		t.Errorf("exposed ports = %v, want 8000/tcp and 9000/tcp", exposed)
	}
}

func TestRunNoStart(t *testing.T) {
	env := Require(t)
	t.Parallel()
	c := env.Run(t, ContainerSpec{NoStart: true, PublishPort: 8000})
	ci, err := env.Client.ContainerInspect(t.Context(), c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := ci.Container.State.Status; s != container.StateCreated {
		t.Fatalf("state = %q, want created", s)
	}
	if err := env.Start(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	c, err = env.Inspect(t.Context(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.HostPort == 0 {
		t.Fatal("no host port after start")
	}
	waitServing(t, c)
}

func TestUpgradeEchoesRawBytes(t *testing.T) {
	env := Require(t)
	t.Parallel()
	c := env.Run(t, ContainerSpec{PublishPort: 8000})
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.HostPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The first payload rides in the same write as the request, as a
	// client that pipelines its first frame would send it.
	if _, err := io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("response = %s Upgrade %q, want 101 websocket", resp.Status, resp.Header.Get("Upgrade"))
	}
	if got := resp.Header.Get("X-Backend"); got != c.Name {
		t.Errorf("X-Backend = %q, want %q", got, c.Name)
	}
	for _, msg := range []string{"hello", " and more"} {
		if msg != "hello" {
			if _, err := io.WriteString(conn, msg); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatalf("read echo of %q: %v", msg, err)
		}
		if string(buf) != msg {
			t.Errorf("echo = %q, want %q", buf, msg)
		}
	}
	// Closing our side ends the tunnel: the backend closes too.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after close: read %q, %v; want EOF", rest, err)
	}
}

func TestHealthCheckFollowsHealthEndpoint(t *testing.T) {
	env := Require(t)
	t.Parallel()
	c := env.Run(t, ContainerSpec{PublishPort: 8000, HealthCheck: true})
	waitHealth := func(want container.HealthStatus) {
		t.Helper()
		WaitFor(t, 15*time.Second, "container "+c.Name+" "+string(want), func() error {
			got, err := env.Health(t.Context(), c.ID)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("health is %s", got)
			}
			return nil
		})
	}
	waitHealth(container.Healthy)
	if resp, _ := get(t, c.URL("/health/fail"), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health/fail: %s", resp.Status)
	}
	if resp, _ := get(t, c.URL("/health"), nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /health after fail: %s, want 503", resp.Status)
	}
	waitHealth(container.Unhealthy)
	get(t, c.URL("/health/ok"), nil)
	waitHealth(container.Healthy)
}

func TestDrainDelayKeepsServingAfterSIGTERM(t *testing.T) {
	env := Require(t)
	t.Parallel()
	const delay = 2 * time.Second
	timeout := 10
	c := env.Run(t, ContainerSpec{PublishPort: 8000, Env: map[string]string{"DRAIN_DELAY": delay.String()}, StopTimeout: &timeout})

	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		stopped <- env.Stop(ctx, c.ID)
	}()
	WaitFor(t, 5*time.Second, "backend to log that it is draining", func() error {
		logs, err := env.Logs(t.Context(), c.ID)
		if err != nil {
			return err
		}
		if !strings.Contains(logs, "draining for "+delay.String()) {
			return fmt.Errorf("logs: %q", logs)
		}
		return nil
	})
	// SIGTERM has arrived; new connections are still served.
	resp, body := get(t, c.URL("/fast"), nil)
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /fast while draining = %s %q, want 200 ok", resp.Status, body)
	}
	select {
	case err := <-stopped:
		t.Fatalf("container stopped (%v) after %s, before the request was answered", err, time.Since(start))
	default:
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < delay {
		t.Errorf("stopped after %s, want at least the drain delay %s", el, delay)
	}
	ci, err := env.Client.ContainerInspect(t.Context(), c.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := ci.Container.State; st.Running || st.ExitCode != 0 {
		t.Errorf("after stop: running=%v exit code %d, want a clean exit 0", st.Running, st.ExitCode)
	}
}
