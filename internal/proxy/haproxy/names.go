package haproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Names in the file are derived from validated values only, never from raw
// label text, and deterministically, so the same table always names things
// the same way (DESIGN.md invariant 4). Every name passes name().

// backendName is prefix + "_" + host + "_" + 10 hex digits of sha256(host
// NUL path): readable on the stats page, unique per route, and stable for
// as long as the route exists. prefix is "be" for HTTP, "tcp" for TCP.
func backendName(prefix, host, path string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + path))
	return prefix + "_" + safeName(host) + "_" + hex.EncodeToString(sum[:5])
}

// hostACL names the ACL that matches a host's names: "host_" + host.
func hostACL(host string) string { return "host_" + safeName(host) }

// serverName names a backend server after its address: host and port
// joined by '_' ("127.0.0.1_32768", "web.local_80"), IPv6 with an "ipv6_"
// prefix ("ipv6_fe80::1_80": a name must start with a letter or digit).
// Host names and IP addresses hold no '_', so distinct addresses never
// share a name, and one address is one server: a backend that moves to a
// new address is a removal plus an addition.
func serverName(addr Address) string {
	n := safeName(addr.Host) + "_" + strconv.Itoa(int(addr.Port))
	if strings.Contains(addr.Host, ":") {
		n = "ipv6_" + n
	}
	return n
}

// safeName maps anything outside HAProxy's name alphabet to '_' (a
// defence: validated host names and IPs never hold such bytes).
func safeName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || c == '.' || c == ':' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Address is a parsed backend address.
type Address struct {
	// Host is an IP address (IPv6 without brackets) or a lowercase host
	// name.
	Host string
	Port uint16
	// IP is false when Host is a name. HAProxy resolves names in the file
	// at start, but a server added over the Runtime API is never
	// resolved, so a change that adds one is applied with a reload.
	IP bool
}

// String is the address as HAProxy takes it: "ip:port", "[ipv6]:port",
// "name:port".
func (a Address) String() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port)))
}

// parseAddress checks a backend address: "ip:port" (IPv6 in brackets) or
// "host:port" with a lowercase RFC 1123 host name, port 1-65535.
func parseAddress(s string) (Address, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("backend address %q is not host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || port[0] == '0' || port[0] == '+' {
		return Address{}, fmt.Errorf("backend address %q: port must be 1-65535", s)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Address{}, fmt.Errorf("backend address %q: zoned IPv6 addresses are not supported", s)
		}
		ip = ip.Unmap()
		return Address{Host: ip.String(), Port: uint16(p), IP: true}, nil
	}
	if !isHostname(host) {
		return Address{}, fmt.Errorf("backend address %q: %q is neither an IP address nor a lowercase host name", s, host)
	}
	return Address{Host: host, Port: uint16(p)}, nil
}
