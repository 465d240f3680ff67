package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/interlock-proxy/interlock/internal/acme"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// newACMEManager returns the Manager of the --acme-* settings, with tune
// applied to its options, and its close; nil (and a no-op) with
// --acme-hosts=off.
func newACMEManager(cfg config.Config, log *slog.Logger, tune func(*acme.Options)) (*acme.Manager, func(), error) {
	if !cfg.ACMEEnabled() {
		return nil, func() {}, nil
	}
	var roots *x509.CertPool // nil: the system roots
	if cfg.ACMECARoot != "" {
		pem, err := os.ReadFile(cfg.ACMECARoot)
		if err != nil {
			return nil, nil, fmt.Errorf("--acme-ca-root: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--acme-ca-root: %s holds no PEM certificate", cfg.ACMECARoot)
		}
	}
	storage, err := filepath.Abs(cfg.ACMEStorageDir())
	if err != nil {
		return nil, nil, fmt.Errorf("--acme-storage: %w", err)
	}
	http01, tlsALPN01 := cfg.ACMEChallengeTypes()
	opts := acme.Options{
		CA: cfg.ACMECA, Email: cfg.ACMEEmail, RootCAs: roots, Storage: storage,
		DisableHTTP01: !http01, DisableTLSALPN01: !tlsALPN01,
		HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr,
		Logger: log,
	}
	if tune != nil {
		tune(&opts)
	}
	m, err := acme.New(opts)
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close() }, nil
}

// newACME returns the built-in proxy's ACME certificate source and its
// close; nil (and a no-op) with --acme-hosts=off.
func newACME(cfg config.Config, log *slog.Logger) (builtin.CertSource, func(), error) {
	m, closeM, err := newACMEManager(cfg, log, nil)
	if m == nil || err != nil {
		return nil, closeM, err
	}
	return m, closeM, nil
}

// driverACME is the ACME side of the nginx and haproxy drivers
// (nginx.ACMECertificates, haproxy.ACMECertificates): the Manager gets
// the certificates and exports each to dir as NAME.pem, which the proxy
// loads; the proxy passes HTTP-01 challenges to the responder on
// --acme-challenge-addr. Without a Manager (interlock render) it only
// names the files already there.
type driverACME struct {
	m   *acme.Manager
	dir string
	// responder serves the challenges; nil without a Manager.
	responder *http.Server
	ln        net.Listener
}

// Sync implements the drivers' ACMECertificates.
func (a *driverACME) Sync(names []string) {
	if a.m != nil {
		a.m.Sync(names)
	}
}

// File implements the drivers' ACMECertificates: the exported file of
// name, when there is one to read.
func (a *driverACME) File(name string) string {
	p := filepath.Join(a.dir, acme.ExportFile(name))
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	f.Close()
	return p
}

// acmeExportDir is where the template driver of cfg finds the exported
// ACME certificates: beside its configuration file, in the directory a
// side-loaded proxy shares with Interlock.
func acmeExportDir(cfg config.Config) (string, error) {
	dir := filepath.Join(cfg.StateDir, cfg.Proxy)
	if cfg.Role == config.RoleController {
		dir = filepath.Join(cfg.StateDir, driverFeed)
	} else if cfg.Proxy == config.ProxyNginx && cfg.NginxConfig != "" {
		dir = filepath.Dir(cfg.NginxConfig)
	}
	dir, err := filepath.Abs(filepath.Join(dir, "acme"))
	if err != nil {
		return "", fmt.Errorf("--state-dir: %w", err)
	}
	return dir, nil
}

// newDriverACME returns the ACME side of a template driver, and its
// close, or nil with --acme-hosts=off. With a Manager (serve true), the
// challenge responder's address is bound now, before any name is managed
// (certmagic would take a free port for itself), and onExport is called
// after the exported files changed; without one, it only names the files.
func newDriverACME(cfg config.Config, log *slog.Logger, serve bool, onExport func()) (*driverACME, func(), error) {
	if !cfg.ACMEEnabled() {
		return nil, func() {}, nil
	}
	dir, err := acmeExportDir(cfg)
	if err != nil {
		return nil, nil, err
	}
	a := &driverACME{dir: dir}
	if !serve {
		return a, func() {}, nil
	}
	if a.ln, err = net.Listen("tcp", cfg.ACMEChallengeAddr); err != nil {
		return nil, nil, fmt.Errorf("--acme-challenge-addr %s: %w", cfg.ACMEChallengeAddr, err)
	}
	m, closeM, err := newACMEManager(cfg, log, func(o *acme.Options) {
		// The proxy passes HTTP-01 to the responder; certmagic finds its
		// port taken and leaves the answers to it. TLS-ALPN-01 would need
		// the proxy to present a challenge certificate.
		o.HTTPAddr, o.HTTPSAddr, o.DisableTLSALPN01 = cfg.ACMEChallengeAddr, "", true
		o.ExportDir, o.OnExport = dir, onExport
	})
	if err != nil {
		a.ln.Close()
		return nil, nil, err
	}
	a.m = m
	a.responder = &http.Server{Handler: m.ChallengeHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		if err := a.responder.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ACME challenge responder stopped: HTTP-01 challenges fail until Interlock restarts", "addr", cfg.ACMEChallengeAddr, "error", err)
		}
	}()
	log.Info("ACME for the "+driverFor(cfg)+" driver: HTTP-01 challenges passed to Interlock, certificates exported for the proxy",
		"challenge_addr", cfg.ACMEChallengeAddr, "export_dir", dir)
	return a, func() {
		a.responder.Close()
		closeM()
	}, nil
}

// discoveryOptions are the discovery settings of cfg.
func discoveryOptions(cfg config.Config) discovery.Options {
	return discovery.Options{
		BackendAddress: cfg.BackendAddress,
		Network:        cfg.Network,
		ACMEDefault:    cfg.ACMEHosts == config.ACMEAll,
	}
}

// driverCerts are the certificates of the nginx and haproxy drivers that
// Interlock looks after: label certificates judged as the built-in proxy
// judges them (a host whose certificate cannot be served gets the default
// one), and ACME certificates (nil acme: off).
type driverCerts struct {
	// labels is nil when the certificate directory is not Interlock's to
	// read (nginx's mode copy: it is the containers', checked by nginx -t
	// there).
	labels *builtin.CertChecker
	acme   *driverACME
}

// newDriverCerts returns the certificates side of a template driver for
// cfg, with acme from newDriverACME.
func newDriverCerts(cfg config.Config, acmeSide *driverACME) (*driverCerts, error) {
	certDir, err := filepath.Abs(cfg.CertDir)
	if err != nil {
		return nil, fmt.Errorf("--cert-dir: %w", err)
	}
	c := &driverCerts{acme: acmeSide}
	if !(cfg.Proxy == config.ProxyNginx && cfg.NginxTarget == config.NginxContainers && cfg.NginxDelivery == config.NginxCopy) {
		c.labels = builtin.NewCertChecker(certDir)
	}
	return c, nil
}

// verdicts is the drivers' CertCheck: why each host's label certificate
// is refused. A certificate that misses some of the host's names is kept
// (and reported): the default one would not cover them either.
func (c *driverCerts) verdicts(t routing.Table) map[string]string {
	if c.labels == nil {
		return nil
	}
	var why map[string]string
	for _, p := range c.labels.Check(t) {
		if p.Reason == builtin.CertNameMismatch {
			continue
		}
		if why == nil {
			why = map[string]string{}
		}
		if _, ok := why[p.Host]; !ok {
			why[p.Host] = "certificate " + p.Path + ": " + p.Message
		}
	}
	return why
}

// problems are the live table's certificate problems, for /api/status
// and the metric: the label certificates', and each ACME name whose
// issuance or renewal failed (a first issuance under way is none).
func (c *driverCerts) problems(t routing.Table) []builtin.CertProblem {
	var out []builtin.CertProblem
	if c.labels != nil {
		out = c.labels.Check(t)
	}
	if c.acme != nil && c.acme.m != nil {
		for _, h := range t.Hosts {
			if !h.UsesACME() {
				continue
			}
			for _, n := range h.Names() {
				err := c.acme.m.Failure(n)
				if err == nil {
					if e := c.acme.m.ExportFailure(n); e != nil {
						err = fmt.Errorf("issued, but not written for the proxy: %w", e)
					}
				}
				if err != nil {
					out = append(out, builtin.CertProblem{Host: h.Name, Path: n, Reason: builtin.CertACMEFailed,
						Message: "ACME certificate for " + n + " failed, retried with backoff; the name gets the default certificate meanwhile: " + err.Error()})
				}
			}
		}
	}
	return out
}

// renderCerts is the certificates side of interlock render: the same
// judgement of label certificates, and the ACME files already exported
// (nothing is ordered).
func renderCerts(cfg config.Config) (*driverCerts, error) {
	acmeSide, _, err := newDriverACME(cfg, slog.New(slog.DiscardHandler), false, nil)
	if err != nil {
		return nil, err
	}
	return newDriverCerts(cfg, acmeSide)
}

// certProblems reads certs' problems for the live table of ctl; nil
// without certs (the built-in proxy reports its own).
func certProblems(certs *driverCerts, ctl *controller.Controller) func() []builtin.CertProblem {
	if certs == nil {
		return nil
	}
	return func() []builtin.CertProblem { return certs.problems(ctl.Status().Table) }
}
