package testenv

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// EnsureSwarm makes the engine a one-node Swarm manager when it is not in
// a swarm yet (advertising 127.0.0.1), and reports whether it did, so the
// caller can leave it as it found it (LeaveSwarm). An engine that is a
// worker, or in an error state, is refused: the tests must not touch a
// cluster they did not make.
func (e *Env) EnsureSwarm(ctx context.Context) (created bool, err error) {
	info, err := e.Client.Info(ctx, client.InfoOptions{})
	if err != nil {
		return false, fmt.Errorf("swarm: info: %w", err)
	}
	switch sw := info.Info.Swarm; {
	case sw.LocalNodeState == swarm.LocalNodeStateActive && sw.ControlAvailable:
		return false, nil
	case sw.LocalNodeState != swarm.LocalNodeStateInactive:
		return false, fmt.Errorf("swarm: engine is in swarm state %q without being a manager; the tests need a manager or a standalone engine", sw.LocalNodeState)
	}
	_, err = e.Client.SwarmInit(ctx, client.SwarmInitOptions{
		ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1",
		// Tasks must be reported stopped quickly in tests.
		Spec: swarm.Spec{Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: time.Second}},
	})
	if err != nil {
		return false, fmt.Errorf("swarm: init: %w", err)
	}
	return true, nil
}

// LeaveSwarm makes the engine leave the swarm (forcibly: it is the last
// manager). Use it only after EnsureSwarm reported that it created one.
func (e *Env) LeaveSwarm(ctx context.Context) error {
	if _, err := e.Client.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: true}); err != nil {
		return fmt.Errorf("swarm: leave: %w", err)
	}
	return nil
}

// Overlay creates an attachable overlay network carrying the run labels
// and removes it when the test ends.
func (e *Env) Overlay(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := e.name("", "ov")
	res, err := e.Client.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "overlay", Attachable: true, Labels: e.Labels()})
	if err != nil {
		t.Fatalf("create overlay network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		WaitFor(t, 30*time.Second, "removal of network "+name, func() error {
			_, err := e.Client.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{})
			if err != nil && !cerrdefs.IsNotFound(err) {
				return err
			}
			return nil
		})
	})
	return name
}

// ServiceSpec describes a service of backend tasks for Service.
type ServiceSpec struct {
	Name     string
	Labels   map[string]string // service labels (com.docker.lb.*)
	Env      map[string]string // task environment (NAME defaults to the task's slot)
	Replicas uint64
	Network  string
	// Publish publishes target port 8000 on this port of the routing mesh.
	Publish uint16
	// StartFirst makes rolling updates start the new task before stopping
	// the old one.
	StartFirst bool
	// StopGrace is the time between SIGTERM and SIGKILL of a task.
	StopGrace time.Duration
}

// Service creates a service of backend tasks and removes it when the test
// ends. It returns the service ID.
func (e *Env) Service(t testing.TB, spec ServiceSpec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := e.BackendImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := e.name(spec.Name, "svc")
	env := map[string]string{"NAME": name + ".{{.Task.Slot}}"}
	maps.Copy(env, spec.Env)
	replicas := spec.Replicas
	cs := &swarm.ContainerSpec{Image: img, Env: envList(env), Labels: e.Labels()}
	if spec.StopGrace > 0 {
		cs.StopGracePeriod = &spec.StopGrace
	}
	s := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: e.withLabels(spec.Labels)},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: cs},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}
	if spec.Network != "" {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: spec.Network}}
	}
	if spec.Publish != 0 {
		s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 8000, PublishedPort: uint32(spec.Publish), Protocol: network.TCP}}}
	}
	if spec.StartFirst {
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStartFirst}
	}
	res, err := e.Client.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: s})
	if err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
	e.removeServiceAtCleanup(t, res.ID, name)
	return res.ID
}

// UpdateService applies change to the service's spec.
func (e *Env) UpdateService(ctx context.Context, id string, change func(*swarm.ServiceSpec)) error {
	res, err := e.Client.ServiceInspect(ctx, id, client.ServiceInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect service %s: %w", id, err)
	}
	spec := res.Service.Spec
	change(&spec)
	if _, err := e.Client.ServiceUpdate(ctx, id, client.ServiceUpdateOptions{Version: res.Service.Version, Spec: spec}); err != nil {
		return fmt.Errorf("update service %s: %w", id, err)
	}
	return nil
}

// Scale sets the service's replica count.
func (e *Env) Scale(ctx context.Context, id string, replicas uint64) error {
	return e.UpdateService(ctx, id, func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = &replicas })
}

// RunningTasks counts the service's tasks that run and are meant to.
func (e *Env) RunningTasks(ctx context.Context, id string) (int, error) {
	res, err := e.Client.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", id)})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range res.Items {
		if t.Status.State == swarm.TaskStateRunning && t.DesiredState == swarm.TaskStateRunning {
			n++
		}
	}
	return n, nil
}

// InterlockContainer is `interlock run` in a container of the Interlock
// image, with the engine's socket mounted.
type InterlockContainer struct {
	ID         string
	Proxy, API string // http://127.0.0.1:PORT base URLs
	// HTTPS is the built-in proxy's HTTPS listener, "127.0.0.1:PORT".
	HTTPS string
}

// RunInterlock runs Interlock in a container attached to network, its
// proxy (:8080 and HTTPS :8443) and API (:8081) published on loopback, and removes it when
// the test ends (logging its output if the test failed).
func (e *Env) RunInterlock(t testing.TB, networkName string, args ...string) InterlockContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := e.InterlockImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := e.name("", "interlock")
	proxyPort, apiPort, httpsPort := network.MustParsePort("8080/tcp"), network.MustParsePort("8081/tcp"), network.MustParsePort("8443/tcp")
	loopback := []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1")}}
	cfg := &container.Config{
		Image:        img,
		Cmd:          append([]string{"run", "--http-addr", ":8080", "--https-addr", ":8443", "--api-addr", ":8081", "--log-level", "debug"}, args...),
		Labels:       e.Labels(),
		ExposedPorts: network.PortSet{proxyPort: {}, apiPort: {}, httpsPort: {}},
	}
	// The image runs as nobody: the socket's group lets it in, as the
	// Dockerfile tells users to do.
	var sock syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &sock); err != nil {
		t.Fatalf("stat the docker socket: %v", err)
	}
	host := &container.HostConfig{
		PortBindings: network.PortMap{proxyPort: loopback, apiPort: loopback, httpsPort: loopback},
		Mounts:       []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
		NetworkMode:  container.NetworkMode(networkName),
		GroupAdd:     []string{strconv.Itoa(int(sock.Gid))},
	}
	netcfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{networkName: {}}}
	res, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host, NetworkingConfig: netcfg})
	if err != nil {
		t.Fatalf("create interlock container: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := e.Logs(ctx, res.ID); err == nil {
				t.Logf("logs of %s:\n%s", name, logs)
			}
		}
		if err := e.removeContainer(ctx, res.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := e.Start(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	ins, err := e.Client.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := func(p network.Port) string {
		b := ins.Container.NetworkSettings.Ports[p]
		if len(b) == 0 {
			t.Fatalf("interlock container publishes no %s", p)
		}
		port, _ := strconv.Atoi(b[0].HostPort)
		return "http://127.0.0.1:" + strconv.Itoa(port)
	}
	return InterlockContainer{ID: res.ID, Proxy: url(proxyPort), API: url(apiPort), HTTPS: strings.TrimPrefix(url(httpsPort), "http://")}
}

// InterlockServiceSpec describes Interlock run as a Swarm service.
type InterlockServiceSpec struct {
	// Network is the overlay the service is attached to.
	Network string
	// Secrets are created (carrying the run labels) and given to the task
	// as /run/secrets/NAME.
	Secrets map[string][]byte
	// Args follow "run --http-addr :8080 --https-addr :8443 --api-addr
	// :8081".
	Args []string
}

// InterlockService runs Interlock as a one-task Swarm service of the
// Interlock image, with the engine's socket mounted and its proxy, HTTPS
// and API ports published on this node in host mode (the routing mesh
// does not work here), and removes service and secrets when the test
// ends. It returns once the task runs.
func (e *Env) InterlockService(t testing.TB, spec InterlockServiceSpec) InterlockContainer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := e.InterlockImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := e.name("", "interlock-svc")
	var refs []*swarm.SecretReference
	for _, sn := range slices.Sorted(maps.Keys(spec.Secrets)) {
		full := name + "-" + sn
		res, err := e.Client.SecretCreate(ctx, client.SecretCreateOptions{Spec: swarm.SecretSpec{
			Annotations: swarm.Annotations{Name: full, Labels: e.Labels()}, Data: spec.Secrets[sn]}})
		if err != nil {
			t.Fatalf("create secret %s: %v", full, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The service goes first (cleanups run last-in first-out); a
			// secret in use cannot be removed, so wait for its task.
			for i := 0; ; i++ {
				_, err := e.Client.SecretRemove(ctx, res.ID, client.SecretRemoveOptions{})
				if err == nil || cerrdefs.IsNotFound(err) {
					return
				}
				if i == 100 {
					t.Errorf("cleanup: remove secret %s: %v", full, err)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		refs = append(refs, &swarm.SecretReference{SecretID: res.ID, SecretName: full,
			File: &swarm.SecretReferenceFileTarget{Name: sn, UID: "0", GID: "0", Mode: 0o444}})
	}
	var sock syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &sock); err != nil {
		t.Fatalf("stat the docker socket: %v", err)
	}
	proxyPort, httpsPort, apiPort := FreePort(t), FreePort(t), FreePort(t)
	port := func(target, published int) swarm.PortConfig {
		return swarm.PortConfig{TargetPort: uint32(target), PublishedPort: uint32(published), Protocol: network.TCP, PublishMode: swarm.PortConfigPublishModeHost}
	}
	replicas := uint64(1)
	s := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: e.Labels()},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:   img,
				Args:    append([]string{"run", "--http-addr", ":8080", "--https-addr", ":8443", "--api-addr", ":8081", "--log-level", "debug"}, spec.Args...),
				Labels:  e.Labels(),
				Groups:  []string{strconv.Itoa(int(sock.Gid))},
				Mounts:  []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
				Secrets: refs,
			},
			Networks: []swarm.NetworkAttachmentConfig{{Target: spec.Network}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{port(8080, proxyPort), port(8443, httpsPort), port(8081, apiPort)}},
	}
	res, err := e.Client.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: s})
	if err != nil {
		t.Fatalf("create interlock service: %v", err)
	}
	e.removeServiceAtCleanup(t, res.ID, name)
	WaitFor(t, 2*time.Minute, "the interlock service's task running", func() error {
		n, err := e.RunningTasks(ctx, res.ID)
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d tasks running", n)
		}
		return nil
	})
	base := func(p int) string { return "http://127.0.0.1:" + strconv.Itoa(p) }
	return InterlockContainer{ID: res.ID, Proxy: base(proxyPort), API: base(apiPort), HTTPS: "127.0.0.1:" + strconv.Itoa(httpsPort)}
}

// removeServiceAtCleanup removes the service when the test ends, logging
// its tasks' output first if the test failed.
func (e *Env) removeServiceAtCleanup(t testing.TB, id, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if logs, err := e.serviceLogs(ctx, id); err == nil {
				t.Logf("logs of service %s:\n%s", name, logs)
			}
		}
		if _, err := e.Client.ServiceRemove(ctx, id, client.ServiceRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove service %s: %v", name, err)
		}
	})
}

// serviceLogs returns the output of a service's tasks.
func (e *Env) serviceLogs(ctx context.Context, id string) (string, error) {
	rc, err := e.Client.ServiceLogs(ctx, id, client.ServiceLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		return out.String(), err
	}
	return out.String(), nil
}
