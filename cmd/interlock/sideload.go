package main

import (
	"fmt"
	"strings"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/docker"
)

// The side-loaded proxy containers (nginx or haproxy with target
// containers) are found, fed and signalled through the engine they run
// on. That is the watched engine unless --proxy-docker-host names
// another: a Swarm manager lists only its own node's containers, so an
// Interlock on a proxy worker that watches a manager finds the nginx
// beside it only through the worker's own engine. That engine is watched
// by a second docker.Source whose snapshots only tell the Sideload which
// proxy containers run; they never reach discovery.

// proxyContainerTargets reports whether cfg drives side-loaded proxy
// containers.
func proxyContainerTargets(cfg config.Config) bool {
	switch cfg.Proxy {
	case config.ProxyNginx:
		return cfg.NginxTarget == config.NginxContainers
	case config.ProxyHAProxy:
		return cfg.HAProxyTarget == config.TargetContainers
	}
	return false
}

// sideloadWarning is the start-up warning for side-loaded proxy containers
// reached through the first of several --docker-host endpoints: an engine
// signals and copies into its own containers only, so the source's failover
// to another manager cannot take them along, and the proxy's engine must be
// named. "" when there is nothing to say.
func sideloadWarning(cfg config.Config) string {
	if !proxyContainerTargets(cfg) || cfg.ProxyDockerHost != "" || len(cfg.DockerHosts()) < 2 {
		return ""
	}
	return fmt.Sprintf("--docker-host lists %d endpoints, and the %s containers are reached through the first, %s, which can signal only its own containers and is not followed when the watch fails over: set --proxy-docker-host to the engine the proxy containers run on (on a proxy node: unix:///var/run/docker.sock)",
		len(cfg.DockerHosts()), cfg.Proxy, cfg.DockerHosts()[0])
}

// proxyEndpoint is the engine of --proxy-docker-host; ok is false when it
// is unset (the proxy containers run on the watched engine). A tcp://
// endpoint takes the TLS settings of --docker-host (--tls-*,
// DOCKER_CERT_PATH); a local socket takes none.
func proxyEndpoint(cfg config.Config) (e docker.Endpoint, ok bool) {
	if cfg.ProxyDockerHost == "" {
		return docker.Endpoint{}, false
	}
	e = docker.Endpoint{Host: cfg.ProxyDockerHost}
	if strings.HasPrefix(cfg.ProxyDockerHost, "tcp://") {
		e.CA, e.Cert, e.Key, e.Verify = cfg.TLSCA, cfg.TLSCert, cfg.TLSKey, cfg.TLSVerify
	}
	return e, true
}

// proxyContainersStatus reads side (and, with --proxy-docker-host, the
// source that watches its engine; nil otherwise) for /api/status and
// /readyz.
func proxyContainersStatus(side *docker.Sideload, source *docker.Source) func() api.ProxyContainers {
	return func() api.ProxyContainers {
		st := side.Stats()
		pc := api.ProxyContainers{Label: st.Label, Host: st.Host, Targets: st.Targets, Pushes: st.Pushes, Signals: st.Signals, LastError: st.LastError}
		if source != nil {
			ds := source.Status()
			pc.Docker = &ds
		}
		return pc
	}
}
