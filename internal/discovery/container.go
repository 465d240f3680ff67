package discovery

import (
	"fmt"
	"strings"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// participates reports whether c asks to be routed and may be now: it names
// a host, is not the side-loaded proxy, and is Routable. Containers that are
// stopping or unhealthy are left out without a problem: that is not a
// mistake of the user's.
func participates(c docker.Container) bool {
	if _, ext := c.Labels[LabelExtName]; ext {
		return false
	}
	_, hn := c.Labels[LabelHostname]
	_, dn := c.Labels[LabelDomain]
	return (hn || dn) && c.Routable()
}

// parseContainer reads every Interlock label of c. It reports all that is
// wrong with c (one problem per bad label); the spec is only meaningful when
// there are no problems.
func parseContainer(c docker.Container, opts Options) (spec, []routing.Problem) {
	r := newReader(c)
	s := spec{c: c}
	r.host(&s)
	r.aliases(&s)
	r.tls(&s, opts)
	r.route(&s)
	s.backends = []routing.Backend{{Address: r.address(opts), Container: c.ID, Name: c.Name}}
	return s, r.problems
}

// host reads interlock.hostname and interlock.domain: host = hostname.domain
// when both are set, else the one that is.
func (r *reader) host(s *spec) {
	hn, hnOK := read(r, LabelHostname, parseHostName)
	dn, dnOK := read(r, LabelDomain, parseHostName)
	s.hostLabel = LabelHostname
	if !r.has(LabelHostname) {
		s.hostLabel = LabelDomain
	}
	switch {
	case r.has(LabelHostname) && r.has(LabelDomain):
		if !hnOK || !dnOK {
			return
		}
		s.host = hn + "." + dn
		if len(s.host) > maxHostNameLen {
			r.invalidf(LabelHostname, "host name %s (hostname.domain) is %d bytes long, the limit is %d", quote(s.host), len(s.host), maxHostNameLen)
		}
	case hnOK:
		s.host = hn
	case dnOK:
		s.host = dn
	}
}

// aliases reads interlock.alias_domain and interlock.alias_domain.N. An
// alias equal to the host name is dropped: it adds nothing.
func (r *reader) aliases(s *spec) {
	s.aliases = make(map[string]string)
	for _, key := range r.indexed(LabelAliasDomain) {
		a, ok := read(r, key, parseHostName)
		if !ok || a == s.host {
			continue
		}
		if _, dup := s.aliases[a]; !dup {
			s.aliases[a] = key
		}
	}
}

// tls reads the host's TLS settings. ssl_only implies ssl; so do a
// certificate and ssl_acme. Host.TLS stays nil unless one of them asks for
// TLS.
func (r *reader) tls(s *spec, opts Options) {
	ssl, sslOK := read(r, LabelSSL, parseBool)
	only, _ := read(r, LabelSSLOnly, parseBool)
	cert, _ := read(r, LabelSSLCert, parseCertPath)
	key, _ := read(r, LabelSSLCertKey, parseCertPath)
	acme, _ := read(r, LabelSSLACME, parseBool)
	hasCert, hasKey := r.has(LabelSSLCert), r.has(LabelSSLCertKey)
	switch {
	case hasCert && !hasKey:
		r.invalidf(LabelSSLCert, "is set without %s, set both (certificate and key) or neither (default certificate)", LabelSSLCertKey)
	case hasKey && !hasCert:
		r.invalidf(LabelSSLCertKey, "is set without %s, set both (certificate and key) or neither (default certificate)", LabelSSLCert)
	}
	if acme && (hasCert || hasKey) {
		r.invalidf(LabelSSLACME, "is true, but %s names a certificate; a host gets its certificate from a file or over ACME, not both, remove one", LabelSSLCert)
	}
	if sslOK && !ssl && (only || hasCert || hasKey || acme) {
		r.invalidf(LabelSSL, "is false, but %s, %s or a certificate asks for TLS, set it to true or remove it", LabelSSLOnly, LabelSSLACME)
	}
	if ssl || only || hasCert || hasKey || acme {
		s.tls = &routing.TLS{CertFile: cert, KeyFile: key, Only: only, ACME: acme}
	}
	r.acmeDefault(s.tls, LabelSSLACME, opts)
}

// route reads the settings of the route this container serves.
func (r *reader) route(s *spec) {
	rt := routing.Route{Path: "/", Protocol: routing.HTTP}
	if p, ok := read(r, LabelContextRoot, parsePath); ok {
		rt.Path = p
	}
	rt.StripPath, _ = read(r, LabelContextRootRewrite, parseBool)
	if ws, ok := read(r, LabelWebSocketEndpoint, parsePathList); ok {
		for _, p := range ws {
			if !under(p, rt.Path) {
				r.invalidf(LabelWebSocketEndpoint, "path %s is not under the context root %s, use a path under it", quote(p), quote(rt.Path))
			}
		}
		rt.WebSocketPaths = ws
	}
	if p, ok := read(r, LabelProtocol, parseProtocol); ok {
		rt.Protocol = p
	}
	if rt.Protocol == routing.TCP {
		// A tcp route takes the whole host: HTTP path settings would be
		// silently ignored, so say so. Their neutral values are fine.
		for l, set := range map[string]bool{
			LabelContextRoot:        rt.Path != "/",
			LabelContextRootRewrite: rt.StripPath,
			LabelWebSocketEndpoint:  r.has(LabelWebSocketEndpoint),
			// A tcp route has no request, response or keep-alive pool;
			// only the connect timeout means something for it.
			LabelBackendResponseHeaderTimeout: r.has(LabelBackendResponseHeaderTimeout),
			LabelBackendIdleTimeout:           r.has(LabelBackendIdleTimeout),
			LabelMaxBodyBytes:                 r.has(LabelMaxBodyBytes),
		} {
			if set {
				r.invalidf(l, "has no meaning for protocol tcp (a tcp route takes the whole host), remove it or use protocol http")
			}
		}
	}
	rt.HealthCheck = r.healthCheck()
	rt.Balance = r.balance()
	for _, key := range r.indexed(LabelBackendOption) {
		if o, ok := read(r, key, parseBackendOption); ok {
			rt.BackendOptions = append(rt.BackendOptions, o)
		}
	}
	rt.BackendTLS = r.backendTLS(LabelSSLBackend, LabelSSLBackendTLSVerify)
	rt.Limits = r.limits(limitLabels)
	s.route = rt
}

func (r *reader) healthCheck() *routing.HealthCheck {
	p, ok := read(r, LabelHealthCheck, parsePath)
	interval, intervalOK := read(r, LabelHealthCheckInterval, parseInterval)
	if r.has(LabelHealthCheckInterval) && !r.has(LabelHealthCheck) {
		r.invalidf(LabelHealthCheckInterval, "is set without %s, add a health check path or remove the interval", LabelHealthCheck)
	}
	if !ok {
		return nil
	}
	if !intervalOK {
		interval = defaultInterval
	}
	return &routing.HealthCheck{Path: p, Interval: interval}
}

// balance folds interlock.ip_hash into the algorithm: ip_hash=true means
// routing.Source, and any other explicit algorithm beside it is a mistake.
func (r *reader) balance() routing.Balance {
	b, bOK := read(r, LabelBalanceAlgorithm, parseBalance)
	ipHash, _ := read(r, LabelIPHash, parseBool)
	switch {
	case ipHash && bOK && b != routing.Source:
		r.invalidf(LabelIPHash, "is true, which means balance algorithm %s, but %s is %s, remove one of them", routing.Source, LabelBalanceAlgorithm, quote(string(b)))
		return b
	case bOK:
		return b
	case ipHash:
		return routing.Source
	}
	return routing.RoundRobin
}

// backendTLS reads the backend TLS switch and its verify mode from the
// labels of either dialect.
func (r *reader) backendTLS(onLabel, verifyLabel string) *routing.BackendTLS {
	on, onOK := read(r, onLabel, parseBool)
	verify, verifyOK := read(r, verifyLabel, parseVerify)
	if r.has(verifyLabel) && (!r.has(onLabel) || onOK && !on) {
		r.invalidf(verifyLabel, "is set but %s is not true, set %s=true or remove it", onLabel, onLabel)
	}
	if !on {
		return nil
	}
	if !verifyOK {
		verify = true
	}
	return &routing.BackendTLS{Verify: verify}
}

// under reports whether p is prefix root or lies below it.
func under(p, root string) bool {
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}

// address reads interlock.port and interlock.network and resolves the
// backend address; "" when a problem was recorded.
func (r *reader) address(opts Options) string {
	port, portOK := read(r, LabelPort, parsePort)
	network, netLabel := opts.Network, ""
	if r.has(LabelNetwork) {
		n, ok := read(r, LabelNetwork, parseNetworkName)
		if !ok {
			return ""
		}
		network, netLabel = n, LabelNetwork
	}
	if r.has(LabelPort) && !portOK {
		return ""
	}
	if network != "" {
		return r.networkAddress(port, network, netLabel)
	}
	return r.publishedAddress(port, opts.BackendAddress)
}

// describePorts lists ports for a message, "none" for none.
func describePorts(ports []uint16) string {
	if len(ports) == 0 {
		return "none"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}
