// Package acme gets and renews the certificates of ACME hosts
// (routing.TLS.ACME, interlock.ssl_acme) for the built-in proxy, with
// certmagic. A Manager is the proxy's builtin.CertSource: the proxy tells
// it on every Apply which names want a certificate (Sync), asks it for
// them by SNI (GetCertificate), and hands it the CA's challenges for those
// names (HandleHTTPChallenge for HTTP-01 on the plain listener,
// GetCertificate for TLS-ALPN-01 on the TLS one). The package knows
// nothing of Docker or of the routing table.
//
// Certificates are managed, not on-demand: a name is obtained (or loaded
// from storage) when it enters the table and renewed in the background by
// certmagic, long before it expires; a name that leaves the table stops
// being renewed. No TLS handshake ever starts an order, so a client, or
// anyone sending arbitrary SNI names, cannot make Interlock order
// certificates; and a name that comes back (a container restarted, a
// second Interlock on the same storage) is loaded from storage, not
// ordered again. certmagic throttles orders per CA and retries failures
// with exponential backoff (1 minute, growing to a day, for 30 days);
// with Let's Encrypt production, retries first check against its staging
// CA, so a broken setup does not eat the production rate limits.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// LetsEncrypt is the directory of Let's Encrypt's production CA, the
// default.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Options configure a Manager.
type Options struct {
	// CA is the ACME directory URL. Empty means LetsEncrypt.
	CA string
	// Email is the account's contact address, for the CA's expiry and
	// policy notices. Empty: an account without one.
	Email string
	// RootCAs verifies the CA's HTTPS endpoint. Nil means the system
	// roots; a test CA such as Pebble needs its own.
	RootCAs *x509.CertPool
	// Storage is the directory of the account, certificates, keys and
	// locks (certmagic.FileStorage). Required. Instances that share it
	// share certificates: what one obtained the others load instead of
	// ordering, and they coordinate by lock files.
	Storage string
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off; at
	// least one must stay on.
	DisableHTTP01, DisableTLSALPN01 bool
	// HTTPAddr and HTTPSAddr are where the proxy's plain and TLS
	// listeners are (host:port, fixed ports), which answer the
	// challenges: the CA reaches them on ports 80 and 443, forwarded
	// there. certmagic's own challenge servers would bind them, so they
	// must be the listeners' addresses, and listening, before Sync.
	HTTPAddr, HTTPSAddr string
	// Logger receives issuance, renewal and failure logs. Nil means
	// slog.Default().
	Logger *slog.Logger
	// RenewCheckInterval is how often certificates are checked for
	// renewal (certmagic renews in the last third of a certificate's
	// lifetime, or earlier when the CA's ARI says so). Zero means
	// certmagic's default, 10 minutes; tests with short-lived
	// certificates make it short.
	RenewCheckInterval time.Duration
	// ExportDir, when set, is where every managed name's certificate is
	// also written as a PEM file, for proxies that load files (export.go);
	// OnExport is called after files there changed.
	ExportDir string
	OnExport  func()
}

// Stats count certmagic's certificate operations since New.
type Stats struct {
	// Orders counts issuance and renewal attempts sent to the CA.
	Orders int
	// Obtained counts certificates issued or renewed.
	Obtained int
	// Failed counts attempts that failed (each retry counts).
	Failed int
	// Loaded counts certificates loaded into memory, from storage or
	// after issuance.
	Loaded int
}

// Manager holds the ACME certificates of the names it was last given. It
// implements builtin.CertSource. All methods are safe for concurrent use.
type Manager struct {
	log    *slog.Logger
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// managed maps every name being managed to the cancel of its
	// management (ManageAsync and its retries).
	managed  map[string]context.CancelFunc
	failures map[string]error
	stats    Stats
	closed   bool

	// The export of certificates to files (export.go); exportKick is nil
	// without Options.ExportDir.
	exportDir      string
	onExport       func()
	exportFailures map[string]error // by name, from the last export pass (m.mu)
	exportKick     chan struct{}
	exportDone     chan struct{}
}

// New returns a Manager that manages no name yet. It starts certmagic's
// maintenance goroutine (renewals); Close stops it.
func New(opts Options) (*Manager, error) {
	if opts.Storage == "" {
		return nil, errors.New("acme: no storage directory")
	}
	if opts.DisableHTTP01 && opts.DisableTLSALPN01 {
		return nil, errors.New("acme: both challenge types are disabled; keep http-01 or tls-alpn-01")
	}
	if opts.CA == "" {
		opts.CA = LetsEncrypt
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "acme")
	listenHost, httpPort, httpsPort, err := challengeAddrs(opts)
	if err != nil {
		return nil, err
	}
	zl := zapLogger(log)
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{log: log, ctx: ctx, cancel: cancel, managed: map[string]context.CancelFunc{}, failures: map[string]error{}}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.cfg, nil },
		RenewCheckInterval: opts.RenewCheckInterval,
		Logger:             zl,
	})
	m.cfg = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: opts.Storage},
		OnEvent: m.onEvent,
		Logger:  zl,
	})
	m.issuer = certmagic.NewACMEIssuer(m.cfg, certmagic.ACMEIssuer{
		CA:     opts.CA,
		Email:  opts.Email,
		Agreed: true, // turning ACME on is agreeing to the CA's terms; see the README
		// A non-interactive process: no prompt, ever.
		DisableHTTPChallenge:    opts.DisableHTTP01,
		DisableTLSALPNChallenge: opts.DisableTLSALPN01,
		ListenHost:              listenHost,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          httpsPort,
		TrustedRoots:            opts.RootCAs,
		Logger:                  zl,
	})
	m.cfg.Issuers = []certmagic.Issuer{m.issuer}
	if opts.ExportDir != "" {
		m.exportDir, m.onExport = opts.ExportDir, opts.OnExport
		m.exportKick, m.exportDone = make(chan struct{}, 1), make(chan struct{})
		go m.exportLoop()
	}
	log.Info("ACME enabled", "ca", opts.CA, "email", opts.Email, "storage", opts.Storage,
		"http_01", !opts.DisableHTTP01, "tls_alpn_01", !opts.DisableTLSALPN01)
	return m, nil
}

// challengeAddrs returns the host and ports where certmagic looks for a
// challenge server: the proxy's listeners, which it finds taken and so
// leaves to answer. A fixed port is needed for each enabled challenge.
func challengeAddrs(opts Options) (host string, httpPort, httpsPort int, err error) {
	parse := func(what, addr string, needed bool) (string, int, error) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			if !needed {
				return "", 0, nil
			}
			return "", 0, fmt.Errorf("acme: %s address %q: %w", what, addr, err)
		}
		n, err := strconv.Atoi(p)
		if (err != nil || n < 1 || n > 65535) && needed {
			return "", 0, fmt.Errorf("acme: %s address %q needs a fixed port: the CA's challenges are forwarded to it", what, addr)
		}
		return h, n, nil
	}
	hh, hp, err := parse("HTTP", opts.HTTPAddr, !opts.DisableHTTP01)
	if err != nil {
		return "", 0, 0, err
	}
	sh, sp, err := parse("HTTPS", opts.HTTPSAddr, !opts.DisableTLSALPN01)
	if err != nil {
		return "", 0, 0, err
	}
	// One host for both (certmagic takes one): theirs when they agree,
	// else all addresses, which conflicts with either listener as well.
	if hh == sh || opts.DisableTLSALPN01 {
		host = hh
	} else if opts.DisableHTTP01 {
		host = sh
	}
	return host, hp, sp, nil
}

// normalize lowercases name and drops a trailing dot, as SNI and table
// names compare.
func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// hostOnly is a request's Host without its port.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// Sync makes names the managed set: each new name is loaded from storage,
// or ordered, in the background; names no longer listed stop being
// renewed (their files stay in storage, so a name that comes back is
// loaded, not ordered again) and their pending retries stop.
func (m *Manager) Sync(names []string) {
	want := map[string]bool{}
	for _, n := range names {
		if n = normalize(n); n != "" {
			want[n] = true
		}
	}
	type start struct {
		name string
		ctx  context.Context
	}
	var added []start
	var removed []certmagic.SubjectIssuer
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if _, ok := m.managed[n]; !ok {
			ctx, cancel := context.WithCancel(m.ctx)
			m.managed[n] = cancel
			added = append(added, start{n, ctx})
		}
	}
	for n, cancel := range m.managed {
		if !want[n] {
			cancel()
			delete(m.managed, n)
			delete(m.failures, n)
			removed = append(removed, certmagic.SubjectIssuer{Subject: n})
		}
	}
	m.mu.Unlock()
	// certmagic's calls are made without m.mu: its events come back to
	// onEvent, which takes it.
	if len(removed) > 0 {
		m.cache.RemoveManaged(removed)
		m.log.Info("ACME names no longer managed", "names", subjects(removed))
	}
	for _, s := range added {
		if err := m.cfg.ManageAsync(s.ctx, []string{s.name}); err != nil {
			m.fail(s.name, err)
		}
	}
	if len(added) > 0 {
		names := make([]string, len(added))
		for i, s := range added {
			names[i] = s.name
		}
		m.log.Info("ACME names managed: loading from storage or ordering", "names", names)
	}
}

func subjects(s []certmagic.SubjectIssuer) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Subject
	}
	slices.Sort(out)
	return out
}

// isManaged reports whether name is in the managed set.
func (m *Manager) isManaged(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.managed[name]
	return ok
}

// errNotManaged is GetCertificate's answer for a name Sync did not list.
var errNotManaged = errors.New("acme: name not managed")

// GetCertificate returns the managed certificate for the hello's server
// name from memory (it never orders, nor reads storage, during a
// handshake), or, for a TLS-ALPN-01 challenge of a managed name, the
// challenge certificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if !m.isManaged(normalize(hello.ServerName)) {
		return nil, errNotManaged
	}
	// certmagic answers acme-tls/1 hellos (RFC 8737: that protocol alone,
	// and SNI) with the challenge certificate, others from its cache.
	cert, err := m.cfg.GetCertificate(hello)
	if err != nil {
		return nil, err
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("acme: no certificate for %s yet", hello.ServerName)
	}
	return cert, nil
}

// HandleHTTPChallenge answers r when it is an HTTP-01 challenge of this
// Manager (or of another instance sharing its storage) for a managed
// name, and reports whether it did.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if !m.isManaged(normalize(hostOnly(r.Host))) {
		return false
	}
	return m.issuer.HandleHTTPChallenge(w, r)
}

// AnswerHTTPChallenge answers r when it is an HTTP-01 challenge pending
// for its host at this Manager or at another instance sharing its
// storage, whether or not the host is in this Manager's managed set yet,
// and reports whether it did. The caller restricts the hosts: a
// controller answers for its table's ACME names, which another
// controller sharing the storage may be ordering before this one
// manages them.
func (m *Manager) AnswerHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.issuer.HandleHTTPChallenge(w, r)
}

// Failure returns the last error of name's issuance or renewal, until a
// certificate is had; nil when none failed or name is not managed.
func (m *Manager) Failure(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failures[normalize(name)]
}

// Stats returns the counts of certificate operations so far.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Close stops all management: pending orders and retries are cancelled,
// renewals stop. The certificates stay in storage. The Manager serves
// nothing afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for n, cancel := range m.managed {
		cancel()
		delete(m.managed, n)
	}
	m.mu.Unlock()
	m.cancel()
	m.cache.Stop()
	if m.exportDone != nil {
		<-m.exportDone
	}
	return nil
}

func (m *Manager) fail(name string, err error) {
	m.mu.Lock()
	_, managed := m.managed[name]
	if managed {
		m.failures[name] = err
	}
	m.stats.Failed++
	m.mu.Unlock()
	if managed {
		m.log.Warn("ACME certificate failed: the name gets the default certificate (or keeps its current one) and is retried with backoff",
			"name", name, "error", err)
	}
}

// onEvent is certmagic's event callback: it keeps failures and counts,
// and logs what an operator wants to know. It never aborts anything.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	name = normalize(name)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		m.mu.Lock()
		m.stats.Orders++
		m.mu.Unlock()
		m.log.Info("ACME: ordering a certificate", "name", name, "renewal", renewal)
	case "cert_obtained":
		m.mu.Lock()
		m.stats.Obtained++
		delete(m.failures, name)
		m.mu.Unlock()
		m.log.Info("ACME certificate obtained", "name", name, "renewal", renewal, "issuer", data["issuer"])
		m.kickExport()
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("issuance failed")
		}
		m.fail(name, err)
	case "cached_managed_cert":
		sans, _ := data["sans"].([]string)
		var stray []certmagic.SubjectIssuer
		m.mu.Lock()
		m.stats.Loaded++
		for _, n := range sans {
			n = normalize(n)
			if _, ok := m.managed[n]; ok {
				delete(m.failures, n)
			} else {
				stray = append(stray, certmagic.SubjectIssuer{Subject: n})
			}
		}
		m.mu.Unlock()
		if len(stray) > 0 {
			// Loaded for a name that left meanwhile: do not renew it.
			go m.cache.RemoveManaged(stray)
		}
		m.log.Debug("ACME certificate loaded", "names", sans)
		m.kickExport()
	}
	return nil
}
