package acme

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
)

// Export: the template drivers (nginx, haproxy) load certificates from
// files, not from a Go callback. With Options.ExportDir, the Manager
// writes every managed name's current certificate there as one PEM file,
// NAME.pem (chain, then the private key, mode 0600 in a 0700 directory),
// which both nginx (ssl_certificate and ssl_certificate_key on the same
// file) and HAProxy (crt) read, and calls Options.OnExport once the files
// changed, so the driver reloads. Issuance, a renewal and a load from
// storage all end in an export. Files of names no longer managed stay:
// nothing names them any more, and a name that comes back finds its file.

// exportDebounce folds the events of one issuance (obtained, then cached)
// into one export.
const exportDebounce = 200 * time.Millisecond

// exportCheckInterval is how often the export is redone regardless of
// events: a safety net for an event missed or a file removed by hand.
const exportCheckInterval = time.Minute

// ExportFile is the file name of name's exported certificate in the
// export directory.
func ExportFile(name string) string { return normalize(name) + ".pem" }

// kickExport asks the export loop for a pass; it never blocks.
func (m *Manager) kickExport() {
	if m.exportKick == nil {
		return
	}
	select {
	case m.exportKick <- struct{}{}:
	default:
	}
}

// exportLoop writes the files after each kick (debounced) and every
// exportCheckInterval, until the Manager closes.
func (m *Manager) exportLoop() {
	defer close(m.exportDone)
	tick := time.NewTicker(exportCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.exportKick:
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(exportDebounce):
			}
		case <-tick.C:
		}
		changed, err := m.export()
		if err != nil {
			m.log.Error("ACME: certificates not exported for the proxy; it keeps the files it had", "dir", m.exportDir, "error", err)
		}
		if len(changed) > 0 {
			m.log.Info("ACME certificates exported for the proxy", "dir", m.exportDir, "names", changed)
			if m.onExport != nil {
				m.onExport()
			}
		}
	}
}

// export writes the file of every managed name whose certificate in
// memory differs from its file, and returns those names.
func (m *Manager) export() ([]string, error) {
	dirErr := os.MkdirAll(m.exportDir, 0o700)
	m.mu.Lock()
	names := make([]string, 0, len(m.managed))
	for n := range m.managed {
		names = append(names, n)
	}
	m.mu.Unlock()
	slices.Sort(names)
	var changed []string
	var errs []error
	failed := map[string]error{}
	for _, n := range names {
		data, ok, err := m.exportPEM(n)
		if err != nil {
			failed[n] = err
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		if !ok {
			continue // not issued yet
		}
		if dirErr != nil {
			failed[n] = dirErr
			continue
		}
		path := filepath.Join(m.exportDir, ExportFile(n))
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := atomicfile.Write(path, data, 0o600); err != nil {
			failed[n] = err
			errs = append(errs, err)
			continue
		}
		changed = append(changed, n)
	}
	m.mu.Lock()
	m.exportFailures = failed
	m.mu.Unlock()
	if dirErr != nil {
		errs = append(errs, dirErr)
	}
	return changed, errors.Join(errs...)
}

// ExportFailure says why name's certificate, issued, was not written to
// the export directory at the last pass (nil: written, or not issued
// yet): the proxy, or a controller's edges, do not have it.
func (m *Manager) ExportFailure(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exportFailures[normalize(name)]
}

// exportPEM returns name's certificate chain and key as PEM, from
// certmagic's cache: the certificate valid longest when a renewal left two
// there for a moment. ok is false while there is none.
func (m *Manager) exportPEM(name string) ([]byte, bool, error) {
	certs := m.cache.AllMatchingCertificates(name)
	best, bestEnd := -1, time.Time{}
	for i, c := range certs {
		if len(c.Certificate.Certificate) == 0 || c.PrivateKey == nil {
			continue
		}
		leaf := c.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(c.Certificate.Certificate[0]); err != nil {
				continue
			}
		}
		// An exact name only: a wildcard certificate certmagic holds for
		// another purpose is not this name's.
		if !slices.ContainsFunc(c.Names, func(s string) bool { return strings.EqualFold(s, name) }) {
			continue
		}
		if best < 0 || leaf.NotAfter.After(bestEnd) {
			best, bestEnd = i, leaf.NotAfter
		}
	}
	if best < 0 {
		return nil, false, nil
	}
	c := certs[best]
	var buf bytes.Buffer
	for _, der := range c.Certificate.Certificate {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
			return nil, false, err
		}
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, false, fmt.Errorf("private key: %w", err)
	}
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: key}); err != nil {
		return nil, false, err
	}
	return buf.Bytes(), true, nil
}

// ChallengeHandler answers HTTP-01 challenges for the managed names and
// 404s everything else: what a template driver's proxy forwards
// /.well-known/acme-challenge/ to, with the request's Host kept.
func (m *Manager) ChallengeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.HandleHTTPChallenge(w, r) {
			m.log.Debug("ACME: no challenge pending for this host and token", "host", r.Host, "path", r.URL.Path, "managed", m.isManaged(normalize(hostOnly(r.Host))))
			http.Error(w, "interlock: no ACME challenge pending for this host and token", http.StatusNotFound)
		}
	})
}
