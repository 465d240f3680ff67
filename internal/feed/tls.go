package feed

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// The feed is mutual TLS with one operator CA: the controller accepts only
// clients whose certificate the CA signed, and the edge only a controller
// whose certificate the CA signed for the name in its URL. TLS 1.2 at
// least.
//
// The files are re-read when they change on disk, so that certificates
// rotated in place (by an operator, a certificate manager, or a Docker
// secret replaced on the service) take effect without a restart: a
// controller's next handshake presents the new certificate and trusts the
// new CA, an edge's next connection likewise. A rotated set that does not
// load (a key written before its certificate, say) is logged, and the last
// good one stays in use.

// tlsCheckEvery is how often the files are looked at (a stat of each), at
// most: on a handshake, not in the background.
const tlsCheckEvery = time.Second

// TLSFiles are one side's CA, certificate and key files, loaded, and
// re-read when one of them changes.
type TLSFiles struct {
	ca, cert, key string
	log           *slog.Logger

	mu      sync.Mutex
	checked time.Time
	stamp   string
	pool    *x509.CertPool
	pair    *tls.Certificate
	gen     int // counts the loads
	server  *tls.Config
}

// LoadTLSFiles loads the three PEM files; an error names the one that is
// wrong. log receives reload failures (nil: slog.Default()).
func LoadTLSFiles(caFile, certFile, keyFile string, log *slog.Logger) (*TLSFiles, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &TLSFiles{ca: caFile, cert: certFile, key: keyFile, log: log}
	stamp, err := f.stat()
	if err == nil {
		err = f.load(stamp)
	}
	if err != nil {
		return nil, err
	}
	f.checked = time.Now()
	return f, nil
}

// stat is the files' identity: size and modification time of each.
func (f *TLSFiles) stat() (string, error) {
	var stamp string
	for _, p := range []string{f.ca, f.cert, f.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

// load reads the files (f.mu held, or f not shared yet).
func (f *TLSFiles) load(stamp string) error {
	ca, err := os.ReadFile(f.ca)
	if err != nil {
		return fmt.Errorf("feed CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fmt.Errorf("feed CA: %s holds no PEM certificate", f.ca)
	}
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return fmt.Errorf("feed certificate: %w", err)
	}
	f.pool, f.pair, f.stamp, f.server = pool, &pair, stamp, nil
	f.gen++
	return nil
}

// current returns the files' content, re-read when they changed since
// the last look (at most every tlsCheckEvery), and its generation.
func (f *TLSFiles) current() (*x509.CertPool, *tls.Certificate, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLocked()
	return f.pool, f.pair, f.gen
}

// refreshLocked re-reads the files when they changed since the last look,
// at most every tlsCheckEvery; f.mu is held.
func (f *TLSFiles) refreshLocked() {
	if time.Since(f.checked) >= tlsCheckEvery {
		f.checked = time.Now()
		stamp, err := f.stat()
		if err == nil && stamp != f.stamp {
			err = f.load(stamp)
			if err == nil {
				f.log.Info("feed: certificate files changed; new connections use them", "cert", f.cert, "ca", f.ca)
			}
		}
		if err != nil && stamp != f.stamp {
			f.log.Warn("feed: the changed certificate files do not load; the last good ones stay in use", "error", err)
			f.stamp = stamp // once per change, not once per handshake
		}
	}
}

// Generation counts the loads: it changes when the files were reloaded
// (an edge then opens new connections, which use them).
func (f *TLSFiles) Generation() int {
	_, _, gen := f.current()
	return gen
}

// ServerConfig is a controller's configuration: each handshake uses the
// files as they are.
func (f *TLSFiles) ServerConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.refreshLocked()
		if f.server == nil { // none yet, or load cleared it
			f.server = &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*f.pair},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    f.pool,
				NextProtos:   []string{"http/1.1"},
			}
		}
		return f.server, nil
	}
	return cfg
}

// ClientConfig is an edge's configuration for a new connection, from the
// files as they are.
func (f *TLSFiles) ClientConfig() *tls.Config {
	pool, pair, _ := f.current()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*pair},
		RootCAs:      pool,
	}
}

// ServerTLS is a controller's TLS configuration from PEM files, which it
// re-reads when they change.
func ServerTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	f, err := LoadTLSFiles(caFile, certFile, keyFile, nil)
	if err != nil {
		return nil, err
	}
	return f.ServerConfig(), nil
}

// ClientTLS is an edge's TLS configuration from PEM files, as they are
// now (ClientOptions.Files re-reads them).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	f, err := LoadTLSFiles(caFile, certFile, keyFile, nil)
	if err != nil {
		return nil, err
	}
	return f.ClientConfig(), nil
}
