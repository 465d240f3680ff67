package builtin

import (
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// CertChecker judges the label certificates of a table's hosts
// (TLS.CertFile and KeyFile, under a certificate directory) exactly as the
// built-in proxy loads them: confinement to the directory, readable PEM, a
// key that matches, the validity period and the names covered. Drivers
// that hand the files to another proxy (nginx, haproxy) use it to give a
// host with a bad certificate the default one, as the built-in proxy does,
// and to report it the same way. A pair whose files did not change since
// the last Check is not read again. It is safe for concurrent use.
type CertChecker struct {
	mu sync.Mutex
	p  *Proxy
}

// NewCertChecker returns a checker for certificates under certDir.
func NewCertChecker(certDir string) *CertChecker {
	if certDir != "" {
		if abs, err := filepath.Abs(certDir); err == nil {
			certDir = abs
		}
	}
	return &CertChecker{p: &Proxy{certDir: certDir, log: slog.New(slog.DiscardHandler), certCache: map[certKey]*certEntry{}}}
}

// Check returns one problem per host of t and fault, sorted; nil when
// every label certificate would be served.
func (c *CertChecker) Check(t routing.Table) []CertProblem {
	served := &table{hosts: map[string]*host{}}
	for _, h := range t.Hosts {
		if len(h.Routes) > 0 && h.Routes[0].Protocol == routing.TCP {
			continue // no TLS termination: the certificate is never loaded
		}
		served.hosts[hostname(h.Name)] = &host{name: hostname(h.Name)}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	set, cache := c.p.loadCerts(t, served)
	c.p.certCache = cache
	return set.problems
}
