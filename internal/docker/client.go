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
	"strings"
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

// explainTLS adds what to do to the TLS failures users meet when they
// point Interlock at a manager's port 2376.
func explainTLS(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var hint string
	switch {
	case strings.Contains(msg, "certificate required"):
		hint = "the engine demands a client certificate: give --tls-cert and --tls-key (or DOCKER_CERT_PATH with cert.pem and key.pem)"
	case strings.Contains(msg, "unknown certificate authority") || strings.Contains(msg, "bad certificate"):
		hint = "the engine refused the client certificate: it is not signed by a CA the engine trusts (dockerd --tlscacert)"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		hint = "the engine's certificate is not signed by --tls-ca: give the CA that signed it (ca.pem)"
	case strings.Contains(msg, "certificate is valid for") || strings.Contains(msg, "doesn't contain any IP SANs"):
		hint = "the engine's certificate does not name the host in --docker-host: connect by a name or IP its certificate lists"
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		hint = "the engine speaks plain HTTP on that port: remove the TLS settings, or enable TLS on the engine (dockerd --tlsverify)"
	case strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "malformed HTTP response") ||
		strings.Contains(msg, `"http://`) && strings.HasSuffix(msg, "EOF"):
		// A TLS engine hangs up on a plain HTTP request: EOF on http://.
		hint = "the engine speaks TLS on that port: give --tls-ca, --tls-cert, --tls-key and --tls-verify (or DOCKER_CERT_PATH and DOCKER_TLS_VERIFY=1)"
	default:
		return err
	}
	return fmt.Errorf("%w; %s", err, hint)
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
