package config

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The ACME settings (internal/acme): which hosts get certificates over
// ACME, from which CA, stored where, validated how, and where nginx and
// haproxy pass the HTTP-01 challenges.

// The values of Config.ACMEHosts.
const (
	// ACMEOff: no ACME; a host with ssl_acme=true gets the default
	// certificate and is reported.
	ACMEOff = "off"
	// ACMELabelled: the hosts whose ssl_acme label is true.
	ACMELabelled = "labelled"
	// ACMEAll: also every TLS host without a certificate of its own (not
	// passed through), unless its ssl_acme label is false.
	ACMEAll = "all"
)

// The ACME challenge types of Config.ACMEChallenges.
const (
	ACMEHTTP01    = "http-01"
	ACMETLSALPN01 = "tls-alpn-01"
)

const (
	defaultACMEHosts      = ACMEOff
	defaultACMECA         = "https://acme-v02.api.letsencrypt.org/directory"
	defaultACMEChallenges = ACMEHTTP01 + "," + ACMETLSALPN01
	// The responder nginx and haproxy pass HTTP-01 challenges to: beside
	// the API (127.0.0.1:8081) on loopback, where a supervised proxy
	// reaches it.
	defaultACMEChallengeAddr = "127.0.0.1:8082"
)

// ACMEEnabled reports whether the built-in proxy gets certificates over
// ACME.
func (c Config) ACMEEnabled() bool { return c.ACMEHosts != ACMEOff && c.ACMEHosts != "" }

// ACMEStorageDir is ACMEStorage, or STATE_DIR/acme when it is empty.
func (c Config) ACMEStorageDir() string {
	if c.ACMEStorage != "" {
		return c.ACMEStorage
	}
	return filepath.Join(c.StateDir, "acme")
}

// ACMEChallengeTypes reports which challenge types ACMEChallenges turns
// on. It assumes a valid Config.
func (c Config) ACMEChallengeTypes() (http01, tlsALPN01 bool) {
	types, _ := parseACMEChallenges(c.ACMEChallenges)
	for _, t := range types {
		switch t {
		case ACMEHTTP01:
			http01 = true
		case ACMETLSALPN01:
			tlsALPN01 = true
		}
	}
	return http01, tlsALPN01
}

// parseACMEChallenges parses a comma-separated list of challenge types:
// each one once, at least one.
func parseACMEChallenges(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch part {
		case ACMEHTTP01, ACMETLSALPN01:
		case "":
			return nil, fmt.Errorf("%q has an empty entry; want http-01, tls-alpn-01 or both, comma-separated", s)
		default:
			return nil, fmt.Errorf("unknown challenge type %q; want http-01, tls-alpn-01 or both, comma-separated (dns-01 is not supported)", part)
		}
		for _, o := range out {
			if o == part {
				return nil, fmt.Errorf("%q names %s twice", s, part)
			}
		}
		out = append(out, part)
	}
	return out, nil
}

// validateACME checks the ACME settings, adding each problem under its
// key. Their form is checked whatever the driver; what only matters when
// the built-in proxy does ACME (fixed listener ports) only then.
func (c Config) validateACME(add func(key string, err error)) {
	add("acme_hosts", checkOneOf(c.ACMEHosts, ACMEOff, ACMELabelled, ACMEAll))
	if c.ACMEEmail != "" {
		add("acme_email", checkEmail(c.ACMEEmail))
	}
	add("acme_ca", checkACMEURL(c.ACMECA))
	if c.ACMECARoot != "" {
		pem, err := readPEMFile(c.ACMECARoot)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			err = fmt.Errorf("%s holds no PEM certificate; want the CA certificates that verify the ACME server's HTTPS, in PEM", c.ACMECARoot)
		}
		add("acme_ca_root", err)
	}
	types, err := parseACMEChallenges(c.ACMEChallenges)
	add("acme_challenges", err)
	if !c.ACMEEnabled() || err != nil {
		return
	}
	if c.Proxy != ProxyBuiltin || c.Role == RoleController {
		// nginx, haproxy and a controller's edges pass HTTP-01
		// challenges to Interlock; they cannot answer TLS-ALPN-01 with a
		// challenge certificate.
		what := "the " + c.Proxy + " driver answers"
		if c.Role == RoleController {
			what = "a controller's edges pass on"
		}
		if !slices.Contains(types, ACMEHTTP01) {
			add("acme_challenges", fmt.Errorf("%q: %s ACME's http-01 challenge only (tls-alpn-01 needs the built-in proxy of the single process); add http-01", c.ACMEChallenges, what))
		}
		add("acme_challenge_addr", checkChallengeAddr(c.ACMEChallengeAddr))
		return
	}
	// The CA connects to ports 80 and 443, which must be forwarded to the
	// listeners: a port the kernel picks cannot be.
	for _, t := range types {
		key, addr := "http_addr", c.HTTPAddr
		if t == ACMETLSALPN01 {
			key, addr = "https_addr", c.HTTPSAddr
		}
		if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
			add(key, fmt.Errorf("%q: ACME's %s challenge needs a fixed port, forwarded from port %s; not 0",
				addr, t, map[string]string{ACMEHTTP01: "80", ACMETLSALPN01: "443"}[t]))
		}
	}
}

// checkChallengeAddr accepts host:port with a fixed port and a concrete
// host, which Interlock binds and the proxy connects to.
func checkChallengeAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port; want the address where the proxy reaches Interlock's ACME responder, such as 127.0.0.1:8082", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: want a fixed port from 1 to 65535", addr)
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		return fmt.Errorf("%q: want a host the proxy can connect to (an IP address of this machine or container, such as 127.0.0.1), not every address", addr)
	} else if err != nil && !isHostname(host) {
		return fmt.Errorf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

// checkEmail accepts a plain address: one '@' between a non-empty local
// part without spaces or control characters and a host name.
func checkEmail(s string) error {
	local, domain, ok := strings.Cut(s, "@")
	bad := !ok || local == "" || strings.ContainsAny(local, "@<>,;: \"\\") || !isHostname(domain)
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("%q is not an email address; want a plain address such as ops@example.com (or leave it empty)", s)
	}
	return nil
}

// checkACMEURL accepts the https:// URL of an ACME directory.
func checkACMEURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an https:// URL; want the ACME directory, such as %s", s, defaultACMECA)
	}
	return nil
}
