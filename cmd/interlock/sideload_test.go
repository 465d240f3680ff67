package main

import (
	"strings"
	"testing"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/docker"
)

// TestProxyEndpoint: --proxy-docker-host takes the TLS settings of
// --docker-host for a tcp:// engine and none for a local socket (TLS on
// a unix socket would make the client speak HTTPS to it).
func TestProxyEndpoint(t *testing.T) {
	tls := func(c config.Config) config.Config {
		c.TLSCA, c.TLSCert, c.TLSKey, c.TLSVerify = "/certs/ca.pem", "/certs/cert.pem", "/certs/key.pem", true
		return c
	}
	def := config.Default()
	def.DockerHost = "tcp://manager:2376"
	for _, tc := range []struct {
		name   string
		cfg    config.Config
		want   docker.Endpoint
		wantOK bool
	}{
		{name: "unset", cfg: tls(def)},
		{name: "node socket", cfg: func() config.Config { c := tls(def); c.ProxyDockerHost = "unix:///var/run/docker.sock"; return c }(),
			want: docker.Endpoint{Host: "unix:///var/run/docker.sock"}, wantOK: true},
		{name: "tcp engine", cfg: func() config.Config { c := tls(def); c.ProxyDockerHost = "tcp://10.0.0.21:2376"; return c }(),
			want: docker.Endpoint{Host: "tcp://10.0.0.21:2376", CA: "/certs/ca.pem", Cert: "/certs/cert.pem", Key: "/certs/key.pem", Verify: true}, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := proxyEndpoint(tc.cfg)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("proxyEndpoint = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
	for _, tc := range []struct {
		proxy, nginx, haproxy string
		want                  bool
	}{
		{proxy: config.ProxyBuiltin, nginx: config.NginxContainers, haproxy: config.TargetContainers, want: false},
		{proxy: config.ProxyNginx, nginx: config.NginxContainers, haproxy: config.TargetLocal, want: true},
		{proxy: config.ProxyNginx, nginx: config.NginxLocal, haproxy: config.TargetContainers, want: false},
		{proxy: config.ProxyHAProxy, nginx: config.NginxLocal, haproxy: config.TargetContainers, want: true},
	} {
		c := config.Default()
		c.Proxy, c.NginxTarget, c.HAProxyTarget = tc.proxy, tc.nginx, tc.haproxy
		if got := proxyContainerTargets(c); got != tc.want {
			t.Errorf("proxyContainerTargets(proxy %s, nginx %s, haproxy %s) = %v, want %v", tc.proxy, tc.nginx, tc.haproxy, got, tc.want)
		}
	}
}

// TestSideloadWarning: proxy containers reached through the first of
// several managers are named in a warning, which says what to set.
func TestSideloadWarning(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dockerHost  string
		proxyDocker string
		proxy       string
		want        string // a part of the warning; "" for none
	}{
		{name: "several managers, nginx containers", dockerHost: "tcp://m1:2376,tcp://m2:2376", proxy: config.ProxyNginx,
			want: "the nginx containers are reached through the first, tcp://m1:2376, which can signal only its own containers and is not followed when the watch fails over: set --proxy-docker-host"},
		{name: "several managers, haproxy containers", dockerHost: "tcp://m1:2376,tcp://m2:2376", proxy: config.ProxyHAProxy, want: "the haproxy containers"},
		{name: "proxy engine named", dockerHost: "tcp://m1:2376,tcp://m2:2376", proxyDocker: "unix:///var/run/docker.sock", proxy: config.ProxyNginx},
		{name: "one endpoint", dockerHost: "tcp://m1:2376", proxy: config.ProxyNginx},
		{name: "built-in proxy", dockerHost: "tcp://m1:2376,tcp://m2:2376", proxy: config.ProxyBuiltin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.DockerHost, c.ProxyDockerHost, c.Proxy = tc.dockerHost, tc.proxyDocker, tc.proxy
			c.NginxTarget, c.HAProxyTarget = config.NginxContainers, config.TargetContainers
			got := sideloadWarning(c)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("sideloadWarning = %q, want it to contain %q", got, tc.want)
			}
		})
	}
}
