package config

import (
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// kind is the type of a setting's value.
type kind int

const (
	kindString kind = iota
	kindBool
	kindDuration
	kindByteSize
)

// setting is one row of the single table every source reads: the flag name
// is the root, the TOML key and the environment variable derive from it.
type setting struct {
	flag  string
	kind  kind
	usage string // flag usage; a `quoted` word is the value placeholder
	// field returns the address of the setting in c: *string, *bool,
	// *time.Duration or *ByteSize according to kind.
	field func(c *Config) any
}

// settings lists every setting in Config order; it is read-only. Adding a setting here adds
// its flag, TOML key, environment variable, String and LogValue entry; the
// README test then insists on its row.
var settings = []setting{
	{flag: "docker-host", kind: kindString, field: func(c *Config) any { return &c.DockerHost },
		usage: "Docker Engine API `URL`: unix://PATH, tcp://HOST:PORT or npipe://PATH"},
	{flag: "tls-ca", kind: kindString, field: func(c *Config) any { return &c.TLSCA },
		usage: "PEM `FILE` of CA certificates that verify the engine"},
	{flag: "tls-cert", kind: kindString, field: func(c *Config) any { return &c.TLSCert },
		usage: "PEM `FILE` with the client certificate (needs -tls-key)"},
	{flag: "tls-key", kind: kindString, field: func(c *Config) any { return &c.TLSKey },
		usage: "PEM `FILE` with the client private key (needs -tls-cert)"},
	{flag: "tls-verify", kind: kindBool, field: func(c *Config) any { return &c.TLSVerify },
		usage: "verify the engine's certificate (tcp:// docker hosts only)"},
	{flag: "proxy", kind: kindString, field: func(c *Config) any { return &c.Proxy },
		usage: "proxy `DRIVER` to run: builtin, nginx or haproxy"},
	{flag: "http-addr", kind: kindString, field: func(c *Config) any { return &c.HTTPAddr },
		usage: "`HOST:PORT` the proxy serves HTTP on"},
	{flag: "api-addr", kind: kindString, field: func(c *Config) any { return &c.APIAddr },
		usage: "`HOST:PORT` of the HTTP API, dashboard and /metrics"},
	{flag: "backend-address", kind: kindString, field: func(c *Config) any { return &c.BackendAddress },
		usage: "IP `ADDRESS` or host name that reaches ports published on 0.0.0.0"},
	{flag: "network", kind: kindString, field: func(c *Config) any { return &c.Network },
		usage: "Docker `NETWORK` to reach containers on by IP; empty means published ports"},
	{flag: "resync-interval", kind: kindDuration, field: func(c *Config) any { return &c.ResyncInterval },
		usage: "`DURATION` between full resyncs, even without events (min 1s)"},
	{flag: "log-level", kind: kindString, field: func(c *Config) any { return &c.LogLevel },
		usage: "log `LEVEL`: debug, info, warn or error"},
	{flag: "log-format", kind: kindString, field: func(c *Config) any { return &c.LogFormat },
		usage: "log `FORMAT`: text or json"},
	{flag: "https-addr", kind: kindString, field: func(c *Config) any { return &c.HTTPSAddr },
		usage: "`HOST:PORT` the proxy serves HTTPS on (hosts with TLS only)"},
	{flag: "cert-dir", kind: kindString, field: func(c *Config) any { return &c.CertDir },
		usage: "`DIR` that interlock.ssl_cert and ssl_cert_key paths are relative to"},
	{flag: "tls-profile", kind: kindString, field: func(c *Config) any { return &c.TLSProfile },
		usage: "server-side TLS `PROFILE`: modern, intermediate or old"},
	{flag: "tls-ciphers", kind: kindString, field: func(c *Config) any { return &c.TLSCiphers },
		usage: "override the profile's TLS 1.2 `CIPHERS` (OpenSSL names, ':'-separated)"},
	{flag: "tls-protocols", kind: kindString, field: func(c *Config) any { return &c.TLSProtocols },
		usage: "override the profile's `PROTOCOLS` (\"TLSv1.2 TLSv1.3\")"},
	{flag: "template", kind: kindString, field: func(c *Config) any { return &c.Template },
		usage: "custom nginx or haproxy configuration template `FILE` (Go text/template); empty: built-in"},
	{flag: "state-dir", kind: kindString, field: func(c *Config) any { return &c.StateDir },
		usage: "`DIR` for the files of a proxy Interlock drives (nginx/, haproxy/)"},
	{flag: "reload-quiet", kind: kindDuration, field: func(c *Config) any { return &c.ReloadQuiet },
		usage: "reloading drivers apply after this quiet `DURATION` without changes"},
	{flag: "reload-max-wait", kind: kindDuration, field: func(c *Config) any { return &c.ReloadMaxWait },
		usage: "...but at most this `DURATION` after the first change"},
	{flag: "nginx-binary", kind: kindString, field: func(c *Config) any { return &c.NginxBinary },
		usage: "nginx executable `PATH` (looked up in PATH)"},
	{flag: "nginx-config", kind: kindString, field: func(c *Config) any { return &c.NginxConfig },
		usage: "live nginx.conf `FILE` Interlock writes; empty: STATE_DIR/nginx/nginx.conf"},
	{flag: "nginx-pid-file", kind: kindString, field: func(c *Config) any { return &c.NginxPidFile },
		usage: "reload the nginx whose master pid is in `FILE` instead of running nginx itself"},
	{flag: "nginx-target", kind: kindString, field: func(c *Config) any { return &c.NginxTarget },
		usage: "where nginx runs: local or containers (labelled interlock.ext.name)"},
	{flag: "nginx-delivery", kind: kindString, field: func(c *Config) any { return &c.NginxDelivery },
		usage: "how nginx.conf reaches the containers: copy (Docker API) or volume (shared)"},
	{flag: "nginx-container-config", kind: kindString, field: func(c *Config) any { return &c.NginxContainerConfig },
		usage: "`PATH` of nginx.conf inside the proxy containers (copy)"},
	{flag: "proxy-container-label", kind: kindString, field: func(c *Config) any { return &c.ProxyContainerLabel },
		usage: "`VALUE` of interlock.ext.name that marks the proxy containers; empty: the driver's name"},
	{flag: "proxy-docker-host", kind: kindString, field: func(c *Config) any { return &c.ProxyDockerHost },
		usage: "Docker Engine API `URL` where the side-loaded proxy containers run (unix://PATH or tcp://HOST:PORT); empty: the watched engine"},
	{flag: "haproxy-binary", kind: kindString, field: func(c *Config) any { return &c.HAProxyBinary },
		usage: "haproxy executable `PATH` (looked up in PATH, then /usr/sbin)"},
	{flag: "haproxy-config", kind: kindString, field: func(c *Config) any { return &c.HAProxyConfig },
		usage: "live haproxy.cfg `FILE` Interlock writes; empty: STATE_DIR/haproxy/haproxy.cfg"},
	{flag: "haproxy-target", kind: kindString, field: func(c *Config) any { return &c.HAProxyTarget },
		usage: "where haproxy runs: local or containers (labelled interlock.ext.name, sharing STATE_DIR/haproxy)"},
	{flag: "tcp-addr", kind: kindString, field: func(c *Config) any { return &c.TCPAddr },
		usage: "`HOST:PORT` where haproxy serves tcp routes, by TLS SNI (passthrough); empty: none"},
	{flag: "stats-addr", kind: kindString, field: func(c *Config) any { return &c.StatsAddr },
		usage: "loopback `HOST:PORT` of HAProxy's stats page and /metrics; empty: none"},
	{flag: "drain-timeout", kind: kindDuration, field: func(c *Config) any { return &c.DrainTimeout },
		usage: "`DURATION` haproxy lets a stopping container finish its connections (min 1s)"},
	{flag: "hsts-max-age", kind: kindDuration, field: func(c *Config) any { return &c.HSTSMaxAge },
		usage: "builtin: send HSTS with this max-age `DURATION` on HTTPS answers for ssl_only hosts; 0: off"},
	{flag: "builtin-engine", kind: kindString, field: func(c *Config) any { return &c.BuiltinEngine },
		usage: "builtin: the plain HTTP listener's `ENGINE`: nethttp or fasthttp"},
	{flag: "proxy-protocol-trusted-ips", kind: kindString, field: func(c *Config) any { return &c.ProxyProtocolTrustedIPs },
		usage: "accept PROXY protocol v1/v2 on the HTTP and HTTPS listeners from these `CIDRS` (comma-separated); empty: off"},
	{flag: "forwarded-headers-trusted-ips", kind: kindString, field: func(c *Config) any { return &c.ForwardedHeadersTrustedIPs },
		usage: "keep X-Forwarded-* and Forwarded from clients in these `CIDRS` (comma-separated); empty: always replace them"},
	{flag: "access-log", kind: kindString, field: func(c *Config) any { return &c.AccessLog },
		usage: "write one line per request to `FILE` (\"-\": standard output), reopened on SIGUSR1; empty: off"},
	{flag: "access-log-format", kind: kindString, field: func(c *Config) any { return &c.AccessLogFormat },
		usage: "access log `FORMAT`: common or json"},
	{flag: "client-read-header-timeout", kind: kindDuration, field: func(c *Config) any { return &c.ClientReadHeaderTimeout },
		usage: "`DURATION` a client may take to send a request's headers; 0: no limit"},
	{flag: "client-read-timeout", kind: kindDuration, field: func(c *Config) any { return &c.ClientReadTimeout },
		usage: "`DURATION` a client may take to send a whole request, body included; 0: no limit"},
	{flag: "client-idle-timeout", kind: kindDuration, field: func(c *Config) any { return &c.ClientIdleTimeout },
		usage: "`DURATION` a keep-alive client connection may sit idle between requests; 0: no limit"},
	{flag: "backend-connect-timeout", kind: kindDuration, field: func(c *Config) any { return &c.BackendConnectTimeout },
		usage: "`DURATION` a connect to a backend may take before the next backend is tried"},
	{flag: "backend-response-header-timeout", kind: kindDuration, field: func(c *Config) any { return &c.BackendResponseHeaderTimeout },
		usage: "`DURATION` a backend may take to answer with its headers (504 past it); 0: no limit"},
	{flag: "backend-idle-timeout", kind: kindDuration, field: func(c *Config) any { return &c.BackendIdleTimeout },
		usage: "`DURATION` an idle keep-alive connection to a backend is kept"},
	{flag: "max-header-bytes", kind: kindByteSize, field: func(c *Config) any { return &c.MaxHeaderBytes },
		usage: "largest request head (request line and headers) a client may send, as a `SIZE` such as 64KiB (431 past it; nginx: 400)"},
	{flag: "max-body-bytes", kind: kindByteSize, field: func(c *Config) any { return &c.MaxBodyBytes },
		usage: "largest request body, as a `SIZE` such as 10MiB (413 past it); 0: no limit"},
	{flag: "acme-hosts", kind: kindString, field: func(c *Config) any { return &c.ACMEHosts },
		usage: "`HOSTS` that get certificates over ACME: off, labelled (ssl_acme=true) or all (every TLS host without its own certificate)"},
	{flag: "acme-email", kind: kindString, field: func(c *Config) any { return &c.ACMEEmail },
		usage: "contact `EMAIL` of the ACME account (the CA's expiry notices); empty: none"},
	{flag: "acme-ca", kind: kindString, field: func(c *Config) any { return &c.ACMECA },
		usage: "ACME directory `URL` (https)"},
	{flag: "acme-ca-root", kind: kindString, field: func(c *Config) any { return &c.ACMECARoot },
		usage: "PEM `FILE` of CA certificates that verify the ACME server (a test CA); empty: the system roots"},
	{flag: "acme-storage", kind: kindString, field: func(c *Config) any { return &c.ACMEStorage },
		usage: "`DIR` of the ACME account, certificates and keys; empty: STATE_DIR/acme"},
	{flag: "acme-challenges", kind: kindString, field: func(c *Config) any { return &c.ACMEChallenges },
		usage: "ACME challenge `TYPES`, comma-separated: http-01 (on http_addr), tls-alpn-01 (on https_addr; builtin only)"},
	{flag: "acme-challenge-addr", kind: kindString, field: func(c *Config) any { return &c.ACMEChallengeAddr },
		usage: "nginx, haproxy: `ADDR` (host:port) where Interlock answers the ACME HTTP-01 challenges the proxy passes on"},
	{flag: "role", kind: kindString, field: func(c *Config) any { return &c.Role },
		usage: "`ROLE`: all (watch Docker and serve), controller (watch Docker, feed the edges) or edge (serve what the controllers feed; no Docker)"},
	{flag: "feed-addr", kind: kindString, field: func(c *Config) any { return &c.FeedAddr },
		usage: "controller: `HOST:PORT` the feed is served on to the edges (mutual TLS)"},
	{flag: "feed-ca", kind: kindString, field: func(c *Config) any { return &c.FeedCA },
		usage: "controller, edge: PEM `FILE` of the CA that verifies the other side of the feed"},
	{flag: "feed-cert", kind: kindString, field: func(c *Config) any { return &c.FeedCert },
		usage: "controller, edge: PEM `FILE` with this side's feed certificate (needs -feed-key)"},
	{flag: "feed-key", kind: kindString, field: func(c *Config) any { return &c.FeedKey },
		usage: "controller, edge: PEM `FILE` with the private key of -feed-cert"},
	{flag: "controllers", kind: kindString, field: func(c *Config) any { return &c.Controllers },
		usage: "edge: the controllers' feed `URLS`, comma-separated https://HOST:PORT, followed one at a time"},
	{flag: "edge-name", kind: kindString, field: func(c *Config) any { return &c.EdgeName },
		usage: "edge: the `NAME` the controllers know this edge by (interlock explain); default the host name"},
}

// Names of the settings that are neither a TOML key nor a Config field of
// their own kind.
const (
	flagConfig = "config"
	envConfig  = envPrefix + "CONFIG"
	envPrefix  = "INTERLOCK_"
)

// key is the TOML key: the flag name with '-' -> '_'.
func (s setting) key() string { return strings.ReplaceAll(s.flag, "-", "_") }

// env is the environment variable: INTERLOCK_ + the upper-case TOML key.
func (s setting) env() string { return envPrefix + strings.ToUpper(s.key()) }

// settingByKey returns the setting with TOML key k.
func settingByKey(k string) (setting, bool) {
	for _, s := range settings {
		if s.key() == k {
			return s, true
		}
	}
	return setting{}, false
}

// copyField copies this setting's value from src to dst.
func (s setting) copyField(dst, src *Config) {
	switch p := s.field(dst).(type) {
	case *string:
		*p = *s.field(src).(*string)
	case *bool:
		*p = *s.field(src).(*bool)
	case *time.Duration:
		*p = *s.field(src).(*time.Duration)
	case *ByteSize:
		*p = *s.field(src).(*ByteSize)
	}
}

// format renders the value for String: strings quoted, the rest as Go
// prints them (durations like "30s").
func (s setting) format(c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		return strconv.Quote(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return p.String()
	case *ByteSize:
		return p.String()
	}
	return ""
}

// attr renders the value for LogValue.
func (s setting) attr(c *Config) slog.Attr {
	switch p := s.field(c).(type) {
	case *string:
		return slog.String(s.key(), *p)
	case *bool:
		return slog.Bool(s.key(), *p)
	case *time.Duration:
		return slog.Duration(s.key(), *p)
	case *ByteSize:
		return slog.String(s.key(), p.String())
	}
	return slog.Attr{}
}

// FlagSet returns the flag set of `interlock run`, named "run", with every
// setting bound to its field in c and --config bound to c.File; the current
// values of c are the defaults it shows. It uses flag.ContinueOnError and
// writes to os.Stderr unless told otherwise (SetOutput). Load parses with
// it too, so its help output is always the truth.
func (c *Config) FlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&c.File, flagConfig, c.File,
		"TOML `FILE` to read settings from (env "+envConfig+")")
	for _, s := range settings {
		switch p := s.field(c).(type) {
		case *string:
			fs.StringVar(p, s.flag, *p, s.usage)
		case *bool:
			fs.BoolVar(p, s.flag, *p, s.usage)
		case *time.Duration:
			fs.Var((*durationValue)(p), s.flag, s.usage)
		case *ByteSize:
			fs.Var(p, s.flag, s.usage)
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, "Usage: interlock run [flags]\n\n"+
			"Every flag is also a TOML key (docker-host: docker_host) and an environment\n"+
			"variable (INTERLOCK_DOCKER_HOST). Precedence, highest first: flags,\n"+
			"INTERLOCK_* variables, DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH,\n"+
			"the file, defaults.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// durationValue is a flag.Value for a time.Duration whose parse error says
// what is wanted (the flag package's own says only "parse error").
type durationValue time.Duration

func (d *durationValue) String() string { return (*time.Duration)(d).String() }

func (d *durationValue) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

// parseDuration is time.ParseDuration with an error that says what is wanted.
func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; want a Go duration such as \"30s\" or \"1m30s\"", s)
	}
	return v, nil
}
