package builtin

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// Certificates from ACME (routing.TLS.ACME, interlock.ssl_acme). The proxy
// does not speak ACME itself: Options.Certificates does (internal/acme,
// with certmagic), behind the narrow CertSource interface, so the proxy
// stays free of it and testable without a CA. The proxy's part is to tell
// the source which names the live table wants (Sync, on every Apply), to
// answer the CA's challenges for those names only (HTTP-01 on the plain
// listener, TLS-ALPN-01 on the TLS one), to serve the source's
// certificate by SNI after the label certificates, and to report names
// without one (CertProblems).

// CertSource supplies certificates the proxy does not load from files.
// Every method is safe for concurrent use and must not block on the
// network: Sync is called with Apply's lock held, the others per
// handshake or per request.
type CertSource interface {
	// Sync tells the source every name that wants a certificate from it
	// now (the names of the live table's ACME hosts, sorted): it starts
	// getting certificates for new names and stops renewing those no
	// longer listed. It returns at once; issuance goes on in the
	// background.
	Sync(names []string)
	// GetCertificate returns the certificate for the client hello's
	// server name, or for a TLS-ALPN-01 challenge (ALPN "acme-tls/1") the
	// challenge certificate. It is only asked about names Sync listed; an
	// error or nil means it has none (yet), and the default certificate
	// is served.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// HandleHTTPChallenge answers an HTTP-01 challenge request
	// (/.well-known/acme-challenge/TOKEN) when it is one the source is
	// waiting for, and reports whether it did.
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool
	// Failure says why name has no certificate from the source: the last
	// issuance or renewal error, until a certificate is had. Nil while
	// none failed (a first issuance still under way is not a failure).
	Failure(name string) error
}

// The CertProblem reasons of ACME hosts.
const (
	// CertACMEOff: the host asks for ACME, but ACME is not configured
	// (--acme-hosts off); it gets the default certificate.
	CertACMEOff = "acme_off"
	// CertACMEFailed: issuance or renewal failed (CertSource.Failure);
	// the host gets the default certificate, or keeps serving the one it
	// had, while the source retries with backoff.
	CertACMEFailed = "acme_failed"
)

// acmeTLS1 is the ALPN protocol of TLS-ALPN-01 challenges (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// acmeChallengePrefix is the path of HTTP-01 challenges (RFC 8555, 8.3).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// acmeHost reports whether h gets its certificate over ACME.
func acmeHost(h *host) bool {
	return h != nil && h.tls != nil && h.tls.ACME && !h.tls.Passthrough && h.tls.CertFile == ""
}

// acmeNames returns the names (primary names and aliases) of t's ACME
// hosts, sorted.
func acmeNames(t *table) []string {
	var names []string
	for n, h := range t.hosts {
		if acmeHost(h) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// syncACME hands the ACME names of the compiled table ct to the
// certificate source; without one, it warns about hosts that ask for ACME
// (once per change). Apply holds p.mu.
func (p *Proxy) syncACME(ct *table) {
	names := acmeNames(ct)
	if p.certSource != nil {
		p.certSource.Sync(names)
		return
	}
	if !slices.Equal(names, p.acmeOff) {
		if len(names) > 0 {
			p.log.Warn("hosts ask for ACME certificates (ssl_acme) but ACME is off (--acme-hosts): they get the default certificate", "names", names)
		}
		p.acmeOff = names
	}
}

// acmeCertificate returns the certificate source's certificate for the
// hello when its server name is an ACME host's, nil otherwise (then the
// default certificate is served). TLS-ALPN-01 challenges come here too:
// the source answers them with the challenge certificate.
func (p *Proxy) acmeCertificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	if p.certSource == nil {
		return nil
	}
	name := hostname(hello.ServerName)
	if !acmeHost(p.table.Load().hosts[name]) {
		return nil
	}
	cert, err := p.certSource.GetCertificate(hello)
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		p.log.Debug("no ACME certificate (yet): serving the default certificate", "name", name, "error", err)
		return nil
	}
	return cert
}

// acmeChallenge answers r when it is an HTTP-01 challenge for a name of an
// ACME host of t that the certificate source is waiting for, and reports
// whether it did. Challenges for other hosts go on to their backends,
// which may be solving their own.
func (p *Proxy) acmeChallenge(w http.ResponseWriter, r *http.Request, t *table) bool {
	if !strings.HasPrefix(r.URL.Path, acmeChallengePrefix) || !acmeHost(t.hosts[hostname(r.Host)]) {
		return false
	}
	return p.certSource.HandleHTTPChallenge(w, r)
}

// withACMEProblems adds to problems, the live table's certificate file
// problems, one problem per ACME name without a certificate: every one
// when ACME is off, the failed ones otherwise. They are computed now, not
// at Apply, because issuance fails and recovers between Applies. The
// result is sorted by host, path, reason and message.
func (p *Proxy) withACMEProblems(problems []CertProblem) []CertProblem {
	t := p.table.Load()
	hosts := map[*host][]string{}
	for n, h := range t.hosts {
		if acmeHost(h) {
			hosts[h] = append(hosts[h], n)
		}
	}
	if len(hosts) == 0 {
		return problems
	}
	for _, h := range slices.SortedFunc(maps.Keys(hosts), func(a, b *host) int { return cmp.Compare(a.name, b.name) }) {
		if p.certSource == nil {
			problems = append(problems, CertProblem{Host: h.name, Reason: CertACMEOff,
				Message: "asks for an ACME certificate (ssl_acme), but ACME is off; set --acme-hosts labelled (and --acme-email) or remove the label; the default certificate is served"})
			continue
		}
		names := hosts[h]
		slices.Sort(names)
		for _, n := range names {
			if err := p.certSource.Failure(n); err != nil {
				problems = append(problems, CertProblem{Host: h.name, Reason: CertACMEFailed,
					Message: fmt.Sprintf("ACME certificate for %s: %v; retried with backoff, and until one is issued the name gets the default certificate (a failed renewal keeps the current one)", n, err)})
			}
		}
	}
	slices.SortFunc(problems, func(a, b CertProblem) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Message, b.Message))
	})
	return problems
}
