package feed

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// The feed is mutual TLS with one operator CA: the controller accepts only
// clients whose certificate the CA signed, and the edge only a controller
// whose certificate the CA signed for the name in its URL. TLS 1.2 at
// least.

// ServerTLS is a controller's TLS configuration from PEM files.
func ServerTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, pair, err := load(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// ClientTLS is an edge's TLS configuration from PEM files.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, pair, err := load(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
	}, nil
}

func load(caFile, certFile, keyFile string) (*x509.CertPool, tls.Certificate, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("feed CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, tls.Certificate{}, fmt.Errorf("feed CA: %s holds no PEM certificate", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("feed certificate: %w", err)
	}
	return pool, pair, nil
}
