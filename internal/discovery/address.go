package discovery

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// defaultBackendAddress stands in for an empty Options.BackendAddress.
const defaultBackendAddress = "127.0.0.1"

// exposedTCP returns the distinct private TCP ports of c, sorted.
func exposedTCP(c docker.Container) []uint16 {
	var ports []uint16
	for _, p := range c.Ports {
		if p.Proto == "tcp" {
			ports = append(ports, p.Private)
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// binding is one usable publication of a private port.
type binding struct {
	hostIP netip.Addr // invalid for a wildcard (0.0.0.0, :: or "")
	v6     bool
	public uint16
}

// bindings returns the usable publications of private TCP port priv, best
// first: IPv4 before IPv6 (Docker lists a port published on all addresses
// twice, 0.0.0.0 and ::), then lowest host port, then host IP, so the choice
// does not depend on the engine's order. Bindings with an unparsable host IP
// are skipped.
func bindings(c docker.Container, priv uint16) []binding {
	var out []binding
	for _, p := range c.Ports {
		if p.Proto != "tcp" || p.Private != priv || p.Public == 0 {
			continue
		}
		b := binding{public: p.Public}
		switch p.HostIP {
		case "", "0.0.0.0":
		case "::":
			b.v6 = true
		default:
			ip, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			b.hostIP, b.v6 = ip, ip.Is6()
			if ip.IsUnspecified() {
				b.hostIP = netip.Addr{}
			}
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b binding) int {
		return cmp.Or(boolCompare(a.v6, b.v6), cmp.Compare(a.public, b.public), a.hostIP.Compare(b.hostIP))
	})
	return out
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// publishedTCP returns the distinct private TCP ports of c that have a usable
// publication, sorted.
func publishedTCP(c docker.Container) []uint16 {
	var ports []uint16
	for _, p := range exposedTCP(c) {
		if len(bindings(c, p)) > 0 {
			ports = append(ports, p)
		}
	}
	return ports
}

// publishedAddress is the backend address in published-port mode: the host
// side of the chosen port's best publication, with wildcard host IPs
// replaced by hostAddr ("" means 127.0.0.1).
func (r *reader) publishedAddress(port uint16, hostAddr string) string {
	if port == 0 {
		candidates := publishedTCP(r.c)
		switch len(candidates) {
		case 0:
			r.problem("", routing.ReasonNoPort, fmt.Sprintf("container %s publishes no TCP port, publish one (docker run -p 80) or route over a network (%s or Interlock's network setting)", r.c.Name, LabelNetwork))
			return ""
		case 1:
			port = candidates[0]
		default:
			r.problem("", routing.ReasonNoPort, fmt.Sprintf("container %s publishes several TCP ports (%s), set %s to the one to route to", r.c.Name, describePorts(candidates), LabelPort))
			return ""
		}
	} else if !r.exposes(port) {
		return ""
	}
	bs := bindings(r.c, port)
	if len(bs) == 0 {
		r.problem(LabelPort, routing.ReasonNoPort, fmt.Sprintf("port %d is exposed but not published, publish it (docker run -p %d) or route over a network (%s or Interlock's network setting)", port, port, LabelNetwork))
		return ""
	}
	host := hostAddr
	if host == "" {
		host = defaultBackendAddress
	}
	if b := bs[0]; b.hostIP.IsValid() {
		host = b.hostIP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(bs[0].public)))
}

// networkAddress is the backend address in network mode: the container's IP
// on network and its private port. netLabel is the label that chose the
// network, "" when it came from Options.
func (r *reader) networkAddress(port uint16, network, netLabel string) string {
	if port == 0 {
		candidates := exposedTCP(r.c)
		switch len(candidates) {
		case 0:
			r.problem("", routing.ReasonNoPort, fmt.Sprintf("container %s exposes no TCP port, expose the one it serves (EXPOSE in the image or docker run --expose 80)", r.c.Name))
			return ""
		case 1:
			port = candidates[0]
		default:
			r.problem("", routing.ReasonNoPort, fmt.Sprintf("container %s exposes several TCP ports (%s), set %s to the one to route to", r.c.Name, describePorts(candidates), LabelPort))
			return ""
		}
	} else if !r.exposes(port) {
		return ""
	}
	raw, on := r.c.Networks[network]
	if !on {
		r.problem(netLabel, routing.ReasonNoNetwork, fmt.Sprintf("container %s is not on network %s (its networks: %s), connect it (docker network connect) or choose another network", r.c.Name, quote(network), r.networkNames()))
		return ""
	}
	ip, err := netip.ParseAddr(raw)
	if err != nil || ip.IsUnspecified() {
		r.problem(netLabel, routing.ReasonNoNetwork, fmt.Sprintf("container %s has no usable IP address on network %s (engine reports %s), check its network settings", r.c.Name, quote(network), quote(raw)))
		return ""
	}
	return net.JoinHostPort(ip.Unmap().WithZone("").String(), strconv.Itoa(int(port)))
}

// exposes reports whether c exposes TCP port; when not, it records the
// problem with interlock.port.
func (r *reader) exposes(port uint16) bool {
	exposed := exposedTCP(r.c)
	if slices.Contains(exposed, port) {
		return true
	}
	r.invalidf(LabelPort, "port %d is not a TCP port the container exposes (exposed: %s), use one of those or expose %d", port, describePorts(exposed), port)
	return false
}

// networkNames lists c's networks, sorted, for messages.
func (r *reader) networkNames() string {
	names := make([]string, 0, len(r.c.Networks))
	for n := range r.c.Networks {
		names = append(names, quote(n))
	}
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
