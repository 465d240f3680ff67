package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// CheckResult is what CheckTemplate did.
type CheckResult struct {
	// Hosts and Bytes describe the rendered sample.
	Hosts, Bytes int
	// Validated is true when nginx -t accepted it.
	Validated bool
}

// SampleTable is a table that uses every feature of the view: aliases,
// nested context roots, a rewrite, websocket endpoints, every balance
// algorithm, TLS with the default and a named certificate, an ssl_only
// redirect, backends over TLS with and without verification, a route
// without backends, a default host, a redirecting host, a sticky
// cookie and SNI passthrough.
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
			{Path: "/", Backends: b("127.0.0.1:32768", "127.0.0.1:32769")},
			{Path: "/api", StripPath: true, Balance: routing.LeastConn, WebSocketPaths: []string{"/api/ws"}, Backends: b("127.0.0.1:32770")},
			{Path: "/api/v2", Balance: routing.Random, Backends: b("[::1]:32771")},
			{Path: "/empty"},
		}},
		{Name: "sticky.example.com", Routes: []routing.Route{{Path: "/", Balance: routing.Source, StickyCookie: "SID", Backends: b("127.0.0.1:32772", "127.0.0.1:32775")}}},
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
	}}
	t.Normalize()
	return t
}

// CheckTemplate renders SampleTable with tmpl, in a scratch state
// directory with certificates of its own, and runs bin -t on the result
// when bin is not "". A render or validation failure is the error.
func CheckTemplate(ctx context.Context, tmpl *Template, bin string) (CheckResult, error) {
	dir, err := os.MkdirTemp("", "interlock-check-")
	if err != nil {
		return CheckResult{}, err
	}
	defer os.RemoveAll(dir)
	certDir := filepath.Join(dir, "certs")
	if err := tlsconf.WriteSelfSigned(filepath.Join(certDir, "named"), "named.example.com"); err != nil {
		return CheckResult{}, err
	}
	profile, _ := tlsconf.Lookup(tlsconf.Default)
	d, err := New(Options{
		Template: tmpl, HTTPAddr: "127.0.0.1:8080", HTTPSAddr: "127.0.0.1:8443", CertDir: certDir,
		Profile: profile, StateDir: filepath.Join(dir, "state"), Binary: bin, Mode: Supervise,
	})
	if err != nil {
		return CheckResult{}, err
	}
	table := SampleTable()
	conf, _, err := d.Render(table)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{Hosts: len(table.Hosts), Bytes: len(conf)}
	if bin == "" {
		return res, nil
	}
	if err := d.prepare(); err != nil {
		return res, err
	}
	file := filepath.Join(dir, "state", "nginx.conf")
	if err := os.WriteFile(file, conf, 0o644); err != nil {
		return res, err
	}
	if err := Validate(ctx, bin, file, filepath.Join(dir, "state", "scratch")); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return res, fmt.Errorf("template %s: nginx -t rejects the rendered sample: %s", tmpl.Source, ve.Output)
		}
		return res, fmt.Errorf("template %s: %w", tmpl.Source, err)
	}
	res.Validated = true
	return res, nil
}
