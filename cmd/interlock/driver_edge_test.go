package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The edge settings reach the nginx and haproxy drivers: set, they are
// rendered; left at their defaults (the built-in proxy's), the drivers
// keep their own file.

func edgeConfig(t *testing.T, proxy string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Proxy = proxy
	cfg.StateDir = t.TempDir()
	cfg.CertDir = t.TempDir()
	cfg.HTTPAddr, cfg.HTTPSAddr = "127.0.0.1:8080", "127.0.0.1:8443"
	return cfg
}

// setEdge sets every edge setting to something other than its default.
func setEdge(cfg *config.Config) {
	cfg.ProxyProtocolTrustedIPs = "10.0.0.0/8, fd00::/8"
	cfg.ForwardedHeadersTrustedIPs = "192.168.1.10"
	cfg.AccessLogFormat = config.AccessLogJSON
	cfg.ClientReadHeaderTimeout = 5 * time.Second
	cfg.ClientReadTimeout = 40 * time.Second
	cfg.ClientIdleTimeout = 90 * time.Second
	cfg.BackendConnectTimeout = 1500 * time.Millisecond
	cfg.BackendResponseHeaderTimeout = 25 * time.Second
	cfg.BackendIdleTimeout = 15 * time.Second
	cfg.MaxHeaderBytes = 64 << 10
	cfg.MaxBodyBytes = 10 << 20
}

var edgeTable = func() routing.Table {
	t := routing.Table{Hosts: []routing.Host{{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:9000"}}}}}}}
	t.Normalize()
	return t
}()

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func renderNginx(t *testing.T, cfg config.Config) string {
	t.Helper()
	d, _, err := newNginx(cfg, nil, discard, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf, _, err := d.Render(edgeTable)
	if err != nil {
		t.Fatal(err)
	}
	return string(conf)
}

func renderHAProxy(t *testing.T, cfg config.Config) string {
	t.Helper()
	d, _, err := newHAProxy(cfg, nil, discard, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf, _, err := d.Render(edgeTable)
	if err != nil {
		t.Fatal(err)
	}
	return string(conf)
}

func wantLines(t *testing.T, conf string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(conf, l) {
			t.Errorf("the file has no %q:\n%s", l, conf)
		}
	}
}

func wantNoLines(t *testing.T, conf string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(conf, l) {
			t.Errorf("the file has %q, which only a set edge setting renders:\n%s", l, conf)
		}
	}
}

func TestNginxEdgeSettings(t *testing.T) {
	cfg := edgeConfig(t, config.ProxyNginx)
	dflt := renderNginx(t, cfg)
	wantLines(t, dflt, "access_log off;", "client_max_body_size 0;", "proxy_connect_timeout 1s;",
		"proxy_set_header X-Forwarded-For $remote_addr;", "listen 127.0.0.1:8080 default_server;")
	wantNoLines(t, dflt, "proxy_protocol", "set_real_ip_from", "geo ", "log_format", "client_header_timeout", "client_body_timeout",
		"keepalive_timeout", "large_client_header_buffers", "proxy_read_timeout", "error_page")

	setEdge(&cfg)
	dir := t.TempDir()
	t.Chdir(dir)
	cfg.AccessLog = "access.log" // relative: nginx gets it absolute
	wantLines(t, renderNginx(t, cfg),
		"listen 127.0.0.1:8080 proxy_protocol default_server;", "set_real_ip_from 10.0.0.0/8;", "set_real_ip_from fd00::/8;",
		"real_ip_header proxy_protocol;", "geo $interlock_forwarded_trusted {", "192.168.1.10/32 1;",
		"proxy_set_header X-Forwarded-For $interlock_x_forwarded_for;",
		"log_format interlock_json escape=json", `access_log "`+filepath.Join(dir, "access.log")+`" interlock_json;`,
		"client_header_timeout 5s;", "client_body_timeout 40s;", "keepalive_timeout 90s;", "proxy_connect_timeout 1500ms;",
		"proxy_read_timeout 25s;", "keepalive_timeout 15s;", "large_client_header_buffers 1 64k;", "client_max_body_size 10m;",
		"error_page 413 @interlock_body_too_large;", `set $interlock_route "web.test/";`)

	cfg.AccessLog = "-"
	wantLines(t, renderNginx(t, cfg), `access_log "/dev/stdout" interlock_json;`)
}

func TestHAProxyEdgeSettings(t *testing.T) {
	cfg := edgeConfig(t, config.ProxyHAProxy)
	dflt := renderHAProxy(t, cfg)
	wantLines(t, dflt, "timeout connect 1s\n", "timeout client 60s\n", "timeout server 60s\n", "timeout http-request 30s\n",
		"timeout http-keep-alive 10s\n", "    http-request del-header X-Forwarded-For\n", "    option forwardfor\n")
	wantNoLines(t, dflt, "expect-proxy", "interlock_forwarded_trusted", "log stdout", "log-format", "tune.bufsize", "deny_status",
		"pool-purge-delay", "if-none")

	setEdge(&cfg)
	cfg.AccessLog = "-"
	wantLines(t, renderHAProxy(t, cfg),
		"tcp-request connection expect-proxy layer4 if { src 10.0.0.0/8 fd00::/8 }",
		"acl interlock_forwarded_trusted src 192.168.1.10/32", "option forwardfor if-none",
		"log stdout format raw local0 info", `log-format "{\"time\"`, `error-log-format "{\"time\"`,
		"timeout connect 1500ms\n", "timeout client 40s\n", "timeout server 25s\n", "timeout http-request 5s\n", "timeout http-keep-alive 90s\n",
		"pool-purge-delay 15000", "tune.bufsize 75776", "deny_status 431", "if { req.hdrs,length gt 65536 }",
		"deny_status 413", "if { req.body_size gt 10485760 }", "http-request set-var(txn.interlock_route) str(web.test/)")

	// A file: HAProxy cannot write one, and says so at start.
	cfg.AccessLog = "/var/log/interlock/access.log"
	if _, _, err := newHAProxy(cfg, nil, discard, false, nil); err == nil ||
		!strings.Contains(err.Error(), "--access-log /var/log/interlock/access.log: HAProxy cannot write a log file itself") ||
		!strings.Contains(err.Error(), "--access-log -") {
		t.Fatalf("newHAProxy with a log file = %v, want a start-up error naming --access-log and what to use instead", err)
	}
}

// TestDriverEdgeAtDefaults: a setting given its default value counts as
// not set (the drivers keep their own); anything else is passed on as is.
func TestDriverEdgeAtDefaults(t *testing.T) {
	cfg := config.Default()
	e, err := newDriverEdge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, driverEdge{accessLogFormat: config.AccessLogCommon}) {
		t.Errorf("defaults: %+v, want nothing set", e)
	}
	cfg.ClientIdleTimeout = 0 // "no limit" for the built-in proxy: the driver's own default
	cfg.BackendConnectTimeout = 2 * time.Second
	cfg.MaxBodyBytes = 1
	if e, _ = newDriverEdge(cfg); e.clientIdle != 0 || e.backendConnect != 2*time.Second || e.maxBody != 1 {
		t.Errorf("%+v", e)
	}
}
