package haproxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// CheckResult is what CheckTemplate did.
type CheckResult struct {
	// Hosts, Backends and Bytes describe the rendered sample.
	Hosts, Backends, Bytes int
	// Validated is true when haproxy -c accepted it.
	Validated bool
}

// SampleTable is a table that uses every feature of the view: aliases,
// nested context roots, a rewrite, websocket endpoints, every balance
// algorithm, backend options, a health check, TLS with the default and a
// named certificate, an ssl_only redirect, backends over TLS with and
// without verification, a tcp route, a route without backends, a default
// host, a redirecting host, a sticky cookie and SNI passthrough.
func SampleTable() routing.Table {
	b := func(addrs ...string) []routing.Backend {
		var out []routing.Backend
		for _, a := range addrs {
			out = append(out, routing.Backend{Address: a, Name: "sample"})
		}
		return out
	}
	t := routing.Table{Hosts: []routing.Host{
		{Name: "web.example.com", Aliases: []string{"www.example.com"}, Default: true, Routes: []routing.Route{
			{Path: "/", Backends: b("127.0.0.1:32768", "127.0.0.1:32769"),
				HealthCheck: &routing.HealthCheck{Path: "/healthz", Interval: 2 * time.Second}},
			{Path: "/api", StripPath: true, Balance: routing.LeastConn, WebSocketPaths: []string{"/api/ws"},
				BackendOptions: []string{"forwardfor", "http-server-close", "redispatch"}, Backends: b("127.0.0.1:32770")},
			{Path: "/api/v2", Balance: routing.Random, Backends: b("[::1]:32771")},
			{Path: "/empty"},
		}},
		{Name: "sticky.example.com", Routes: []routing.Route{{Path: "/", Balance: routing.Source, StickyCookie: "SID", Backends: b("127.0.0.1:32772", "127.0.0.1:32776")}}},
		{Name: "old.example.com", RedirectTo: "https://web.example.com"},
		{Name: "secure.example.com", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{
			{Path: "/", BackendTLS: &routing.BackendTLS{Verify: true}, Backends: b("127.0.0.1:32773")},
		}},
		{Name: "named.example.com", TLS: &routing.TLS{CertFile: "named/cert.pem", KeyFile: "named/key.pem"}, Routes: []routing.Route{
			{Path: "/", BackendTLS: &routing.BackendTLS{Verify: false}, Backends: b("127.0.0.1:32774")},
		}},
		{Name: "pass.example.com", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{
			{Path: "/", Backends: b("127.0.0.1:32777")},
		}},
		{Name: "db.example.com", Routes: []routing.Route{
			{Path: "/", Protocol: routing.TCP, Balance: routing.LeastConn, Backends: b("127.0.0.1:32775")},
		}},
	}}
	t.Normalize()
	return t
}

// CheckTemplate renders SampleTable with tmpl, in a scratch directory with
// certificates of its own, and runs bin -c on the result when bin is not
// "". A render or validation failure is the error. It is `interlock check`
// for a --template of the haproxy driver.
func CheckTemplate(ctx context.Context, tmpl *Template, bin string) (CheckResult, error) {
	dir, err := os.MkdirTemp("", "interlock-haproxy-check-")
	if err != nil {
		return CheckResult{}, err
	}
	defer os.RemoveAll(dir)
	certDir := filepath.Join(dir, "certs")
	if err := tlsconf.WriteSelfSigned(filepath.Join(certDir, "named"), "named.example.com"); err != nil {
		return CheckResult{}, err
	}
	profile, _ := tlsconf.Lookup(tlsconf.Default)
	state := filepath.Join(dir, "state")
	opts := Options{
		Template: tmpl, HTTPAddr: "127.0.0.1:8080", HTTPSAddr: "127.0.0.1:8443", TCPAddr: "127.0.0.1:8444",
		StatsAddr: "127.0.0.1:8404", CertDir: certDir, Profile: profile, StateDir: state, Binary: bin,
	}
	d, err := New(opts)
	if err != nil {
		return CheckResult{}, err
	}
	sample := SampleTable()
	conf, view, err := d.Render(sample)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Hosts: len(view.Hosts) + len(view.TCPHosts), Backends: len(view.Backends), Bytes: len(conf)}
	if bin == "" {
		return res, nil
	}
	if err := d.prepare(view); err != nil {
		return res, err
	}
	cand := filepath.Join(state, "check.cfg")
	if err := atomicfile.WriteSynced(cand, conf, 0o600); err != nil {
		return res, err
	}
	if err := Validate(ctx, bin, cand); err != nil {
		return res, fmt.Errorf("template %s: %w", tmpl.Source, err)
	}
	res.Validated = true
	return res, nil
}
