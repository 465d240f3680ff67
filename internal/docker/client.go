// Package docker is Interlock's only contact with the Docker Engine API. It
// lists and watches containers, survives any loss of the connection, and
// publishes Snapshots: plain projections that no SDK type leaves.
package docker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/moby/moby/client"
)

// Endpoint says how to reach the engine.
type Endpoint struct {
	// Host is a Docker host URL (unix:///var/run/docker.sock, tcp://h:2376);
	// empty means the default local socket.
	Host string
	// TLS files for tcp:// endpoints. Verify checks the engine's certificate
	// against CA; without it the connection is encrypted but unverified, as
	// with the docker CLI's --tls.
	CA, Cert, Key string
	Verify        bool
}

// NewClient builds an SDK client for e. The API version is negotiated on
// the first Ping.
func NewClient(e Endpoint) (*client.Client, error) {
	host := e.Host
	if host == "" {
		host = client.DefaultDockerHost
	}
	transport := &http.Transport{
		// The event stream is long-lived; everything else is short, so a
		// small pool is enough. Dialing must fail fast so reconnects can
		// back off instead of hanging.
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	if e.CA != "" || e.Cert != "" || e.Key != "" || e.Verify {
		cfg, err := clientTLS(e)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = cfg
	}
	cli, err := client.New(
		client.WithHTTPClient(&http.Client{Transport: transport}),
		client.WithHost(host),
		client.WithUserAgent("interlock"),
	)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w", host, err)
	}
	return cli, nil
}

func clientTLS(e Endpoint) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !e.Verify} //nolint:gosec // mirrors docker --tls without --tlsverify, on explicit request
	if e.CA != "" {
		pem, err := os.ReadFile(e.CA)
		if err != nil {
			return nil, fmt.Errorf("read docker tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("docker tls ca %s: no PEM certificate found: give the CA that signed the engine's certificate", e.CA)
		}
		cfg.RootCAs = pool
	}
	if e.Cert != "" || e.Key != "" {
		pair, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			return nil, fmt.Errorf("docker tls client certificate %s / key %s: %w", e.Cert, e.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
