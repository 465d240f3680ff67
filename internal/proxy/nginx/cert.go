package nginx

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// The default certificate serves TLS hosts that name no certificate of
// their own (interlock.ssl=true alone). Interlock makes a self-signed one
// once and keeps it; clients that must trust the host need a real one
// named with interlock.ssl_cert.
const (
	defaultCertName = "interlock-default.crt"
	defaultKeyName  = "interlock-default.key"
)

// ensureDefaultCert writes a self-signed ECDSA P-256 certificate and key
// into dir unless both are there already.
func ensureDefaultCert(dir string) error {
	certPath, keyPath := filepath.Join(dir, defaultCertName), filepath.Join(dir, defaultKeyName)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	if certErr == nil && keyErr == nil {
		return nil
	}
	certPEM, keyPEM, err := tlsconf.SelfSigned("interlock-default.invalid")
	if err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := atomicfile.Write(certPath, certPEM, 0o644); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	return nil
}
