package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Where a cluster's certificates live, on the host under Cluster.Dir and
// inside every node (mounted read-only).
const (
	// NodeCertsDir is the certificates' directory inside a node.
	NodeCertsDir = "/certs"
	// NodeClientCertsDir holds ca.pem, cert.pem and key.pem, the client
	// side as DOCKER_CERT_PATH wants it: mount it into a container that
	// must reach the TLS manager.
	NodeClientCertsDir = NodeCertsDir + "/client"
	// nodeServerCertsDir holds a directory per manager (server/manager1,
	// ...) with its ca.pem, cert.pem and key.pem for dockerd --tlsverify.
	nodeServerCertsDir = NodeCertsDir + "/server"
)

// ManagerTLSPort is the port every manager's engine serves its API on over
// TLS (ClusterSpec.TLS).
const ManagerTLSPort = 2376

// serverIdentity is what a manager's server certificate names.
type serverIdentity struct {
	name string // the node's name: its directory under server/, its CN
	ip   net.IP
}

// writeClusterPKI makes a throw-away CA in dir: dir/server/NAME for each
// manager (a server certificate naming its IP, its name, "manager",
// localhost and 127.0.0.1) and dir/client (a client certificate), each
// directory with ca.pem, cert.pem and key.pem. The files are
// world-readable: the Interlock image runs as nobody, and the keys are
// worth nothing beyond this cluster.
func writeClusterPKI(dir string, managers []serverIdentity) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interlock test cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	issue := func(sub string, tmpl *x509.Certificate) error {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
		if err != nil {
			return err
		}
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = serial, now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		for name, block := range map[string]*pem.Block{
			"ca.pem":   {Type: "CERTIFICATE", Bytes: caDER},
			"cert.pem": {Type: "CERTIFICATE", Bytes: der},
			"key.pem":  {Type: "EC PRIVATE KEY", Bytes: kb},
		} {
			if err := os.WriteFile(filepath.Join(d, name), pem.EncodeToMemory(block), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	for _, m := range managers {
		if err := issue(filepath.Join("server", m.name), &x509.Certificate{
			Subject: pkix.Name{CommonName: m.name}, DNSNames: []string{m.name, "manager", "localhost"},
			IPAddresses: []net.IP{m.ip, net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			return fmt.Errorf("certificate of %s: %w", m.name, err)
		}
	}
	if err := issue("client", &x509.Certificate{
		Subject: pkix.Name{CommonName: "interlock"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	return nil
}
