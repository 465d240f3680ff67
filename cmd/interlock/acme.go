package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/acme"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
)

// newACME returns the built-in proxy's ACME certificate source for the
// --acme-* settings, and its close; nil (and a no-op) with
// --acme-hosts=off.
func newACME(cfg config.Config, log *slog.Logger) (builtin.CertSource, func(), error) {
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
	m, err := acme.New(acme.Options{
		CA: cfg.ACMECA, Email: cfg.ACMEEmail, RootCAs: roots, Storage: storage,
		DisableHTTP01: !http01, DisableTLSALPN01: !tlsALPN01,
		HTTPAddr: cfg.HTTPAddr, HTTPSAddr: cfg.HTTPSAddr,
		Logger: log,
	})
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close() }, nil
}

// discoveryOptions are the discovery settings of cfg. ACME by default for
// TLS hosts (--acme-hosts=all) is the built-in proxy's: other drivers
// would only show hosts as ACME that they serve with the default
// certificate.
func discoveryOptions(cfg config.Config) discovery.Options {
	return discovery.Options{
		BackendAddress: cfg.BackendAddress,
		Network:        cfg.Network,
		ACMEDefault:    cfg.ACMEHosts == config.ACMEAll && cfg.Proxy == config.ProxyBuiltin,
	}
}

// warnACMEDriver says that the ACME settings do nothing for nginx and
// haproxy.
func warnACMEDriver(cfg config.Config, log *slog.Logger) {
	if cfg.ACMEEnabled() && cfg.Proxy != config.ProxyBuiltin {
		log.Warn("--acme-hosts is the built-in proxy's: the "+cfg.Proxy+" driver serves ssl_acme hosts with the default certificate", "acme_hosts", cfg.ACMEHosts)
	}
}
