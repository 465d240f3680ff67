package feed

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
)

// CertStore is an edge's ACME certificates: the ones its controllers
// obtained and sent over the feed, served to the built-in proxy as its
// certificate source (builtin.CertSource), and kept on disk so that an
// edge restarted while no controller answers serves them at once.
//
// A set from a controller only ever adds or renews: a certificate the
// set lacks is kept while it is valid, because a controller that has just
// started sends its table before it has loaded every certificate from its
// storage, and an edge that switched to it must not fall back to the
// default certificate meanwhile. A name's certificate is replaced by one
// that is valid at least as long. The HTTP-01 challenges the CA sends the
// edge for its ACME hosts go on to the controller (Client.ForwardChallenge).
type CertStore struct {
	path    string
	forward func(http.ResponseWriter, *http.Request)
	log     *slog.Logger

	mu       sync.RWMutex
	certs    map[string]storedCert
	failures map[string]string
}

type storedCert struct {
	pem      []byte
	cert     *tls.Certificate
	notAfter time.Time
}

// NewCertStore returns the store saved at path ("" keeps nothing on
// disk), loaded with what is there, passing challenges to forward. A
// file that cannot be read is logged and the store starts empty: the
// controllers send the certificates again.
func NewCertStore(path string, forward func(http.ResponseWriter, *http.Request), log *slog.Logger) *CertStore {
	if log == nil {
		log = slog.Default()
	}
	s := &CertStore{path: path, forward: forward, log: log, certs: map[string]storedCert{}}
	if path == "" {
		return s
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s
	}
	var saved Certificates
	if err == nil {
		err = json.Unmarshal(data, &saved)
	}
	if err != nil {
		log.Warn("feed: the saved ACME certificates are not read; the controllers send them again", "path", path, "error", err)
		return s
	}
	s.merge(saved.Certificates)
	log.Info("feed: ACME certificates loaded from the last run", "path", path, "names", s.Names())
	return s
}

// Update merges a set a controller sent and saves the result when it
// changed. Its failures replace the ones known.
func (s *CertStore) Update(c Certificates) {
	s.mu.Lock()
	changed := s.merge(c.Certificates)
	s.failures = c.Failures
	var data []byte
	if changed && s.path != "" {
		data = s.encode()
	}
	s.mu.Unlock()
	if changed {
		s.log.Info("feed: ACME certificates from the controller", "names", s.Names())
	}
	if data != nil {
		if err := atomicfile.Write(s.path, data, 0o600); err != nil {
			s.log.Warn("feed: ACME certificates not saved; a restart without a controller serves the default certificate for them", "path", s.path, "error", err)
		}
	}
}

// merge adds or renews certs (s.mu held, or the store not shared yet) and
// drops the expired ones; it reports whether anything changed.
func (s *CertStore) merge(certs []Certificate) bool {
	now, changed := time.Now(), false
	for _, c := range certs {
		name := normalizeName(c.Name)
		pair, err := tls.X509KeyPair(c.PEM, c.PEM)
		if err == nil && pair.Leaf == nil {
			pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
		}
		if err != nil {
			s.log.Warn("feed: an ACME certificate from the controller is refused; the edge keeps what it had", "name", name, "error", err)
			continue
		}
		if err := pair.Leaf.VerifyHostname(name); err != nil {
			s.log.Warn("feed: an ACME certificate from the controller does not cover its name; refused", "name", name, "error", err)
			continue
		}
		if now.After(pair.Leaf.NotAfter) {
			s.log.Warn("feed: an ACME certificate from the controller has expired; refused", "name", name, "not_after", pair.Leaf.NotAfter)
			continue
		}
		old, ok := s.certs[name]
		if ok && (string(old.pem) == string(c.PEM) || pair.Leaf.NotAfter.Before(old.notAfter)) {
			continue
		}
		s.certs[name] = storedCert{pem: c.PEM, cert: &pair, notAfter: pair.Leaf.NotAfter}
		changed = true
	}
	for name, c := range s.certs {
		if now.After(c.notAfter) {
			delete(s.certs, name)
			changed = true
		}
	}
	return changed
}

// encode is the saved form (s.mu held).
func (s *CertStore) encode() []byte {
	var out Certificates
	for _, name := range slices.Sorted(maps.Keys(s.certs)) {
		out.Certificates = append(out.Certificates, Certificate{Name: name, PEM: s.certs[name].pem})
	}
	data, _ := json.Marshal(out)
	return data
}

// Names returns the names the store has a certificate for, sorted.
func (s *CertStore) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.certs))
}

// Sync implements builtin.CertSource: the controllers decide what is
// ordered, so the names the edge's table wants change nothing here.
func (s *CertStore) Sync([]string) {}

// GetCertificate implements builtin.CertSource.
func (s *CertStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeName(hello.ServerName)
	s.mu.RLock()
	c, ok := s.certs[name]
	s.mu.RUnlock()
	if !ok || time.Now().After(c.notAfter) {
		return nil, fmt.Errorf("feed: no ACME certificate for %s from the controllers (yet)", name)
	}
	return c.cert, nil
}

// HandleHTTPChallenge implements builtin.CertSource: the proxy asks only
// for its ACME hosts, and the answer is the controllers'.
func (s *CertStore) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if s.forward == nil || !strings.HasPrefix(r.URL.Path, ChallengePath) {
		return false
	}
	s.forward(w, r)
	return true
}

// Failure implements builtin.CertSource: the controllers' last error of
// name's issuance or renewal, until it succeeds.
func (s *CertStore) Failure(name string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if msg, ok := s.failures[normalizeName(name)]; ok {
		return fmt.Errorf("on the controller: %s", msg)
	}
	return nil
}

// normalizeName lowercases a host name and drops its port and trailing
// dot, as SNI and table names compare.
func normalizeName(name string) string {
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
