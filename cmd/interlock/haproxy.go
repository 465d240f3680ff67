package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/proxy/haproxy"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/moby/moby/client"
)

// newHAProxy builds the haproxy driver for cfg and, for container targets,
// the Docker side (nil otherwise). needBinary is false for render, which
// only renders: New has no side effects.
func newHAProxy(cfg config.Config, cli *client.Client, log *slog.Logger, needBinary bool, certs *driverCerts) (*haproxy.Driver, *docker.Sideload, error) {
	tmpl, err := haproxy.LoadTemplate(cfg.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("--template: %w", err)
	}
	profile, err := tlsProfile(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-profile: %w", err)
	}
	stateDir, err := filepath.Abs(filepath.Join(cfg.StateDir, "haproxy"))
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
	if edge.accessLog != "" && edge.accessLog != haproxy.AccessLogStdout {
		return nil, nil, fmt.Errorf("--access-log %s: HAProxy cannot write a log file itself (it logs to syslog or to its standard output); "+
			"with --proxy haproxy use --access-log - (HAProxy's standard output: Interlock's own, or the side-loaded containers' log), or leave it empty", edge.accessLog)
	}
	opts := haproxy.Options{
		Template: tmpl, HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr, TCPAddr: cfg.TCPAddr, StatsAddr: cfg.StatsAddr,
		CertDir: certDir, Profile: profile, StateDir: stateDir, Binary: cfg.HAProxyBinary,
		Mode: haproxy.Supervise, DrainTimeout: cfg.DrainTimeout, Logger: log,
		Edge: haproxy.Edge{
			ProxyProtocolTrusted: edge.proxyTrusted, ForwardedTrusted: edge.forwardedTrusted,
			AccessLog: edge.accessLog, AccessLogFormat: edge.accessLogFormat,
			ClientReadHeaderTimeout: edge.clientReadHeader, ClientReadTimeout: edge.clientRead, ClientIdleTimeout: edge.clientIdle,
			BackendConnectTimeout: edge.backendConnect, BackendResponseHeaderTimeout: edge.backendResponseHeader, BackendIdleTimeout: edge.backendIdle,
			MaxHeaderBytes: edge.maxHeader, MaxBodyBytes: edge.maxBody,
		},
	}
	var side *docker.Sideload
	if cfg.HAProxyTarget == config.TargetContainers {
		label := cfg.ProxyContainerLabel
		if label == "" {
			label = "haproxy"
		}
		// Sideload only finds the containers and signals them: they read
		// the file from the shared state directory, and the driver waits
		// for each one's new worker on its own admin socket.
		side = docker.NewSideload(cli, docker.SideloadOptions{Label: "interlock.ext.name", Value: label, Logger: log})
		opts.Mode, opts.Containers = haproxy.Volume, haproxyContainers{side}
	}
	if cfg.HAProxyConfig != "" {
		if opts.ConfigPath, err = filepath.Abs(cfg.HAProxyConfig); err != nil {
			return nil, nil, fmt.Errorf("--haproxy-config: %w", err)
		}
	}
	if needBinary {
		if opts.Binary, err = proxyBinary("haproxy", cfg.HAProxyBinary); err != nil {
			return nil, nil, err
		}
	}
	if certs != nil {
		opts.CertCheck = certs.verdicts
		if certs.acme != nil { // --acme-hosts: certificates exported by Interlock, HTTP-01 passed to it
			opts.ACME, opts.ACMEChallenge = certs.acme, cfg.ACMEChallengeAddr
		}
	}
	d, err := haproxy.New(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("--state-dir: %w", err)
	}
	// Fail now, not at the first event, when a setting cannot reach the
	// file (an address HAProxy cannot bind, a stats address off loopback)
	// or the template fails on an empty table.
	if _, _, err := d.Render(routing.Table{}); err != nil {
		return nil, nil, err
	}
	if w := profile.Warning(); w != "" {
		log.Warn(w)
	}
	if len(edge.proxyTrusted) > 0 {
		log.Info("haproxy: PROXY protocol required from the trusted networks on the HTTP and HTTPS listeners; others are read as they come",
			"trusted", cfg.ProxyProtocolTrustedIPs)
	}
	if edge.accessLog != "" {
		log.Info("haproxy writes the access log to its standard output", "format", cfg.AccessLogFormat)
	}
	edge.warnCustomTemplate(cfg, log)
	return d, side, nil
}

// haproxyContainers is the driver's view of the proxy containers.
type haproxyContainers struct{ side *docker.Sideload }

func (h haproxyContainers) Targets(ctx context.Context) ([]haproxy.Target, error) {
	ts, err := h.side.Targets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]haproxy.Target, len(ts))
	for i, t := range ts {
		out[i] = haproxy.Target{ID: t.ID, Name: t.Name, Hostname: t.Hostname}
	}
	return out, nil
}

func (h haproxyContainers) Signal(ctx context.Context, id, sig string) error {
	return h.side.Signal(ctx, id, sig)
}

// checkHAProxyTemplate renders a sample table with the haproxy template at
// path and, when haproxy is installed, validates the result with
// haproxy -c.
func checkHAProxyTemplate(ctx context.Context, path string, stdout io.Writer) error {
	tmpl, err := haproxy.LoadTemplate(path)
	if err != nil {
		return err
	}
	bin, binErr := proxyBinary("haproxy", "haproxy")
	res, err := haproxy.CheckTemplate(ctx, tmpl, bin)
	if err != nil {
		return err
	}
	reportTemplateCheck(stdout, path, res.Hosts, res.Bytes, res.Validated, bin, "-c", binErr)
	return nil
}
