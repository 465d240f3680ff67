package docker

import (
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
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
	sort.Slice(c.Ports, func(i, j int) bool {
		a, b := c.Ports[i], c.Ports[j]
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
	if s.NetworkSettings != nil {
		for name, ep := range s.NetworkSettings.Networks {
			if ep == nil {
				continue
			}
			if ip := firstValid(ep.IPAddress, ep.GlobalIPv6Address); ip.IsValid() {
				if c.Networks == nil {
					c.Networks = make(map[string]string)
				}
				c.Networks[name] = ip.String()
			}
		}
	}
	return c
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
