package main

import (
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/interlock-proxy/interlock/internal/config"
)

// engineSockets are the paths where Docker puts its own API socket. A
// socket elsewhere is taken to be a restricted one (a read-only socket
// proxy, examples/socket-proxy).
var engineSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// socketWarning says why this Interlock should not run as it does, or "":
// it holds the engine's own socket, mounted into a container (inContainer)
// whose proxy listens beyond loopback. Whoever takes over that internet-
// facing process then has the engine, which is root on the host.
func socketWarning(cfg config.Config, inContainer bool) string {
	// An edge has no Docker access at all (config refuses it); a
	// controller runs no proxy: its listeners, the feed's mutual TLS and
	// the API, face the edges and the operator, not the internet.
	if !inContainer || cfg.Role == config.RoleEdge || cfg.Role == config.RoleController {
		return ""
	}
	socket := ""
	for _, h := range cfg.DockerHosts() {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			for _, s := range engineSockets {
				if p == s {
					socket = h
				}
			}
		}
	}
	if socket == "" {
		return ""
	}
	// The listeners of this process: the built-in proxy's, or a
	// supervised nginx's or HAProxy's in the same container. A side-loaded
	// proxy faces the internet from a container of its own.
	var listen []string
	switch {
	case cfg.Proxy == config.ProxyBuiltin:
		listen = []string{cfg.HTTPAddr, cfg.HTTPSAddr}
	case cfg.Proxy == config.ProxyNginx && cfg.NginxTarget != config.NginxContainers && cfg.NginxPidFile == "",
		cfg.Proxy == config.ProxyHAProxy && cfg.HAProxyTarget != config.TargetContainers:
		listen = []string{cfg.HTTPAddr, cfg.HTTPSAddr}
	}
	for _, addr := range listen {
		if !loopbackOnly(addr) {
			return "the Docker engine's socket (" + socket + ") is mounted into this container, whose proxy listens on " + addr +
				": whoever takes over the proxy has the engine, which is root on the host. Give Interlock a read-only socket proxy " +
				"(examples/socket-proxy), or let a side-loaded proxy container face the internet (--proxy nginx or haproxy with containers as the target)"
		}
	}
	return ""
}

// loopbackOnly reports whether addr (host:port) listens on a loopback
// address only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// inContainer reports whether this process runs in a container (Docker's
// and Podman's marker files).
func inContainer() bool {
	for _, p := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}
