package docker

import "time"

// Snapshot is what Interlock knows of the engine at one moment: a small
// projection of the Docker API, so that SDK types end in this package.
type Snapshot struct {
	// Containers are sorted by ID.
	Containers []Container
	// Swarm is true when the engine is a Swarm manager; Services are then
	// its services, sorted by ID, each with its tasks.
	Swarm    bool
	Services []Service
}

// Service is the part of a Swarm service that routing needs.
type Service struct {
	ID      string
	Name    string
	Created time.Time
	// Labels are the service's own labels (not its containers').
	Labels map[string]string
	// Networks are the names of the networks the service's tasks attach
	// to, sorted; VIPs maps some of them to the service's virtual IP there.
	Networks []string
	VIPs     map[string]string
	// Ports are the ports the service publishes.
	Ports []ServicePort
	// Tasks are the service's tasks that are running or about to, sorted
	// by ID.
	Tasks []Task
}

// ServicePort is one published port of a service.
type ServicePort struct {
	Target    uint16
	Published uint16
	Proto     string
	// Mode is "ingress" (the routing mesh) or "host".
	Mode string
}

// Task is one task of a service.
type Task struct {
	ID   string
	Slot int
	// Node is the host name of the node the task runs on.
	Node string
	// State is the task's observed state ("running", ...); DesiredState
	// is what the orchestrator wants ("running", "shutdown", ...).
	State, DesiredState string
	// Draining is set when the orchestrator or the engine is stopping the
	// task while it still runs.
	Draining bool
	// Networks maps network names to the task's IP on them.
	Networks    map[string]string
	ContainerID string
}

// Routable reports whether the task may receive requests now: running,
// meant to keep running, and not being stopped.
func (t Task) Routable() bool {
	return t.State == "running" && t.DesiredState == "running" && !t.Draining
}

// Container is the part of a container that routing needs.
type Container struct {
	ID string
	// Name is the container name without the leading "/".
	Name    string
	Created time.Time
	Labels  map[string]string
	// State is the engine's state: "running", "paused", "exited", ...
	State string
	// Health is "" (no health check), "starting", "healthy" or "unhealthy".
	Health string
	// Draining is set once the engine has been asked to stop the container
	// (a kill or stop event with a terminating signal). It is still running,
	// but must get no new requests.
	Draining bool
	Ports    []Port
	// Networks maps network names to the container's IP on them.
	Networks map[string]string
}

// Port is one exposed container port and, when published, where.
type Port struct {
	Private uint16
	// Proto is "tcp", "udp" or "sctp".
	Proto string
	// HostIP and Public are empty and zero when the port is not published.
	HostIP string
	Public uint16
}

// Routable reports whether the container may receive requests now.
func (c Container) Routable() bool {
	return c.State == "running" && !c.Draining && (c.Health == "" || c.Health == "healthy")
}
