package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/proxy/haproxy"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// haproxyBinary finds the haproxy executable, in PATH or /usr/sbin.
func haproxyBinary(name string) (string, error) {
	if p, ok := lookBinary(name); ok {
		return p, nil
	}
	return "", fmt.Errorf("--haproxy-binary %s: not found in PATH or /usr/sbin; install haproxy (Debian: apt-get install haproxy) or name the executable", name)
}

// newHAProxy builds the haproxy driver for cfg. It runs HAProxy as
// Interlock's supervised child; side-loaded HAProxy containers are not
// supported yet (there is no setting that asks for them). needBinary is
// false for render, which only renders: New has no side effects.
func newHAProxy(cfg config.Config, log *slog.Logger, needBinary bool) (*haproxy.Driver, error) {
	tmpl, err := haproxy.LoadTemplate(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("--template: %w", err)
	}
	profile, err := tlsProfile(cfg)
	if err != nil {
		return nil, fmt.Errorf("--tls-profile: %w", err)
	}
	stateDir, err := filepath.Abs(filepath.Join(cfg.StateDir, "haproxy"))
	if err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	certDir, err := filepath.Abs(cfg.CertDir)
	if err != nil {
		return nil, fmt.Errorf("--cert-dir: %w", err)
	}
	opts := haproxy.Options{
		Template: tmpl, HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr, TCPAddr: cfg.TCPAddr, StatsAddr: cfg.StatsAddr,
		CertDir: certDir, Profile: profile, StateDir: stateDir, Binary: cfg.HAProxyBinary,
		Mode: haproxy.Supervise, DrainTimeout: cfg.DrainTimeout, Logger: log,
	}
	if cfg.HAProxyConfig != "" {
		if opts.ConfigPath, err = filepath.Abs(cfg.HAProxyConfig); err != nil {
			return nil, fmt.Errorf("--haproxy-config: %w", err)
		}
	}
	if needBinary {
		if opts.Binary, err = haproxyBinary(cfg.HAProxyBinary); err != nil {
			return nil, err
		}
	}
	d, err := haproxy.New(opts)
	if err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	// Fail now, not at the first event, when a setting cannot reach the
	// file (an address HAProxy cannot bind, a stats address off loopback)
	// or the template fails on an empty table.
	if _, _, err := d.Render(routing.Table{}); err != nil {
		return nil, err
	}
	if w := profile.Warning(); w != "" {
		log.Warn(w)
	}
	return d, nil
}

// checkHAProxyTemplate renders a sample table with the haproxy template at
// path and, when haproxy is installed, validates the result with
// haproxy -c.
func checkHAProxyTemplate(ctx context.Context, path string, stdout io.Writer) error {
	tmpl, err := haproxy.LoadTemplate(path)
	if err != nil {
		return err
	}
	bin, binErr := haproxyBinary("haproxy")
	res, err := haproxy.CheckTemplate(ctx, tmpl, bin)
	if err != nil {
		return err
	}
	switch {
	case res.Validated:
		fmt.Fprintf(stdout, "%s: ok (sample of %d hosts rendered, %d bytes; %s -c accepted it)\n", path, res.Hosts, res.Bytes, bin)
	case binErr != nil:
		fmt.Fprintf(stdout, "%s: rendered (sample of %d hosts, %d bytes); not validated: %v\n", path, res.Hosts, res.Bytes, binErr)
	}
	return nil
}
