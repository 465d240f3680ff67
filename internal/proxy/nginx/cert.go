package nginx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
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
	certPEM, keyPEM, err := selfSigned("interlock-default.invalid")
	if err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := writeSynced(keyPath+".tmp", keyPEM); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := os.Chmod(keyPath+".tmp", 0o600); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := writeSynced(certPath+".tmp", certPEM); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := os.Rename(keyPath+".tmp", keyPath); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	if err := os.Rename(certPath+".tmp", certPath); err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	return nil
}

// selfSigned returns a PEM certificate and PKCS#8 key for name, valid for
// ten years.
func selfSigned(name string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
