package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The settings of the built-in proxy's edge: trusted client addresses
// (PROXY protocol, X-Forwarded-*), the access log, timeouts and limits.
// Their values are parsed here, once, for Validate and for the caller.

// ByteSize is a number of bytes. It is written as a whole number of bytes
// ("65536") or with a binary unit: B, KiB, MiB or GiB ("64KiB", "10MiB").
// In TOML it may also be a bare integer (bytes).
type ByteSize int64

// The units ParseByteSize accepts, largest first.
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"GiB", 1 << 30},
	{"MiB", 1 << 20},
	{"KiB", 1 << 10},
	{"B", 1},
}

// ParseByteSize parses a size as ByteSize documents it. Decimal units (KB,
// MB), lower-case ones and fractions are refused: their meaning varies from
// one tool to the next.
func ParseByteSize(s string) (ByteSize, error) {
	num, factor := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, factor = n, u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || num == "" || num[0] == '+' || num[0] == '-' || n > (1<<62)/factor {
		return 0, fmt.Errorf("%q is not a size; want a whole number of bytes with an optional unit B, KiB, MiB or GiB, such as \"65536\", \"64KiB\" or \"10MiB\"", s)
	}
	return ByteSize(n * factor), nil
}

// String writes the size with the largest unit that divides it exactly:
// "64KiB", "1MiB", "1000" (bytes). ParseByteSize reads it back.
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	for _, u := range sizeUnits[:3] {
		if int64(b)%u.factor == 0 {
			return strconv.FormatInt(int64(b)/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set makes *ByteSize a flag.Value.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseCIDRs parses a comma-separated list of CIDR prefixes ("10.0.0.0/8,
// fd00::/8"); a bare IP address stands for itself (/32 or /128). Spaces
// around entries are ignored. "" is the empty list. A prefix with host bits
// set ("10.0.0.1/8") is refused, with the prefix it probably means, and so
// is an address with a zone: a zone names an interface, not a network.
// IPv4-mapped IPv6 prefixes are refused too: write the IPv4 prefix, which
// matches mapped addresses as well.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for entry := range strings.SplitSeq(s, ",") {
		e := strings.TrimSpace(entry)
		if e == "" {
			return nil, fmt.Errorf("%q has an empty entry; want CIDR prefixes separated by commas, such as \"10.0.0.0/8,192.168.1.10\"", s)
		}
		var p netip.Prefix
		if strings.Contains(e, "/") {
			var err error
			if p, err = netip.ParsePrefix(e); err != nil {
				return nil, fmt.Errorf("%q is not a CIDR prefix; want an address and a prefix length, such as \"10.0.0.0/8\" or \"fd00::/8\" (or a bare IP address)", e)
			}
			if m := p.Masked(); m != p {
				return nil, fmt.Errorf("%q has bits set after its prefix length; did you mean %q?", e, m.String())
			}
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is neither a CIDR prefix nor an IP address; want entries such as \"10.0.0.0/8\" or \"192.168.1.10\"", e)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write the IPv4 prefix instead (it matches mapped addresses too)", e)
		}
		out = append(out, p)
	}
	return out, nil
}

// The values of Config.AccessLogFormat.
const (
	AccessLogCommon = "common"
	AccessLogJSON   = "json"
)

// The values of Config.BuiltinEngine.
const (
	EngineNetHTTP  = "nethttp"
	EngineFastHTTP = "fasthttp"
)

// AccessLogStdout is the Config.AccessLog value that writes to standard
// output.
const AccessLogStdout = "-"

// Limits of the edge settings that Validate enforces.
const (
	// MinMaxHeaderBytes is the smallest MaxHeaderBytes: below it common
	// browser requests (cookies, user agents) no longer fit.
	MinMaxHeaderBytes ByteSize = 1 << 10
	// MaxMaxHeaderBytes is the largest MaxHeaderBytes.
	MaxMaxHeaderBytes ByteSize = 64 << 20
)

// Edge defaults (see Default).
const (
	defaultAccessLogFormat         = AccessLogCommon
	defaultClientReadHeaderTimeout = 30 * time.Second // as before these settings existed
	defaultClientIdleTimeout       = 120 * time.Second
	defaultBackendConnectTimeout   = time.Second
	defaultBackendIdleTimeout      = 90 * time.Second
	defaultMaxHeaderBytes          = ByteSize(1 << 20) // net/http's DefaultMaxHeaderBytes
)

// validateEdge checks the edge settings, reporting each problem with add
// under its TOML key.
func (c Config) validateEdge(add func(key string, err error)) {
	for _, l := range []struct{ key, v string }{
		{"proxy_protocol_trusted_ips", c.ProxyProtocolTrustedIPs},
		{"forwarded_headers_trusted_ips", c.ForwardedHeadersTrustedIPs},
	} {
		_, err := ParseCIDRs(l.v)
		add(l.key, err)
	}
	add("access_log_format", checkOneOf(c.AccessLogFormat, AccessLogCommon, AccessLogJSON))
	add("builtin_engine", checkOneOf(c.BuiltinEngine, EngineNetHTTP, EngineFastHTTP))
	if strings.ContainsRune(c.AccessLog, 0) {
		add("access_log", fmt.Errorf("%q holds a NUL byte; want a file path, \"-\" for standard output or empty for none", c.AccessLog))
	}
	for _, d := range []struct {
		key  string
		v    time.Duration
		zero string // what 0 means; "" when 0 is refused
	}{
		{"client_read_header_timeout", c.ClientReadHeaderTimeout, "no limit"},
		{"client_read_timeout", c.ClientReadTimeout, "no limit"},
		{"client_idle_timeout", c.ClientIdleTimeout, "no limit"},
		{"backend_connect_timeout", c.BackendConnectTimeout, ""},
		{"backend_response_header_timeout", c.BackendResponseHeaderTimeout, "no limit"},
		{"backend_idle_timeout", c.BackendIdleTimeout, ""},
	} {
		switch {
		case d.v < 0:
			add(d.key, fmt.Errorf("%s is negative; want a duration such as \"30s\"%s", d.v, zeroMeans(d.zero)))
		case d.v == 0 && d.zero == "":
			add(d.key, fmt.Errorf("is 0; want more than 0, such as \"1s\""))
		case d.v > 0 && d.v < time.Millisecond:
			add(d.key, fmt.Errorf("%s is too short; want at least 1ms, such as \"30s\"%s", d.v, zeroMeans(d.zero)))
		}
	}
	if c.MaxHeaderBytes < MinMaxHeaderBytes || c.MaxHeaderBytes > MaxMaxHeaderBytes {
		add("max_header_bytes", fmt.Errorf("%s is out of range; want %s to %s, such as %q (the default)", c.MaxHeaderBytes, MinMaxHeaderBytes, MaxMaxHeaderBytes, defaultMaxHeaderBytes.String()))
	}
	if c.MaxBodyBytes < 0 {
		add("max_body_bytes", fmt.Errorf("%s is negative; want a size such as \"10MiB\", or 0 for no limit", c.MaxBodyBytes))
	}
}

func zeroMeans(what string) string {
	if what == "" {
		return ""
	}
	return ", or 0 for " + what
}
