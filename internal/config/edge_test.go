package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		str  string // String of the result
	}{
		{in: "0", want: 0, str: "0"},
		{in: "1000", want: 1000, str: "1000"},
		{in: "65536", want: 64 << 10, str: "64KiB"},
		{in: "512B", want: 512, str: "512"},
		{in: "64KiB", want: 64 << 10, str: "64KiB"},
		{in: "1536KiB", want: 1536 << 10, str: "1536KiB"},
		{in: "10MiB", want: 10 << 20, str: "10MiB"},
		{in: "2GiB", want: 2 << 30, str: "2GiB"},
	} {
		got, err := ParseByteSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.str {
			t.Errorf("ByteSize(%d).String() = %q, want %q", got, got.String(), tc.str)
		}
		if back, err := ParseByteSize(got.String()); err != nil || back != got {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d (round trip)", got.String(), back, err, got)
		}
	}
	for _, in := range []string{"", "B", "-1", "+1", "1.5MiB", "10MB", "10mib", "10 MiB", "1k", "0x10", "9999999999GiB"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), "B, KiB, MiB or GiB") {
			t.Errorf("ParseByteSize(%q) error %q does not say what is wanted", in, err)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8, 192.168.1.10 ,fd00::/8", want: []string{"10.0.0.0/8", "192.168.1.10/32", "fd00::/8"}},
		{in: "::1", want: []string{"::1/128"}},
		{in: "0.0.0.0/0", want: []string{"0.0.0.0/0"}},
	} {
		got, err := ParseCIDRs(tc.in)
		if err != nil {
			t.Errorf("ParseCIDRs(%q): %v", tc.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if !slices.Equal(s, tc.want) {
			t.Errorf("ParseCIDRs(%q) = %q, want %q", tc.in, s, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{in: "10.0.0.0/33", want: "is not a CIDR prefix"},
		{in: "10.0.0.1/8", want: `did you mean "10.0.0.0/8"?`},
		{in: "fd00::1/8", want: `did you mean "fd00::/8"?`},
		{in: "10.0.0.0/8,", want: "has an empty entry"},
		{in: "localhost", want: "is neither a CIDR prefix nor an IP address"},
		{in: "fe80::1%eth0", want: "is neither"},
		{in: "10.0.0.0/8 10.1.0.0/16", want: "is not a CIDR prefix"},
		{in: "::ffff:10.0.0.0/104", want: "IPv4-mapped"},
	} {
		if _, err := ParseCIDRs(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCIDRs(%q) error = %v, want one containing %q", tc.in, err, tc.want)
		}
	}
	// A bare address is the prefix of itself alone.
	got, _ := ParseCIDRs("192.168.1.10")
	if !got[0].Contains(netip.MustParseAddr("192.168.1.10")) || got[0].Contains(netip.MustParseAddr("192.168.1.11")) {
		t.Errorf("bare address prefix %v", got)
	}
}

func TestEdgeFlagsAndEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		environ []string
		want    []string
	}{
		{name: "size flag", args: []string{"--max-body-bytes=1.5MiB"}, want: []string{"-max-body-bytes", `"1.5MiB" is not a size`}},
		{name: "size env", environ: []string{"INTERLOCK_MAX_HEADER_BYTES=lots"}, want: []string{"INTERLOCK_MAX_HEADER_BYTES:", `"lots" is not a size`}},
		{name: "cidr flag", args: []string{"--proxy-protocol-trusted-ips=10.0.0.0/33"}, want: []string{"--proxy-protocol-trusted-ips:", "not a CIDR prefix"}},
		{name: "cidr env", environ: []string{"INTERLOCK_FORWARDED_HEADERS_TRUSTED_IPS=10.1.2.3/16"}, want: []string{"INTERLOCK_FORWARDED_HEADERS_TRUSTED_IPS:", `did you mean "10.1.0.0/16"?`}},
		{name: "format flag", args: []string{"--access-log-format=combined"}, want: []string{"--access-log-format:", "common or json"}},
		{name: "idle timeout", args: []string{"--backend-idle-timeout=0s"}, want: []string{"--backend-idle-timeout:", "want more than 0"}},
		{name: "too short", args: []string{"--client-idle-timeout=10ns"}, want: []string{"--client-idle-timeout:", "10ns is too short"}},
		{name: "header bytes too large", args: []string{"--max-header-bytes=1GiB"}, want: []string{"--max-header-bytes:", "1GiB is out of range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, tc.environ)
			wantErr(t, err, tc.want...)
		})
	}
	got, err := Load([]string{"--access-log=-", "--max-body-bytes=10MiB", "--proxy-protocol-trusted-ips=127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessLog != AccessLogStdout || got.MaxBodyBytes != 10<<20 || got.ProxyProtocolTrustedIPs != "127.0.0.1" {
		t.Errorf("Load = %v", got)
	}
}
