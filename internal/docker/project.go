package docker

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// project turns one SDK summary into the Container projection.
func project(s container.Summary) Container {
	c := Container{
		ID:      s.ID,
		Created: time.Unix(s.Created, 0).UTC(),
		Labels:  s.Labels,
		State:   string(s.State),
		Health:  health(s),
	}
	if len(s.Names) > 0 {
		c.Name = strings.TrimPrefix(s.Names[0], "/")
	}
	for _, p := range s.Ports {
		port := Port{Private: p.PrivatePort, Proto: p.Type, Public: p.PublicPort}
		if p.PublicPort != 0 && p.IP.IsValid() {
			port.HostIP = p.IP.String()
		}
		c.Ports = append(c.Ports, port)
	}
	sortPorts(c.Ports)
	if s.NetworkSettings != nil {
		c.Networks = networkIPs(s.NetworkSettings.Networks)
	}
	return c
}

// projectInspect is project for one inspected container. Events are
// followed by an inspect, not a list: the engine emits some events (pause)
// before its list view is updated, while inspect reads the container itself.
func projectInspect(ci container.InspectResponse) Container {
	c := Container{ID: ci.ID, Name: strings.TrimPrefix(ci.Name, "/")}
	if t, err := time.Parse(time.RFC3339Nano, ci.Created); err == nil {
		c.Created = t.UTC()
	}
	if ci.Config != nil {
		c.Labels = ci.Config.Labels
	}
	if st := ci.State; st != nil {
		c.State = string(st.Status)
		if st.Health != nil && st.Health.Status != container.NoHealthcheck {
			c.Health = string(st.Health.Status)
		}
	}
	var ports network.PortMap
	if ci.NetworkSettings != nil {
		ports = ci.NetworkSettings.Ports
		c.Networks = networkIPs(ci.NetworkSettings.Networks)
	}
	seen := map[network.Port]bool{}
	for port, bindings := range ports {
		seen[port] = true
		if len(bindings) == 0 {
			c.Ports = append(c.Ports, Port{Private: port.Num(), Proto: string(port.Proto())})
		}
		for _, b := range bindings {
			public, err := strconv.ParseUint(b.HostPort, 10, 16)
			p := Port{Private: port.Num(), Proto: string(port.Proto())}
			if err == nil && public != 0 {
				p.Public = uint16(public)
				if b.HostIP.IsValid() {
					p.HostIP = b.HostIP.String()
				}
			}
			c.Ports = append(c.Ports, p)
		}
	}
	if ci.Config != nil {
		for port := range ci.Config.ExposedPorts {
			if !seen[port] {
				c.Ports = append(c.Ports, Port{Private: port.Num(), Proto: string(port.Proto())})
			}
		}
	}
	sortPorts(c.Ports)
	return c
}

func sortPorts(ports []Port) {
	sort.Slice(ports, func(i, j int) bool {
		a, b := ports[i], ports[j]
		if a.Private != b.Private {
			return a.Private < b.Private
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		if a.HostIP != b.HostIP {
			return a.HostIP < b.HostIP
		}
		return a.Public < b.Public
	})
}

func networkIPs(networks map[string]*network.EndpointSettings) map[string]string {
	var out map[string]string
	for name, ep := range networks {
		if ep == nil {
			continue
		}
		if ip := firstValid(ep.IPAddress, ep.GlobalIPv6Address); ip.IsValid() {
			if out == nil {
				out = make(map[string]string)
			}
			out[name] = ip.String()
		}
	}
	return out
}

func firstValid(addrs ...netip.Addr) netip.Addr {
	for _, a := range addrs {
		if a.IsValid() && !a.IsUnspecified() {
			return a
		}
	}
	return netip.Addr{}
}

// health reads the health state. Engines before API 1.52 do not send the
// Health field in lists, only the human Status text ("Up 3 minutes
// (unhealthy)"), so fall back to that.
func health(s container.Summary) string {
	if s.Health != nil && s.Health.Status != "" && s.Health.Status != container.NoHealthcheck {
		return string(s.Health.Status)
	}
	switch {
	case strings.Contains(s.Status, "(healthy)"):
		return "healthy"
	case strings.Contains(s.Status, "(unhealthy)"):
		return "unhealthy"
	case strings.Contains(s.Status, "(health: starting)"):
		return "starting"
	}
	return ""
}
