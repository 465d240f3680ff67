package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// The roles of `interlock run` (internal/feed): the single process of
// old, a controller that watches Docker and feeds the routing table to
// edges, and an edge that serves traffic from that table with no Docker
// access at all.

// The values of Config.Role.
const (
	// RoleAll watches Docker and serves traffic in one process (default).
	RoleAll = "all"
	// RoleController watches Docker and serves the table on FeedAddr; it
	// runs no proxy.
	RoleController = "controller"
	// RoleEdge follows Controllers and serves traffic with the built-in
	// proxy; it never talks to Docker.
	RoleEdge = "edge"
)

const (
	defaultRole     = RoleAll
	defaultFeedAddr = ":8444"
)

// ControllerURLs is Controllers as a list, in order.
func (c Config) ControllerURLs() []string {
	var out []string
	for _, u := range strings.Split(c.Controllers, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// dockerSettings are the settings that reach a Docker engine: an edge
// refuses every one of them, so that it cannot be given Docker access by
// mistake (a DOCKER_HOST left in its environment included).
var dockerSettings = []string{"docker_host", "tls_ca", "tls_cert", "tls_key", "tls_verify", "proxy_docker_host"}

// validateRoles checks role and the feed settings. Their form is checked
// in every role; what a role needs (certificates, controllers) only for
// that role.
func (c Config) validateRoles(o origins) []error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.name(key), err))
		}
	}
	roleErr := checkOneOf(c.Role, RoleAll, RoleController, RoleEdge)
	add("role", roleErr)
	feedErr := checkListenAddr(c.FeedAddr)
	add("feed_addr", feedErr)
	var caErr, certErr, keyErr error
	var cert, key []byte
	if c.FeedCA != "" {
		var pem []byte
		pem, caErr = readPEMFile(c.FeedCA)
		if caErr == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			caErr = fmt.Errorf("%s holds no PEM certificate; want the CA certificates that sign the controllers' and edges' feed certificates", c.FeedCA)
		}
		add("feed_ca", caErr)
	}
	if c.FeedCert != "" {
		cert, certErr = readPEMFile(c.FeedCert)
		add("feed_cert", certErr)
	}
	if c.FeedKey != "" {
		key, keyErr = readPEMFile(c.FeedKey)
		add("feed_key", keyErr)
	}
	if (c.FeedCert == "") != (c.FeedKey == "") {
		set, unset := "feed_cert", "feed_key"
		if c.FeedCert == "" {
			set, unset = unset, set
		}
		errs = append(errs, fmt.Errorf("%s is set but %s is not; a feed certificate needs its key, so set both or neither",
			o.name(set), o.nameLike(unset, set)))
	}
	if c.FeedCert != "" && c.FeedKey != "" && certErr == nil && keyErr == nil {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s and %s are not a certificate and its private key: %w",
				o.names("feed_cert", "feed_key"), c.FeedCert, c.FeedKey, err))
		}
	}
	if c.Controllers != "" {
		add("controllers", checkControllers(c.Controllers))
	}
	if roleErr != nil || c.Role == RoleAll {
		return errs
	}

	// The feed is mutual TLS: both sides need all three files.
	for _, k := range []struct{ key, v, what string }{
		{"feed_ca", c.FeedCA, "the CA that signs the controllers' and edges' feed certificates"},
		{"feed_cert", c.FeedCert, "this " + c.Role + "'s feed certificate, signed by feed_ca"},
		{"feed_key", c.FeedKey, "the private key of feed_cert"},
	} {
		if k.v == "" && (k.key == "feed_ca" || c.FeedCert == "" && c.FeedKey == "") {
			errs = append(errs, fmt.Errorf("%s is empty, but %s is %s: the feed is mutual TLS; want %s (PEM file)",
				o.nameLike(k.key, "role"), o.name("role"), c.Role, k.what))
		}
	}
	switch c.Role {
	case RoleController:
		if feedErr == nil && !strings.HasSuffix(c.FeedAddr, ":0") && c.FeedAddr == c.APIAddr {
			errs = append(errs, fmt.Errorf("%s are both %q; give the feed an address of its own",
				o.names("api_addr", "feed_addr"), c.FeedAddr))
		}
	case RoleEdge:
		if c.Controllers == "" {
			errs = append(errs, fmt.Errorf("%s is empty, but %s is edge; want the controllers' feed URLs, such as https://controller1:8444,https://controller2:8444",
				o.nameLike("controllers", "role"), o.name("role")))
		}
		for _, k := range dockerSettings {
			s, _ := settingByKey(k)
			def := Default()
			if o[k].kind != srcDefault || s.format(&c) != s.format(&def) {
				errs = append(errs, fmt.Errorf("%s is set, but %s is edge: an edge has no Docker access at all, it serves the table of --controllers; unset it (run the controllers with the Docker settings)",
					o.name(k), o.name("role")))
			}
		}
		if c.Proxy != ProxyBuiltin {
			errs = append(errs, fmt.Errorf("%s is %q, but %s is edge: an edge serves with the built-in proxy; unset it or set it to builtin",
				o.name("proxy"), c.Proxy, o.name("role")))
		}
		if c.ACMEEnabled() {
			errs = append(errs, fmt.Errorf("%s is %q, but %s is edge: an edge never talks to the CA, it serves the certificates its controllers obtain and send over the feed; set it to off here and set it on the controllers",
				o.name("acme_hosts"), c.ACMEHosts, o.name("role")))
		}
	}
	return errs
}

// checkControllers accepts a comma-separated list of https://HOST:PORT
// URLs, each once, without path, query or user.
func checkControllers(s string) error {
	seen := map[string]bool{}
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return fmt.Errorf("%q has an empty entry; list the controllers as https://HOST:PORT,https://HOST:PORT", s)
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q is not https://HOST:PORT; give a controller's feed address, such as https://controller1:8444", raw)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			return fmt.Errorf("%q has no port; give the controller's feed_addr port, such as https://%s%s", raw, u.Host, defaultFeedAddr)
		}
		if err := checkHost(host); err != nil {
			return fmt.Errorf("%q: %w", raw, err)
		}
		if err := checkPort(port, 1); err != nil {
			return fmt.Errorf("%q: %w", raw, err)
		}
		if seen[u.Host] {
			return fmt.Errorf("%q names %s twice", s, u.Host)
		}
		seen[u.Host] = true
	}
	return nil
}
