package docker

import (
	"net/netip"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

func TestHealthFromSummary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		health *container.HealthSummary
		want   string
	}{
		{name: "no health check", status: "Up 3 minutes", want: ""},
		{name: "healthy text", status: "Up 3 minutes (healthy)", want: "healthy"},
		{name: "unhealthy text", status: "Up 3 minutes (unhealthy)", want: "unhealthy"},
		{name: "starting text", status: "Up 1 second (health: starting)", want: "starting"},
		{name: "field wins", status: "Up 3 minutes (healthy)", health: &container.HealthSummary{Status: container.Unhealthy}, want: "unhealthy"},
		{name: "field none falls back", status: "Up", health: &container.HealthSummary{Status: container.NoHealthcheck}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := health(container.Summary{Status: tc.status, Health: tc.health}); got != tc.want {
				t.Errorf("health = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProject(t *testing.T) {
	s := container.Summary{
		ID:      "abc",
		Names:   []string{"/web"},
		Created: 1700000000,
		Labels:  map[string]string{"interlock.hostname": "web"},
		State:   container.StateRunning,
		Ports: []container.PortSummary{
			{PrivatePort: 80, PublicPort: 32768, Type: "tcp", IP: netip.MustParseAddr("::")},
			{PrivatePort: 443, Type: "tcp"},
			{PrivatePort: 80, PublicPort: 32768, Type: "tcp", IP: netip.MustParseAddr("0.0.0.0")},
		},
		NetworkSettings: &container.NetworkSettingsSummary{Networks: map[string]*network.EndpointSettings{
			"front": {IPAddress: netip.MustParseAddr("172.18.0.5")},
			"none":  {},
			"nil":   nil,
		}},
	}
	c := project(s)
	if c.Name != "web" || c.State != "running" || c.Created.Unix() != 1700000000 {
		t.Errorf("identity: %+v", c)
	}
	want := []Port{
		{Private: 80, Proto: "tcp", HostIP: "0.0.0.0", Public: 32768},
		{Private: 80, Proto: "tcp", HostIP: "::", Public: 32768},
		{Private: 443, Proto: "tcp"},
	}
	if len(c.Ports) != len(want) {
		t.Fatalf("ports = %+v, want %+v", c.Ports, want)
	}
	for i := range want {
		if c.Ports[i] != want[i] {
			t.Errorf("port %d = %+v, want %+v", i, c.Ports[i], want[i])
		}
	}
	if len(c.Networks) != 1 || c.Networks["front"] != "172.18.0.5" {
		t.Errorf("networks = %v, want only front", c.Networks)
	}
}

func TestRoutable(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Container
		want bool
	}{
		{name: "running", c: Container{State: "running"}, want: true},
		{name: "healthy", c: Container{State: "running", Health: "healthy"}, want: true},
		{name: "starting", c: Container{State: "running", Health: "starting"}, want: false},
		{name: "unhealthy", c: Container{State: "running", Health: "unhealthy"}, want: false},
		{name: "draining", c: Container{State: "running", Draining: true}, want: false},
		{name: "paused", c: Container{State: "paused"}, want: false},
		{name: "exited", c: Container{State: "exited"}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Routable(); got != tc.want {
				t.Errorf("Routable = %v, want %v", got, tc.want)
			}
		})
	}
}
