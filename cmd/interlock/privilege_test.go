package main

import (
	"strings"
	"testing"

	"github.com/interlock-proxy/interlock/internal/config"
)

func TestSocketWarning(t *testing.T) {
	for _, tc := range []struct {
		name        string
		change      func(*config.Config)
		inContainer bool
		warn        bool
	}{
		{"on the host", func(*config.Config) {}, false, false},
		{"in a container with the socket, serving every address", func(*config.Config) {}, true, true},
		{"the socket at /run/docker.sock", func(c *config.Config) { c.DockerHost = "unix:///run/docker.sock" }, true, true},
		{"serving loopback only", func(c *config.Config) { c.HTTPAddr, c.HTTPSAddr = "127.0.0.1:8080", "[::1]:8443" }, true, false},
		{"HTTPS beyond loopback", func(c *config.Config) { c.HTTPAddr, c.HTTPSAddr = "127.0.0.1:8080", ":443" }, true, true},
		{"a read-only socket proxy elsewhere", func(c *config.Config) { c.DockerHost = "unix:///run/interlock/docker-ro.sock" }, true, false},
		{"a manager over TLS", func(c *config.Config) { c.DockerHost = "tcp://10.0.0.1:2376" }, true, false},
		{"a side-loaded nginx faces the internet", func(c *config.Config) {
			c.Proxy, c.NginxTarget = config.ProxyNginx, config.NginxContainers
		}, true, false},
		{"a supervised haproxy in the same container", func(c *config.Config) { c.Proxy = config.ProxyHAProxy }, true, true},
		{"an edge (no Docker access at all)", func(c *config.Config) { c.Role = config.RoleEdge }, true, false},
		{"a controller (no proxy)", func(c *config.Config) { c.Role = config.RoleController }, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.change(&cfg)
			got := socketWarning(cfg, tc.inContainer)
			if (got != "") != tc.warn {
				t.Fatalf("warning %q, want one: %v", got, tc.warn)
			}
			if tc.warn && !strings.Contains(got, "examples/socket-proxy") {
				t.Errorf("warning %q does not say what to do", got)
			}
		})
	}
}
