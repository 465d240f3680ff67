package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"

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

// nginxBinary finds the nginx executable, in PATH or /usr/sbin.
func nginxBinary(name string) (string, error) {
	if p, ok := lookBinary(name); ok {
		return p, nil
	}
	return "", fmt.Errorf("--nginx-binary %s: not found in PATH or /usr/sbin; install nginx (Debian: apt-get install nginx) or name the executable", name)
}

// newNginx builds the nginx driver for cfg and, for container targets, the
// Docker side (nil otherwise). needBinary is false for render, which only
// renders.
func newNginx(cfg config.Config, cli *client.Client, log *slog.Logger, needBinary bool) (*nginx.Driver, *docker.Sideload, error) {
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
	opts := nginx.Options{
		Template: tmpl, HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr, CertDir: certDir, Profile: profile,
		StateDir: stateDir, Binary: cfg.NginxBinary, ContainerConfigPath: cfg.NginxContainerConfig, Logger: log,
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
		if opts.Binary, err = nginxBinary(cfg.NginxBinary); err != nil {
			return nil, nil, err
		}
	}
	d, err := nginx.New(opts)
	if err != nil {
		return nil, nil, err
	}
	if w := profile.Warning(); w != "" {
		log.Warn(w)
	}
	return d, side, nil
}

// checkTemplate renders a sample table with the template at path and, when
// nginx is installed, validates the result with nginx -t.
func checkTemplate(ctx context.Context, path string, stdout io.Writer) error {
	tmpl, err := nginx.LoadTemplate(path)
	if err != nil {
		return err
	}
	bin, binErr := nginxBinary("nginx")
	res, err := nginx.CheckTemplate(ctx, tmpl, bin)
	if err != nil {
		return err
	}
	switch {
	case res.Validated:
		fmt.Fprintf(stdout, "%s: ok (sample of %d hosts rendered, %d bytes; %s -t accepted it)\n", path, res.Hosts, res.Bytes, bin)
	case binErr != nil:
		fmt.Fprintf(stdout, "%s: rendered (sample of %d hosts, %d bytes); not validated: %v\n", path, res.Hosts, res.Bytes, binErr)
	}
	return nil
}
