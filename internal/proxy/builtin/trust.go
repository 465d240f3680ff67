package builtin

import (
	"net"
	"net/netip"
	"strings"
)

// trustedNets is a set of CIDR prefixes a client address is believed from
// (DESIGN.md invariant 8): Options.ProxyProtocolTrusted and
// Options.ForwardedTrusted. The empty set trusts nobody.
type trustedNets []netip.Prefix

// newTrustedNets copies prefixes, masked, so the caller's slice may change
// afterwards. Invalid prefixes are dropped.
func newTrustedNets(prefixes []netip.Prefix) trustedNets {
	var t trustedNets
	for _, p := range prefixes {
		if p.IsValid() {
			t = append(t, p.Masked())
		}
	}
	return t
}

// contains reports whether a is in the set. IPv4-mapped IPv6 addresses
// (a dual-stack listener's view of an IPv4 client) match IPv4 prefixes.
func (t trustedNets) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// containsRemote is contains for an "ip:port" RemoteAddr; it does not
// allocate. An address that does not parse is not trusted.
func (t trustedNets) containsRemote(remoteAddr string) bool {
	if len(t) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return t.contains(ap.Addr())
}

// containsAddr is contains for a net.Addr (a connection's peer).
func (t trustedNets) containsAddr(a net.Addr) bool {
	if len(t) == 0 || a == nil {
		return false
	}
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(tcp.IP)
		return ok && t.contains(ip)
	}
	return t.containsRemote(a.String())
}

// String lists the prefixes, comma-separated, for logs.
func (t trustedNets) String() string {
	s := make([]string, len(t))
	for i, p := range t {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
