package testenv

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// ContainerSpec describes a backend container for Run. The zero value runs
// one backend on port 8000, exposed on nothing, on the default bridge.
type ContainerSpec struct {
	// Name is optional; it is prefixed with "itest-<runid>-". Empty means a
	// generated unique name.
	Name string
	// Labels are added to the run labels (which win on a clash).
	Labels map[string]string
	// Env is the backend's environment (PORT, PORTS, NAME, DRAIN_DELAY).
	// NAME defaults to the container name, so X-Backend names the container.
	Env map[string]string
	// PublishPort is a container port to publish on 127.0.0.1 with a random
	// host port (0 = none); it is also exposed.
	PublishPort uint16
	// ExposePorts are extra exposed-but-unpublished ports.
	ExposePorts []uint16
	// Network attaches the container to this network instead of the default
	// bridge.
	Network string
	// HealthCheck adds a HEALTHCHECK running the backend's -probe against
	// /health on its first port, every 500ms, unhealthy after one failure.
	HealthCheck bool
	// StopTimeout is the container's stop timeout in seconds; nil means the
	// engine default.
	StopTimeout *int
	// NoStart creates the container without starting it.
	NoStart bool
}

// Container is what a test needs to reach a container.
type Container struct {
	ID   string
	Name string // without the leading "/"
	// HostPort is the 127.0.0.1 port published for ContainerSpec.PublishPort;
	// 0 when none is published or the container is not running.
	HostPort uint16
	// IPs maps network name to the container's IPv4 address on it.
	IPs map[string]string
}

// URL returns http://127.0.0.1:<HostPort><path>.
func (c Container) URL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(int(c.HostPort)) + path
}

// Run creates and starts a container from the backend image and registers a
// t.Cleanup that force-removes it, after logging its output if the test
// failed. When the published port is one the backend serves, Run returns
// only once the backend answers on it.
func (e *Env) Run(t testing.TB, spec ContainerSpec) Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := e.BackendImage(ctx)
	if err != nil {
		t.Fatalf("run container: %v", err)
	}
	name := e.name(spec.Name, "c")
	ports := servedPorts(spec.Env)
	env := map[string]string{"NAME": name}
	maps.Copy(env, spec.Env)

	cfg := &container.Config{
		Image:        img,
		Labels:       e.withLabels(spec.Labels),
		Env:          envList(env),
		ExposedPorts: network.PortSet{},
		StopTimeout:  spec.StopTimeout,
	}
	host := &container.HostConfig{PortBindings: network.PortMap{}}
	var netcfg *network.NetworkingConfig
	for _, p := range spec.ExposePorts {
		cfg.ExposedPorts[tcpPort(p)] = struct{}{}
	}
	if spec.PublishPort != 0 {
		p := tcpPort(spec.PublishPort)
		cfg.ExposedPorts[p] = struct{}{}
		host.PortBindings[p] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
	}
	if spec.HealthCheck {
		cfg.Healthcheck = &container.HealthConfig{
			Test:     []string{"CMD", backendPath, "-probe", "http://127.0.0.1:" + ports[0] + "/health"},
			Interval: 500 * time.Millisecond,
			Timeout:  3 * time.Second,
			Retries:  1,
		}
	}
	if spec.Network != "" {
		host.NetworkMode = container.NetworkMode(spec.Network)
		netcfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{spec.Network: {}}}
	}

	res, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name, Config: cfg, HostConfig: host, NetworkingConfig: netcfg,
	})
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := e.Logs(ctx, res.ID); err != nil {
				t.Logf("logs of container %s: %v", name, err)
			} else {
				t.Logf("logs of container %s:\n%s", name, logs)
			}
		}
		if err := e.removeContainer(ctx, res.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if !spec.NoStart {
		if err := e.Start(ctx, res.ID); err != nil {
			t.Fatal(err)
		}
	}
	c, err := e.Inspect(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !spec.NoStart && c.HostPort != 0 && slices.Contains(ports, strconv.Itoa(int(spec.PublishPort))) {
		waitServing(t, c)
	}
	return c
}

// waitServing polls the published port until the backend answers.
func waitServing(t testing.TB, c Container) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	WaitFor(t, 15*time.Second, "container "+c.Name+" serving on "+c.URL("/"), func() error {
		resp, err := hc.Get(c.URL("/fast"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
}

// Inspect returns the current Container view of id (its published host port
// and network addresses change when it restarts).
func (e *Env) Inspect(ctx context.Context, id string) (Container, error) {
	res, err := e.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	ci := res.Container
	c := Container{ID: ci.ID, Name: strings.TrimPrefix(ci.Name, "/"), IPs: map[string]string{}}
	if ns := ci.NetworkSettings; ns != nil {
		for netName, ep := range ns.Networks {
			if ep != nil && ep.IPAddress.IsValid() {
				c.IPs[netName] = ep.IPAddress.String()
			}
		}
		for _, bindings := range ns.Ports {
			for _, b := range bindings {
				if p, err := strconv.ParseUint(b.HostPort, 10, 16); err == nil && p != 0 {
					c.HostPort = uint16(p)
				}
			}
		}
	}
	return c, nil
}

// Health returns the container's health status ("starting", "healthy",
// "unhealthy"), or "none" when it has no health check.
func (e *Env) Health(ctx context.Context, id string) (container.HealthStatus, error) {
	res, err := e.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", id, err)
	}
	if res.Container.State == nil || res.Container.State.Health == nil {
		return container.NoHealthcheck, nil
	}
	return res.Container.State.Health.Status, nil
}

// servedPorts returns the ports the backend will listen on for env, in the
// backend's own order of precedence: PORTS, then PORT, then 8000.
func servedPorts(env map[string]string) []string {
	s := env["PORTS"]
	if s == "" {
		s = env["PORT"]
	}
	var ports []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ports = append(ports, p)
		}
	}
	if len(ports) == 0 {
		ports = []string{"8000"}
	}
	return ports
}

// envList turns env into sorted KEY=value pairs.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func tcpPort(n uint16) network.Port {
	p, _ := network.PortFrom(n, network.TCP) // ok is false only for an empty protocol
	return p
}
