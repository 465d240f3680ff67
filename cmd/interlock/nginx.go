package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"reflect"
	"time"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/proxy/nginx"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
	"github.com/moby/moby/client"
)

// tlsProfile resolves the configured TLS profile with its overrides
// (validated by config already).
func tlsProfile(cfg config.Config) (tlsconf.Profile, error) {
	p, err := tlsconf.Lookup(cfg.TLSProfile)
	if err != nil {
		return p, err
	}
	if cfg.TLSCiphers != "" {
		if p, err = p.WithCiphers(cfg.TLSCiphers); err != nil {
			return p, err
		}
	}
	if cfg.TLSProtocols != "" {
		if p, err = p.WithProtocols(cfg.TLSProtocols); err != nil {
			return p, err
		}
	}
	return p, nil
}

// lookBinary finds an executable in PATH or, for a bare name, in
// /usr/sbin: Debian puts nginx and haproxy there, and a non-root PATH often
// lacks it.
func lookBinary(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	if filepath.Base(name) == name {
		if p, err := exec.LookPath(filepath.Join("/usr/sbin", name)); err == nil {
			return p, true
		}
	}
	return "", false
}

// proxyBinary finds the executable name of the proxy (nginx, haproxy), in
// PATH or /usr/sbin; the error names its --PROXY-binary flag.
func proxyBinary(proxy, name string) (string, error) {
	if p, ok := lookBinary(name); ok {
		return p, nil
	}
	return "", fmt.Errorf("--%s-binary %s: not found in PATH or /usr/sbin; install %s (Debian: apt-get install %s) or name the executable", proxy, name, proxy, proxy)
}

// reportTemplateCheck prints the outcome of a --template check: validated
// by bin's check (checkFlag, -t or -c), or only rendered when the binary
// is missing (binErr).
func reportTemplateCheck(stdout io.Writer, path string, hosts, bytes int, validated bool, bin, checkFlag string, binErr error) {
	switch {
	case validated:
		fmt.Fprintf(stdout, "%s: ok (sample of %d hosts rendered, %d bytes; %s %s accepted it)\n", path, hosts, bytes, bin, checkFlag)
	case binErr != nil:
		fmt.Fprintf(stdout, "%s: rendered (sample of %d hosts, %d bytes); not validated: %v\n", path, hosts, bytes, binErr)
	}
}

// newNginx builds the nginx driver for cfg and, for container targets, the
// Docker side (nil otherwise). needBinary is false for render, which only
// renders.
func newNginx(cfg config.Config, cli *client.Client, log *slog.Logger, needBinary bool, certs *driverCerts) (*nginx.Driver, *docker.Sideload, error) {
	tmpl, err := nginx.LoadTemplate(cfg.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("--template: %w", err)
	}
	profile, err := tlsProfile(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-profile: %w", err)
	}
	stateDir, err := filepath.Abs(filepath.Join(cfg.StateDir, "nginx"))
	if err != nil {
		return nil, nil, fmt.Errorf("--state-dir: %w", err)
	}
	certDir, err := filepath.Abs(cfg.CertDir)
	if err != nil {
		return nil, nil, fmt.Errorf("--cert-dir: %w", err)
	}
	edge, err := newDriverEdge(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts := nginx.Options{
		Template: tmpl, HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr, CertDir: certDir, Profile: profile,
		StateDir: stateDir, Binary: cfg.NginxBinary, ContainerConfigPath: cfg.NginxContainerConfig, Logger: log,
		Edge: nginx.Edge{
			ProxyProtocolTrusted: edge.proxyTrusted, ForwardedTrusted: edge.forwardedTrusted,
			AccessLog: edge.accessLog, AccessLogFormat: edge.accessLogFormat,
			ClientReadHeaderTimeout: edge.clientReadHeader, ClientReadTimeout: edge.clientRead, ClientIdleTimeout: edge.clientIdle,
			BackendConnectTimeout: edge.backendConnect, BackendResponseHeaderTimeout: edge.backendResponseHeader, BackendIdleTimeout: edge.backendIdle,
			MaxHeaderBytes: edge.maxHeader, MaxBodyBytes: edge.maxBody,
		},
	}
	if opts.Edge.AccessLog != "" && opts.Edge.AccessLog != nginx.AccessLogStdout {
		// nginx resolves a relative path against its prefix, the state
		// directory: name the file the user meant.
		if opts.Edge.AccessLog, err = filepath.Abs(opts.Edge.AccessLog); err != nil {
			return nil, nil, fmt.Errorf("--access-log: %w", err)
		}
	}
	if cfg.NginxConfig != "" {
		if opts.ConfigPath, err = filepath.Abs(cfg.NginxConfig); err != nil {
			return nil, nil, fmt.Errorf("--nginx-config: %w", err)
		}
	}
	var side *docker.Sideload
	switch {
	case cfg.NginxTarget == config.NginxContainers:
		sopts := docker.SideloadOptions{
			Label: "interlock.ext.name", Value: cfg.ProxyContainerLabel,
			Ready: "nginx: worker process", Logger: log,
		}
		opts.Mode = nginx.Volume
		if cfg.NginxDelivery == config.NginxCopy {
			opts.Mode = nginx.Copy
			sopts.Copy = true
			sopts.Stage = cfg.NginxContainerConfig
			// Validated inside each container, by the nginx that will run it.
			sopts.Check = []string{"nginx", "-t", "-q", "-c", "{}"}
		}
		side = docker.NewSideload(cli, sopts)
		opts.Containers = side
	case cfg.NginxPidFile != "":
		opts.Mode = nginx.PidFile
		if opts.PidFile, err = filepath.Abs(cfg.NginxPidFile); err != nil {
			return nil, nil, fmt.Errorf("--nginx-pid-file: %w", err)
		}
	default:
		opts.Mode = nginx.Supervise
	}
	if needBinary && opts.Mode != nginx.Copy {
		if opts.Binary, err = proxyBinary("nginx", cfg.NginxBinary); err != nil {
			return nil, nil, err
		}
	}
	if certs != nil {
		opts.CertCheck = certs.verdicts
		if certs.acme != nil { // --acme-hosts: certificates exported by Interlock, HTTP-01 passed to it
			opts.ACME, opts.ACMEChallenge = certs.acme, cfg.ACMEChallengeAddr
		}
	}
	d, err := nginx.New(opts)
	if err != nil {
		return nil, nil, err
	}
	if w := profile.Warning(); w != "" {
		log.Warn(w)
	}
	if len(edge.proxyTrusted) > 0 {
		log.Warn("nginx: PROXY protocol on the HTTP and HTTPS listeners; nginx requires its header on every connection to them "+
			"(a client or health check that sends none is cut off), and believes its address only from the trusted networks",
			"trusted", cfg.ProxyProtocolTrustedIPs)
	}
	if opts.Edge.AccessLog != "" {
		log.Info("nginx writes the access log", "path", opts.Edge.AccessLog, "format", cfg.AccessLogFormat)
	}
	edge.warnCustomTemplate(cfg, log)
	return d, side, nil
}

// driverEdge are the edge settings (internal/config/edge.go) as the nginx
// and haproxy drivers take them. They are the built-in proxy's settings,
// and so are their defaults: a setting left at its default keeps the
// driver's own value (nginx's and HAProxy's timeouts, HAProxy's buffer
// instead of the built-in proxy's 1 MiB header limit), and only a value
// set to something else is rendered. internal/config/README.md says so
// per setting.
type driverEdge struct {
	proxyTrusted, forwardedTrusted []netip.Prefix
	accessLog, accessLogFormat     string
	clientReadHeader, clientRead   time.Duration
	clientIdle, backendConnect     time.Duration
	backendResponseHeader          time.Duration
	backendIdle                    time.Duration
	maxHeader, maxBody             int64
}

// set reports whether any edge setting is set.
func (e driverEdge) set() bool {
	return !reflect.DeepEqual(e, driverEdge{accessLogFormat: e.accessLogFormat}) || e.accessLog != ""
}

// warnCustomTemplate says that a custom template renders the edge
// settings only if it writes .Edge (one written before them does not).
func (e driverEdge) warnCustomTemplate(cfg config.Config, log *slog.Logger) {
	if cfg.Template != "" && e.set() {
		log.Warn("--template: edge settings are set (PROXY protocol, forwarded headers, access log, timeouts or limits); "+
			"a custom template renders them only where it writes .Edge, as the built-in one does", "template", cfg.Template)
	}
}

// newDriverEdge parses cfg's edge settings for nginx or haproxy. Config
// has validated them; the drivers check them again.
func newDriverEdge(cfg config.Config) (driverEdge, error) {
	var e driverEdge
	var err error
	if e.proxyTrusted, err = config.ParseCIDRs(cfg.ProxyProtocolTrustedIPs); err != nil {
		return e, fmt.Errorf("--proxy-protocol-trusted-ips: %w", err)
	}
	if e.forwardedTrusted, err = config.ParseCIDRs(cfg.ForwardedHeadersTrustedIPs); err != nil {
		return e, fmt.Errorf("--forwarded-headers-trusted-ips: %w", err)
	}
	def := config.Default()
	set := func(v, d time.Duration) time.Duration {
		if v == d {
			return 0
		}
		return v
	}
	e.accessLog, e.accessLogFormat = cfg.AccessLog, cfg.AccessLogFormat
	e.clientReadHeader = set(cfg.ClientReadHeaderTimeout, def.ClientReadHeaderTimeout)
	e.clientRead = set(cfg.ClientReadTimeout, def.ClientReadTimeout)
	e.clientIdle = set(cfg.ClientIdleTimeout, def.ClientIdleTimeout)
	e.backendConnect = set(cfg.BackendConnectTimeout, def.BackendConnectTimeout)
	e.backendResponseHeader = set(cfg.BackendResponseHeaderTimeout, def.BackendResponseHeaderTimeout)
	e.backendIdle = set(cfg.BackendIdleTimeout, def.BackendIdleTimeout)
	if cfg.MaxHeaderBytes != def.MaxHeaderBytes {
		e.maxHeader = int64(cfg.MaxHeaderBytes)
	}
	if cfg.MaxBodyBytes != def.MaxBodyBytes {
		e.maxBody = int64(cfg.MaxBodyBytes)
	}
	return e, nil
}

// checkTemplate renders a sample table with the template at path and, when
// nginx is installed, validates the result with nginx -t.
func checkTemplate(ctx context.Context, path string, stdout io.Writer) error {
	tmpl, err := nginx.LoadTemplate(path)
	if err != nil {
		return err
	}
	bin, binErr := proxyBinary("nginx", "nginx")
	res, err := nginx.CheckTemplate(ctx, tmpl, bin)
	if err != nil {
		return err
	}
	reportTemplateCheck(stdout, path, res.Hosts, res.Bytes, res.Validated, bin, "-t", binErr)
	return nil
}
