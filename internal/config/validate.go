package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// maxPEMFileSize bounds what Validate reads from a TLS file; real ones are
// a few KiB.
const maxPEMFileSize = 1 << 20

// Validate checks every setting and returns all problems at once
// (errors.Join), each naming the setting by its TOML key, or nil. It reads
// the TLS files it names: each must be a readable regular PEM file, the CA
// file must hold a certificate, and the certificate and key must be a pair.
// File is not checked.
func (c Config) Validate() error { return c.validate(nil) }

// validate is Validate naming each setting as o says it was written.
func (c Config) validate(o origins) error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.name(key), err))
		}
	}

	scheme, err := checkDockerHosts(c.DockerHost)
	add("docker_host", err)
	add("proxy", checkOneOf(c.Proxy, ProxyBuiltin, ProxyNginx, ProxyHAProxy))
	httpErr := checkListenAddr(c.HTTPAddr)
	add("http_addr", httpErr)
	apiErr := checkListenAddr(c.APIAddr)
	add("api_addr", apiErr)
	if httpErr == nil && apiErr == nil && c.HTTPAddr == c.APIAddr && !strings.HasSuffix(c.HTTPAddr, ":0") {
		errs = append(errs, fmt.Errorf("%s are both %q; give the API an address of its own",
			o.names("http_addr", "api_addr"), c.HTTPAddr))
	}
	add("backend_address", checkBackendAddress(c.BackendAddress))
	add("network", checkNetworkName(c.Network))
	if c.ResyncInterval < MinResyncInterval {
		add("resync_interval", fmt.Errorf("%s is too short; want at least %s", c.ResyncInterval, MinResyncInterval))
	}
	httpsErr := checkListenAddr(c.HTTPSAddr)
	add("https_addr", httpsErr)
	if httpsErr == nil && !strings.HasSuffix(c.HTTPSAddr, ":0") {
		for _, other := range []struct{ key, v string }{{"http_addr", c.HTTPAddr}, {"api_addr", c.APIAddr}} {
			if c.HTTPSAddr == other.v {
				errs = append(errs, fmt.Errorf("%s are both %q; give HTTPS an address of its own",
					o.names(other.key, "https_addr"), c.HTTPSAddr))
			}
		}
	}
	add("cert_dir", checkNotEmpty(c.CertDir, "the certificate directory, such as "+defaultCertDir))
	add("state_dir", checkNotEmpty(c.StateDir, "a directory for proxy state, such as "+defaultStateDir))
	profile, profileErr := tlsconf.Lookup(c.TLSProfile)
	if c.TLSProfile == "" {
		profileErr = fmt.Errorf("is empty; want %s", strings.Join(tlsconf.Names, ", "))
	}
	add("tls_profile", profileErr)
	if c.TLSCiphers != "" {
		_, err := profile.WithCiphers(c.TLSCiphers)
		add("tls_ciphers", err)
	}
	if c.TLSProtocols != "" {
		_, err := profile.WithProtocols(c.TLSProtocols)
		add("tls_protocols", err)
	}
	if c.Template != "" {
		add("template", checkRegularFile(c.Template))
	}
	if c.ReloadQuiet < 0 || c.ReloadQuiet > MaxReloadWait {
		add("reload_quiet", fmt.Errorf("%s is out of range; want 0 to %s", c.ReloadQuiet, MaxReloadWait))
	}
	if c.ReloadMaxWait <= 0 || c.ReloadMaxWait > MaxReloadWait {
		add("reload_max_wait", fmt.Errorf("%s is out of range; want more than 0 and at most %s", c.ReloadMaxWait, MaxReloadWait))
	} else if c.ReloadQuiet > c.ReloadMaxWait {
		errs = append(errs, fmt.Errorf("%s: the quiet period %s is longer than the maximum wait %s; make it shorter",
			o.names("reload_quiet", "reload_max_wait"), c.ReloadQuiet, c.ReloadMaxWait))
	}
	add("nginx_binary", checkNotEmpty(c.NginxBinary, "the nginx executable, such as nginx or /usr/sbin/nginx"))
	add("nginx_target", checkOneOf(c.NginxTarget, NginxLocal, NginxContainers))
	add("nginx_delivery", checkOneOf(c.NginxDelivery, NginxCopy, NginxVolume))
	if !strings.HasPrefix(c.NginxContainerConfig, "/") || strings.Contains(c.NginxContainerConfig, "..") {
		add("nginx_container_config", fmt.Errorf("%q is not an absolute path without \"..\"; want a path inside the containers, such as %s",
			c.NginxContainerConfig, defaultNginxContainerConfig))
	}
	if c.ProxyContainerLabel != "" {
		add("proxy_container_label", checkLabelValue(c.ProxyContainerLabel))
	}
	if c.ProxyDockerHost != "" {
		add("proxy_docker_host", checkProxyDockerHost(c.ProxyDockerHost))
	}
	if c.Proxy == ProxyNginx {
		for _, a := range []struct{ key, v string }{{"http_addr", c.HTTPAddr}, {"https_addr", c.HTTPSAddr}} {
			if strings.HasSuffix(a.v, ":0") {
				add(a.key, fmt.Errorf("%q: nginx needs a fixed port, not 0", a.v))
			}
		}
		if c.NginxPidFile != "" && c.NginxTarget == NginxContainers {
			errs = append(errs, fmt.Errorf("%s: a pid file names a local nginx, but the target is containers; unset one",
				o.names("nginx_pid_file", "nginx_target")))
		}
	}
	add("haproxy_binary", checkNotEmpty(c.HAProxyBinary, "the haproxy executable, such as haproxy or /usr/sbin/haproxy"))
	add("haproxy_target", checkOneOf(c.HAProxyTarget, TargetLocal, TargetContainers))
	var tcpErr, statsErr error
	if c.TCPAddr != "" {
		tcpErr = checkListenAddr(c.TCPAddr)
		add("tcp_addr", tcpErr)
	}
	if c.StatsAddr != "" {
		statsErr = checkLoopbackAddr(c.StatsAddr)
		add("stats_addr", statsErr)
	}
	if c.DrainTimeout < MinDrainTimeout {
		add("drain_timeout", fmt.Errorf("%s is too short; want at least %s", c.DrainTimeout, MinDrainTimeout))
	}
	if c.HSTSMaxAge < 0 || (c.HSTSMaxAge > 0 && c.HSTSMaxAge < time.Second) {
		add("hsts_max_age", fmt.Errorf("%s is out of range; want 0 (no HSTS header) or at least 1s, such as \"8760h\" (a year)", c.HSTSMaxAge))
	}
	c.validateEdge(add)
	c.validateACME(add)
	errs = append(errs, c.validateRoles(o)...)
	if c.Proxy == ProxyHAProxy {
		// HAProxy's own listeners: each needs a fixed port (the file names
		// it) and an address of its own. For the other drivers these
		// settings mean nothing, so they are not held against them.
		tcpOK, statsOK := c.TCPAddr != "" && tcpErr == nil, c.StatsAddr != "" && statsErr == nil
		for _, a := range []struct {
			key, v string
			ok     bool
		}{
			{"http_addr", c.HTTPAddr, httpErr == nil}, {"https_addr", c.HTTPSAddr, httpsErr == nil},
			{"tcp_addr", c.TCPAddr, tcpOK}, {"stats_addr", c.StatsAddr, statsOK},
		} {
			if a.ok && strings.HasSuffix(a.v, ":0") {
				add(a.key, fmt.Errorf("%q: haproxy needs a fixed port, not 0", a.v))
			}
		}
		taken := []struct{ key, v string }{{"http_addr", c.HTTPAddr}, {"https_addr", c.HTTPSAddr}, {"api_addr", c.APIAddr}}
		own := func(key, v, what string) {
			for _, other := range taken {
				if v == other.v {
					errs = append(errs, fmt.Errorf("%s are both %q; give %s an address of its own",
						o.names(other.key, key), v, what))
				}
			}
			taken = append(taken, struct{ key, v string }{key, v})
		}
		if tcpOK {
			own("tcp_addr", c.TCPAddr, "the tcp listener")
		}
		if statsOK {
			own("stats_addr", c.StatsAddr, "the stats page")
		}
	}
	add("log_level", checkOneOf(c.LogLevel, "debug", "info", "warn", "error"))
	add("log_format", checkOneOf(c.LogFormat, "text", "json"))

	if (c.TLSCert == "") != (c.TLSKey == "") {
		set, unset := "tls_cert", "tls_key"
		if c.TLSCert == "" {
			set, unset = unset, set
		}
		errs = append(errs, fmt.Errorf("%s is set but %s is not; a client certificate needs its key, so set both or neither",
			o.name(set), o.nameLike(unset, set)))
	}
	if c.TLSCA != "" {
		pem, err := readPEMFile(c.TLSCA)
		if err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
			err = fmt.Errorf("%s holds no PEM certificate; want the engine's CA certificates in PEM", c.TLSCA)
		}
		add("tls_ca", err)
	}
	var cert, key []byte
	var certErr, keyErr error
	if c.TLSCert != "" {
		cert, certErr = readPEMFile(c.TLSCert)
		add("tls_cert", certErr)
	}
	if c.TLSKey != "" {
		key, keyErr = readPEMFile(c.TLSKey)
		add("tls_key", keyErr)
	}
	if c.TLSCert != "" && c.TLSKey != "" && certErr == nil && keyErr == nil {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s and %s are not a certificate and its private key: %w",
				o.names("tls_cert", "tls_key"), c.TLSCert, c.TLSKey, err))
		}
	}
	if c.TLSVerify && (scheme == "unix" || scheme == "npipe") {
		errs = append(errs, fmt.Errorf("%s is on but %s is %q, a local socket, where TLS does not apply; turn verification off or use a tcp://HOST:PORT docker host",
			o.name("tls_verify"), o.name("docker_host"), c.DockerHost))
	}
	return errors.Join(errs...)
}

// MaxReloadWait bounds ReloadQuiet and ReloadMaxWait.
const MaxReloadWait = time.Minute

// checkNotEmpty refuses "", saying what is wanted.
func checkNotEmpty(v, want string) error {
	if v == "" {
		return fmt.Errorf("is empty; want %s", want)
	}
	return nil
}

// checkRegularFile accepts a readable regular file.
func checkRegularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w; fix the path or unset it", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w; make it readable by interlock", err)
	}
	return f.Close()
}

// checkLabelValue accepts [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 bytes:
// the value of interlock.ext.name.
func checkLabelValue(s string) error {
	ok := s != "" && len(s) <= 128 && isAlnum(s[0])
	for i := 1; ok && i < len(s); i++ {
		ok = isAlnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'
	}
	if !ok {
		return fmt.Errorf("%q is not a label value; want a letter or digit, then letters, digits, '_', '.' or '-' (such as nginx)", s)
	}
	return nil
}

// checkOneOf accepts exactly one of allowed (case-sensitive).
func checkOneOf(v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("unknown value %q; want %s", v, orList(allowed))
}

// orList renders "a", "a or b", "a, b or c".
func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// checkDockerHosts accepts one endpoint or a comma-separated list of them
// (the managers of one Swarm), and returns their scheme: a list must not
// mix local sockets and tcp endpoints, since one TLS setting serves all.
func checkDockerHosts(s string) (scheme string, err error) {
	if !strings.Contains(s, ",") {
		return checkDockerHost(s)
	}
	seen := map[string]bool{}
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return "", fmt.Errorf("%q has an empty entry; list the managers as tcp://HOST:PORT,tcp://HOST:PORT", s)
		}
		sc, err := checkDockerHost(h)
		if err != nil {
			return "", err
		}
		if scheme != "" && sc != scheme {
			return "", fmt.Errorf("%q mixes %s:// and %s:// endpoints; list the managers of one cluster, all reached the same way", s, scheme, sc)
		}
		if seen[h] {
			return "", fmt.Errorf("%q names %s twice", s, h)
		}
		seen[h], scheme = true, sc
	}
	return scheme, nil
}

// checkProxyDockerHost accepts one endpoint of the docker_host grammar:
// the engine where the proxy containers run is one engine, never a list
// of managers.
func checkProxyDockerHost(s string) error {
	if strings.Contains(s, ",") {
		return fmt.Errorf("%q is a list; want the one engine where the proxy containers run, such as %q (the proxy node's own socket, mounted into Interlock's container)", s, defaultDockerHost)
	}
	_, err := checkDockerHost(s)
	return err
}

// checkDockerHost accepts unix://PATH, npipe://PATH and tcp://HOST:PORT,
// and returns the scheme.
func checkDockerHost(s string) (scheme string, err error) {
	scheme, addr, ok := strings.Cut(s, "://")
	if !ok {
		return "", fmt.Errorf("%q has no scheme; want unix://PATH, tcp://HOST:PORT or npipe://PATH, such as %q", s, defaultDockerHost)
	}
	switch scheme {
	case "unix", "npipe":
		if addr == "" {
			return "", fmt.Errorf("%q has no socket path; want %s://PATH, such as %q", s, scheme, defaultDockerHost)
		}
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return "", fmt.Errorf("%q is not tcp://HOST:PORT; give the engine's host and port, such as tcp://127.0.0.1:2376", s)
		}
		if err := checkHost(host); err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		if err := checkPort(port, 1); err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
	case "ssh":
		return "", fmt.Errorf("%q: ssh:// is not supported; forward the engine's socket (ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST) and use unix:///tmp/docker.sock", s)
	case "http", "https":
		return "", fmt.Errorf("%q: use tcp://HOST:PORT instead of %s:// (with the tls settings for TLS)", s, scheme)
	default:
		return "", fmt.Errorf("%q has unknown scheme %q; want unix://PATH, tcp://HOST:PORT or npipe://PATH", s, scheme)
	}
	return scheme, nil
}

// checkListenAddr accepts host:port where host is empty (all addresses),
// an IP address or a host name, and port is 0-65535 (0: the kernel picks).
func checkListenAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port; want an address such as \":8080\", \"127.0.0.1:8081\" or \"[::1]:8081\"", s)
	}
	if err := checkPort(port, 0); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if host != "" {
		if err := checkHost(host); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

// checkLoopbackAddr is checkListenAddr for an address that must stay on
// this machine: its host is a loopback IP address (127.0.0.0/8 or ::1).
func checkLoopbackAddr(s string) error {
	if err := checkListenAddr(s); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s)
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address; the stats page has admin rights, so bind it to 127.0.0.1 or [::1], such as %q (or set it empty for no stats page)", s, defaultStatsAddr)
	}
	return nil
}

// checkPort accepts a decimal port from lowest to 65535.
func checkPort(p string, lowest uint64) error {
	n, err := strconv.ParseUint(p, 10, 64)
	if err != nil || n < lowest || n > 65535 {
		return fmt.Errorf("port %q is not a number from %d to 65535", p, lowest)
	}
	return nil
}

// checkBackendAddress accepts an IP address or a host name, but not a
// wildcard address, which listens everywhere but reaches nothing.
func checkBackendAddress(s string) error {
	if s == "" {
		return fmt.Errorf("is empty; want the IP address or host name of the Docker host, such as %s", defaultBackendAddress)
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.IsUnspecified() {
		return fmt.Errorf("%q is the wildcard address, not one to connect to; want the Docker host's address, such as %s", s, defaultBackendAddress)
	}
	return checkHost(s)
}

// checkHost accepts an IP address (IPv6 without brackets, zones allowed) or
// an RFC 1123 host name.
func checkHost(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if isHostname(h) {
		return nil
	}
	return fmt.Errorf("%q is neither an IP address nor a host name (no port, no brackets)", h)
}

// isHostname reports whether h is an RFC 1123 host name: dot-separated
// labels of 1-63 letters, digits and inner hyphens, 253 bytes at most, and
// not all-numeric at the end (so "1.2.3.999" is a bad IP, not a name).
func isHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if !isAlnum(l[i]) && l[i] != '-' {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// checkNetworkName accepts "" (published ports) or a Docker network name:
// [A-Za-z0-9][A-Za-z0-9_.-]*.
func checkNetworkName(s string) error {
	if s == "" {
		return nil
	}
	ok := isAlnum(s[0])
	for i := 1; ok && i < len(s); i++ {
		ok = isAlnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'
	}
	if !ok {
		return fmt.Errorf("%q is not a Docker network name; want a letter or digit, then letters, digits, '_', '.' or '-' (or empty for published ports)", s)
	}
	return nil
}

func isAlnum(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

// readPEMFile reads a TLS file, refusing anything but a regular file of at
// most maxPEMFileSize (so a FIFO or a device cannot hang start-up).
func readPEMFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w; fix the path or unset it", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file; want a PEM file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w; make it readable by interlock", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxPEMFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes; want a PEM file", path, maxPEMFileSize)
	}
	return data, nil
}
