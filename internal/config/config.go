// Package config builds the configuration of `interlock run` from defaults, a
// TOML file, the environment and command-line flags, and validates it with
// errors that name each setting the way the user wrote it.
//
// Every setting has three spellings, derived from one table (settings.go):
// the flag (--docker-host), the TOML key (docker_host) and the environment
// variable (INTERLOCK_DOCKER_HOST). From lowest to highest precedence the
// sources are:
//
//  1. defaults (Default);
//  2. the TOML file named by --config or INTERLOCK_CONFIG;
//  3. the standard Docker environment: DOCKER_HOST, DOCKER_TLS_VERIFY and
//     DOCKER_CERT_PATH;
//  4. INTERLOCK_* environment variables;
//  5. flags, but only those actually given on the command line.
//
// Everything is strict: unknown TOML keys, unknown INTERLOCK_* variables and
// unknown flags are errors, and TOML keys are case-sensitive.
package config

import (
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Config is the complete configuration of `interlock run`. The zero value is
// not valid; start from Default.
type Config struct {
	// File is the TOML file the configuration was read from (--config or
	// INTERLOCK_CONFIG), "" when none was. It is informational: Validate
	// ignores it, and it is not a TOML key.
	File string

	// DockerHost is the Docker Engine API endpoint: unix://PATH,
	// tcp://HOST:PORT or npipe://PATH, or a comma-separated list of the
	// managers of one Swarm, tried in order (DockerHosts). Default
	// "unix:///var/run/docker.sock"; DOCKER_HOST overrides the file.
	DockerHost string
	// TLSCA, TLSCert and TLSKey are paths to PEM files: the CA certificates
	// that verify the engine, and the client certificate and its key
	// (both or neither). Default "" (none). A relative path in the TOML file
	// is relative to the file's directory; from a flag or the environment it
	// is relative to the working directory. DOCKER_CERT_PATH=DIR sets them
	// to DIR/ca.pem, DIR/cert.pem and DIR/key.pem.
	TLSCA, TLSCert, TLSKey string
	// TLSVerify makes the client verify the engine's certificate (against
	// TLSCA, else the system roots). It needs a tcp:// DockerHost.
	// Default false.
	TLSVerify bool
	// Proxy is the driver: "builtin" (default), "nginx" or "haproxy".
	Proxy string
	// HTTPAddr is the host:port the proxy serves HTTP on. Default ":8080".
	HTTPAddr string
	// APIAddr is the host:port of the HTTP API, dashboard and /metrics.
	// Default "127.0.0.1:8081".
	APIAddr string
	// BackendAddress is the IP address or host name that reaches ports the
	// engine published on 0.0.0.0 (or ::). Default "127.0.0.1".
	BackendAddress string
	// Network is a Docker network name: when set, containers are reached by
	// their IP on it instead of by published port. Default "" (published
	// ports).
	Network string
	// ResyncInterval is how often everything is listed and rebuilt even
	// without events. Default 30s, minimum 1s.
	ResyncInterval time.Duration
	// LogLevel is "debug", "info" (default), "warn" or "error".
	LogLevel string
	// LogFormat is "text" (default) or "json".
	LogFormat string

	// HTTPSAddr is the host:port the proxy serves HTTPS on, for hosts with
	// TLS. Default ":8443".
	HTTPSAddr string
	// CertDir is the directory that interlock.ssl_cert and ssl_cert_key
	// paths are relative to. Default "/etc/interlock/certs".
	CertDir string
	// TLSProfile is the server-side TLS profile: "modern", "intermediate"
	// (default) or "old" (see internal/tlsconf).
	TLSProfile string
	// TLSCiphers and TLSProtocols override the profile's TLS 1.2 cipher
	// list (OpenSSL names) and its protocol versions (TLSv1.2 TLSv1.3).
	// Default "" (the profile's).
	TLSCiphers, TLSProtocols string
	// Template is a custom configuration template for the nginx or the
	// haproxy driver (whichever Proxy names). Default "" (the driver's
	// built-in one).
	Template string
	// StateDir is where Interlock keeps the files of a proxy it drives
	// (nginx/: nginx.conf, pid file, temp paths, default certificate;
	// haproxy/: haproxy.cfg, sockets, server state, certificate bundles).
	// Default "/var/lib/interlock".
	StateDir string
	// ReloadQuiet and ReloadMaxWait coalesce bursts of changes for drivers
	// that reload (nginx, haproxy): apply once nothing changed for
	// ReloadQuiet, but never later than ReloadMaxWait after the first
	// change. Defaults 100ms and 1s.
	ReloadQuiet, ReloadMaxWait time.Duration
	// NginxBinary is the nginx executable. Default "nginx" (from PATH).
	NginxBinary string
	// NginxConfig is the live nginx.conf Interlock writes. Default ""
	// (STATE_DIR/nginx/nginx.conf).
	NginxConfig string
	// NginxPidFile, when set, makes Interlock reload the nginx whose master
	// pid is in it instead of running nginx itself. Default "".
	NginxPidFile string
	// NginxTarget is "local" (default: an nginx process on this machine) or
	// "containers" (side-loaded nginx containers).
	NginxTarget string
	// NginxDelivery is how the file reaches the containers: "copy"
	// (default, over the Docker API) or "volume" (a shared volume).
	NginxDelivery string
	// NginxContainerConfig is where the file goes inside the containers
	// (copy). Default "/etc/nginx/nginx.conf".
	NginxContainerConfig string
	// ProxyContainerLabel is the value of interlock.ext.name that marks the
	// proxy containers. Default "": the driver's name, nginx or haproxy.
	ProxyContainerLabel string
	// ProxyDockerHost is the Docker Engine API endpoint where the
	// side-loaded proxy containers run (nginx or haproxy target
	// containers): one unix://PATH, tcp://HOST:PORT or npipe://PATH, such
	// as the proxy node's own socket when DockerHost is a Swarm manager,
	// which lists only its own node's containers. A tcp:// endpoint uses
	// the TLS settings of DockerHost. Default "": the watched engine
	// (the first of DockerHosts).
	ProxyDockerHost string

	// HAProxyBinary is the haproxy executable. Default "haproxy" (from
	// PATH, else /usr/sbin).
	HAProxyBinary string
	// HAProxyConfig is the live haproxy.cfg Interlock writes. Default ""
	// (STATE_DIR/haproxy/haproxy.cfg).
	HAProxyConfig string
	// HAProxyTarget is "local" (default: Interlock runs HAProxy as its
	// child) or "containers" (side-loaded HAProxy containers that mount
	// STATE_DIR/haproxy at the same path).
	HAProxyTarget string
	// TCPAddr is the host:port where the haproxy driver serves tcp routes
	// (interlock.protocol=tcp), routed by the TLS SNI of the client hello
	// and passed through untouched. Default "" (tcp routes are left out).
	TCPAddr string
	// StatsAddr is the loopback host:port of HAProxy's stats page (with
	// admin actions) and its Prometheus /metrics. Default "127.0.0.1:8404";
	// "" serves none.
	StatsAddr string
	// DrainTimeout is how long HAProxy lets a server that left the table
	// (a stopping container) finish its connections before they are cut,
	// and an old worker finish after a reload. Default 30s, minimum 1s.
	DrainTimeout time.Duration
	// HSTSMaxAge, when positive, makes the built-in proxy send
	// "Strict-Transport-Security: max-age=N" (whole seconds) on its HTTPS
	// answers for ssl_only hosts. Default 0 (off); otherwise at least 1s.
	HSTSMaxAge time.Duration
	// BuiltinEngine is the built-in proxy's engine on the plain HTTP
	// listener: EngineFastHTTP (default: valyala/fasthttp for plain
	// HTTP/1.1 on matched routes, net/http for the rest) or EngineNetHTTP
	// (net/http for everything). HTTPS is always served by net/http.
	BuiltinEngine string

	// The built-in proxy's edge (edge.go): trusted client addresses, the
	// access log, timeouts and limits.

	// ProxyProtocolTrustedIPs lists the CIDR prefixes (comma-separated,
	// see ParseCIDRs) whose connections to the HTTP and HTTPS listeners may
	// start with a PROXY protocol v1 or v2 header; the client address it
	// gives becomes the request's. A connection from anywhere else that
	// sends one is closed. Default "" (PROXY protocol off).
	ProxyProtocolTrustedIPs string
	// ForwardedHeadersTrustedIPs lists the CIDR prefixes whose requests
	// keep their X-Forwarded-For (appended to), X-Forwarded-Host,
	// X-Forwarded-Proto and Forwarded headers. Default "": they are
	// always replaced.
	ForwardedHeadersTrustedIPs string
	// AccessLog is the access log file, "-" for standard output. Default
	// "" (no access log).
	AccessLog string
	// AccessLogFormat is "common" (default) or "json".
	AccessLogFormat string
	// ClientReadHeaderTimeout, ClientReadTimeout and ClientIdleTimeout
	// are the proxy listeners' http.Server ReadHeaderTimeout, ReadTimeout
	// and IdleTimeout; 0 means no limit. Defaults 30s, 0 and 120s.
	ClientReadHeaderTimeout, ClientReadTimeout, ClientIdleTimeout time.Duration
	// BackendConnectTimeout bounds a connect to a backend (then the next
	// one is tried). Default 1s; more than 0.
	BackendConnectTimeout time.Duration
	// BackendResponseHeaderTimeout bounds the wait for a backend's
	// response headers once the request is sent. Default 0 (no limit).
	BackendResponseHeaderTimeout time.Duration
	// BackendIdleTimeout is how long an idle backend connection is kept
	// for reuse. Default 90s; more than 0.
	BackendIdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's head (http.Server.MaxHeaderBytes).
	// Default 1MiB; 1KiB to 64MiB.
	MaxHeaderBytes ByteSize
	// MaxBodyBytes bounds a request's body. Default 0 (no limit).
	MaxBodyBytes ByteSize

	// ACME for the built-in proxy (acme.go, internal/acme).

	// ACMEHosts says which hosts get certificates over ACME: "off"
	// (default), "labelled" (ssl_acme=true) or "all" (also every TLS host
	// without a certificate of its own, unless ssl_acme=false).
	ACMEHosts string
	// ACMEEmail is the ACME account's contact address. Default "".
	ACMEEmail string
	// ACMECA is the ACME directory URL (https). Default Let's Encrypt's
	// production directory.
	ACMECA string
	// ACMECARoot is a PEM file of CA certificates that verify the ACME
	// server's HTTPS (a test CA such as Pebble); Default "": the system
	// roots.
	ACMECARoot string
	// ACMEStorage is the directory of the ACME account, certificates and
	// keys. Default "": STATE_DIR/acme.
	ACMEStorage string
	// ACMEChallenges lists the challenge types to use, comma-separated:
	// "http-01", "tls-alpn-01". Default both.
	ACMEChallenges string
	// ACMEChallengeAddr is where Interlock answers the HTTP-01 challenges
	// nginx and haproxy pass on (host:port, a concrete host both bind and
	// reach). Default "127.0.0.1:8082".
	ACMEChallengeAddr string

	// Roles and the feed (roles.go, internal/feed).

	// Role is RoleAll (default: watch Docker and serve traffic),
	// RoleController (watch Docker, serve the table to edges on FeedAddr,
	// run no proxy) or RoleEdge (follow Controllers, serve traffic with the
	// built-in proxy, no Docker access).
	Role string
	// FeedAddr is the host:port a controller serves the feed on (mutual
	// TLS). Default ":8444".
	FeedAddr string
	// FeedCA, FeedCert and FeedKey are PEM files: the CA that verifies the
	// peer on both sides of the feed, and this process's certificate and
	// key (a server certificate for a controller, a client certificate for
	// an edge). Needed by controllers and edges. Default "" (none).
	FeedCA, FeedCert, FeedKey string
	// Controllers lists the controllers an edge follows, comma-separated
	// https://HOST:PORT URLs (their FeedAddr); the edge follows one and
	// moves to the next when it fails. Default "".
	Controllers string
	// EdgeName is how an edge's controllers know it (interlock explain
	// shows which edges applied a host). Default "": the host name.
	EdgeName string
}

// Default values, returned by Default, shown by FlagSet and listed in the
// README (whose test keeps it in step).
const (
	defaultDockerHost     = "unix:///var/run/docker.sock"
	defaultProxy          = ProxyBuiltin
	defaultHTTPAddr       = ":8080"
	defaultAPIAddr        = "127.0.0.1:8081"
	defaultBackendAddress = "127.0.0.1"
	defaultResyncInterval = 30 * time.Second
	defaultLogLevel       = "info"
	defaultLogFormat      = "text"

	defaultHTTPSAddr            = ":8443"
	defaultCertDir              = "/etc/interlock/certs"
	defaultTLSProfile           = "intermediate"
	defaultStateDir             = "/var/lib/interlock"
	defaultReloadQuiet          = 100 * time.Millisecond
	defaultReloadMaxWait        = time.Second
	defaultNginxBinary          = "nginx"
	defaultNginxTarget          = NginxLocal
	defaultNginxDelivery        = NginxCopy
	defaultNginxContainerConfig = "/etc/nginx/nginx.conf"
	defaultHAProxyBinary        = "haproxy"
	defaultStatsAddr            = "127.0.0.1:8404"
	defaultDrainTimeout         = 30 * time.Second
)

// The values of Config.NginxTarget and Config.HAProxyTarget.
const (
	TargetLocal      = "local"
	TargetContainers = "containers"
)

// The values of Config.NginxTarget (as before HAProxyTarget) and
// Config.NginxDelivery.
const (
	NginxLocal      = TargetLocal
	NginxContainers = TargetContainers
	NginxCopy       = "copy"
	NginxVolume     = "volume"
)

// MinResyncInterval is the smallest ResyncInterval Validate accepts.
const MinResyncInterval = time.Second

// MinDrainTimeout is the smallest DrainTimeout Validate accepts.
const MinDrainTimeout = time.Second

// The values of Config.Proxy.
const (
	ProxyBuiltin = "builtin"
	ProxyNginx   = "nginx"
	ProxyHAProxy = "haproxy"
)

// Default returns the configuration used when nothing else is said. It is
// valid, and it is what Load returns for no flags and an empty environment.
func Default() Config {
	return Config{
		DockerHost:     defaultDockerHost,
		Proxy:          defaultProxy,
		HTTPAddr:       defaultHTTPAddr,
		APIAddr:        defaultAPIAddr,
		BackendAddress: defaultBackendAddress,
		ResyncInterval: defaultResyncInterval,
		LogLevel:       defaultLogLevel,
		LogFormat:      defaultLogFormat,

		HTTPSAddr:            defaultHTTPSAddr,
		CertDir:              defaultCertDir,
		TLSProfile:           defaultTLSProfile,
		StateDir:             defaultStateDir,
		ReloadQuiet:          defaultReloadQuiet,
		ReloadMaxWait:        defaultReloadMaxWait,
		NginxBinary:          defaultNginxBinary,
		NginxTarget:          defaultNginxTarget,
		NginxDelivery:        defaultNginxDelivery,
		NginxContainerConfig: defaultNginxContainerConfig,
		HAProxyTarget:        TargetLocal,
		HAProxyBinary:        defaultHAProxyBinary,
		StatsAddr:            defaultStatsAddr,
		DrainTimeout:         defaultDrainTimeout,

		AccessLogFormat:         defaultAccessLogFormat,
		BuiltinEngine:           EngineFastHTTP,
		ClientReadHeaderTimeout: defaultClientReadHeaderTimeout,
		ClientIdleTimeout:       defaultClientIdleTimeout,
		BackendConnectTimeout:   defaultBackendConnectTimeout,
		BackendIdleTimeout:      defaultBackendIdleTimeout,
		MaxHeaderBytes:          defaultMaxHeaderBytes,

		ACMEHosts:      defaultACMEHosts,
		ACMECA:         defaultACMECA,
		ACMEChallenges: defaultACMEChallenges,

		ACMEChallengeAddr: defaultACMEChallengeAddr,

		Role:     defaultRole,
		FeedAddr: defaultFeedAddr,
	}
}

// String is a one-line summary for the start-up log, every setting as
// key=value with TOML key names, in a fixed order. Nothing in Config is
// secret today (TLS paths are shown, never file contents); a secret added
// later must be redacted here and in LogValue.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("config=")
	b.WriteString(strconv.Quote(c.File))
	for _, s := range settings {
		b.WriteByte(' ')
		b.WriteString(s.key())
		b.WriteByte('=')
		b.WriteString(s.format(&c))
	}
	return b.String()
}

// LogValue makes a Config log as a group of its settings under their TOML
// key names (slog.LogValuer), with the same redaction rules as String.
func (c Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(settings)+1)
	attrs = append(attrs, slog.String("config", c.File))
	for _, s := range settings {
		attrs = append(attrs, s.attr(&c))
	}
	return slog.GroupValue(attrs...)
}

// DockerHosts is DockerHost as a list: the endpoint, or each manager of the
// comma-separated list in order.
func (c Config) DockerHosts() []string {
	var out []string
	for _, h := range strings.Split(c.DockerHost, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}
