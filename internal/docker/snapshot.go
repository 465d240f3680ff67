package docker

import "time"

// Snapshot is what Interlock knows of the engine at one moment: a small
// projection of the Docker API, so that SDK types end in this package.
type Snapshot struct {
	// Containers are sorted by ID.
	Containers []Container
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
