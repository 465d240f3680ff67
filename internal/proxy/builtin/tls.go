package builtin

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The HTTPS side of the proxy. One handler serves both listeners: the
// plain one (http.Server.Serve) and the TLS one (ServeTLS); a request tells
// which by r.TLS. The TLS listener's certificates come from the live table
// (certs.go), chosen by SNI per handshake with one map lookup.

// hstsHeader is the HTTP Strict Transport Security response header.
const hstsHeader = "Strict-Transport-Security"

// TLSConfig returns the crypto/tls configuration of the HTTPS listener:
// protocol versions, TLS 1.2 cipher suites (those Go implements) and curves
// from Options.TLSProfile; ALPN offering h2 and http/1.1; and a
// GetCertificate that picks the live table's certificate for the client's
// SNI name, or the self-signed default certificate for a name no host
// certificate serves (no SNI, an unknown name, a host without a usable
// certificate of its own). With Options.Certificates, ALPN also offers
// acme-tls/1 (TLS-ALPN-01 challenges) and ACME hosts get its
// certificates. Each call returns a fresh Config; every one follows the
// live table.
//
// Go cannot configure TLS 1.3 suites (it offers all three, as every
// profile does) nor prefer server cipher order (it chooses well itself).
// The old profile's TLS 1.0 and 1.1 work, since MinVersion is set
// explicitly; its DHE and some CBC suites, which Go does not implement,
// are simply not offered.
func (p *Proxy) TLSConfig() *tls.Config {
	cfg := p.profile.GoConfig()
	cfg.GetCertificate = p.getCertificate
	if h2Capable(cfg) {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	} else {
		cfg.NextProtos = []string{"http/1.1"}
	}
	if p.certSource != nil {
		// TLS-ALPN-01 challenges (acme.go): a CA's handshake offers only
		// acme-tls/1, and one with no protocol in common is refused.
		cfg.NextProtos = append(cfg.NextProtos, acmeTLS1)
	}
	return cfg
}

// h2Capable reports whether net/http will serve HTTP/2 with cfg: with TLS
// 1.2 enabled and a cipher list given, it insists on one of the two
// AES-128-GCM ECDHE suites HTTP/2 requires (RFC 9113, 9.2.2).
func h2Capable(cfg *tls.Config) bool {
	if cfg.CipherSuites == nil || cfg.MinVersion >= tls.VersionTLS13 {
		return true
	}
	for _, c := range cfg.CipherSuites {
		if c == tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 || c == tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
			return true
		}
	}
	return false
}

// ServeTLS serves p over TLS on ln with srv until srv is shut down (it
// returns http.ErrServerClosed then, like http.Server.ServeTLS). A nil
// srv.Handler becomes p and a nil srv.TLSConfig becomes p.TLSConfig();
// timeouts, error log and the rest are the caller's. HTTP/2 and
// HTTP/1.1 are negotiated by ALPN; a cipher list without a suite HTTP/2
// requires serves HTTP/1.1 only, with a warning.
//
// With Options.HTTPSPort zero, ln's port becomes the one TLS.Only
// redirects name. The default certificate is made here, before the first
// handshake, if it was not yet.
func (p *Proxy) ServeTLS(srv *http.Server, ln net.Listener) error {
	if _, err := p.defaultCert(); err != nil {
		return err
	}
	if srv.Handler == nil {
		srv.Handler = p
	}
	if srv.TLSConfig == nil {
		srv.TLSConfig = p.TLSConfig()
	}
	if !h2Capable(srv.TLSConfig) {
		p.log.Warn("the TLS cipher list has no suite HTTP/2 requires (ECDHE-ECDSA-AES128-GCM-SHA256 or ECDHE-RSA-AES128-GCM-SHA256): serving HTTP/1.1 only over TLS")
		var protos http.Protocols
		protos.SetHTTP1(true)
		srv.Protocols = &protos
	}
	if p.httpsPort == 0 {
		if a, ok := ln.Addr().(*net.TCPAddr); ok {
			p.setRedirectPort(a.Port)
		}
	}
	// A PROXY header comes before the ClientHello: it is read beneath the
	// SNI reader of passthrough (proxyproto.go).
	return srv.ServeTLS(p.passthroughListener(p.proxyProtocolListener(ln, srv)), "", "")
}

// setRedirectPort sets the port TLS.Only redirects name.
func (p *Proxy) setRedirectPort(port int) {
	s := ""
	if port != 0 && port != 443 {
		s = ":" + strconv.Itoa(port)
	}
	p.redirectPort.Store(&s)
}

// getCertificate is TLSConfig's GetCertificate: the label certificate
// first, then for an ACME host Options.Certificates' (acme.go), else the
// default certificate. A host certificate that expired since it was
// loaded is not served: the client gets the default one, as for any other
// unusable certificate.
func (p *Proxy) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hc := p.table.Load().certs.byName[hostname(hello.ServerName)]; hc != nil {
		if now := time.Now(); now.Before(hc.notAfter) && !now.Before(hc.notBefore) {
			return hc.cert, nil
		}
	}
	if c := p.acmeCertificate(hello); c != nil {
		return c, nil // an ACME host's, or a TLS-ALPN-01 challenge's (acme.go)
	}
	return p.defaultCert()
}

// tlsPolicy applies the HTTPS rules to a request for host h, which has TLS
// settings or came over TLS: a plain request to a TLS.Only or passthrough
// host is redirected to HTTPS; a TLS request to a host without TLS gets 404 (only
// hosts with TLS are served over HTTPS, as with nginx and HAProxy); a TLS
// request to a TLS.Only host gets the HSTS header when it is on. It
// returns the status code when it answered, 0 when the request goes on.
func (p *Proxy) tlsPolicy(w http.ResponseWriter, r *http.Request, h *host) int {
	if r.TLS == nil {
		// A load balancer in front that terminated TLS says so, and is
		// believed only from --forwarded-headers-trusted-ips: otherwise
		// an ssl_only host would redirect its own HTTPS clients forever.
		if h.tls.Only && p.forwardedHTTPS(r) {
			return 0
		}
		// A passthrough host's backends speak only TLS, so plain HTTP is
		// sent there too.
		if h.tls.Only || h.tls.Passthrough {
			return redirect(w, r, "https://"+urlHost(hostname(r.Host))+*p.redirectPort.Load()+r.URL.RequestURI())
		}
		return 0
	}
	if h.tls == nil || h.tls.Passthrough {
		p.counters.noRoute.Add(1)
		writeError(w, http.StatusNotFound, kindNoRoute, fmt.Sprintf("interlock: host %q is not served over HTTPS", h.name))
		return http.StatusNotFound
	}
	if h.tls.Only && p.hsts != "" {
		// Set before the backend's headers are copied in: should the
		// backend send its own, the proxy's comes first, and a browser
		// heeds only the first (RFC 6797, 8.1).
		w.Header().Set(hstsHeader, p.hsts)
	}
	return 0
}

// forwardedHTTPS reports whether a trusted peer says the client came over
// HTTPS (X-Forwarded-Proto: https, or proto=https in Forwarded).
func (p *Proxy) forwardedHTTPS(r *http.Request) bool {
	if len(p.forwardedTrusted) == 0 || !p.forwardedTrusted.containsRemote(r.RemoteAddr) {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https") {
		return true
	}
	// Forwarded: the last element is the one the trusted peer added.
	values := r.Header.Values("Forwarded")
	if len(values) == 0 {
		return false
	}
	elems := strings.Split(values[len(values)-1], ",")
	for part := range strings.SplitSeq(elems[len(elems)-1], ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && strings.EqualFold(k, "proto") {
			return strings.EqualFold(strings.Trim(v, `"`), "https")
		}
	}
	return false
}

// urlHost brackets an IPv6 literal for a URL.
func urlHost(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}
