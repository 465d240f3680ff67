package discovery

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The Interlock 2 / UCP layer-7 service labels. See README.md.
const (
	LabelLBHosts               = "com.docker.lb.hosts"
	LabelLBPort                = "com.docker.lb.port"
	LabelLBNetwork             = "com.docker.lb.network"
	LabelLBContextRoot         = "com.docker.lb.context_root"
	LabelLBContextRootRewrite  = "com.docker.lb.context_root_rewrite"
	LabelLBSSLCert             = "com.docker.lb.ssl_cert"
	LabelLBSSLKey              = "com.docker.lb.ssl_key"
	LabelLBSSLPassthrough      = "com.docker.lb.ssl_passthrough"
	LabelLBSSLOnly             = "com.docker.lb.ssl_only"
	LabelLBSSLACME             = "com.docker.lb.ssl_acme"
	LabelLBSSLBackend          = "com.docker.lb.ssl_backend"
	LabelLBSSLBackendTLSVerify = "com.docker.lb.ssl_backend_tls_verify"
	LabelLBStickyCookie        = "com.docker.lb.sticky_session_cookie"
	LabelLBRedirects           = "com.docker.lb.redirects"
	LabelLBWebSocketEndpoints  = "com.docker.lb.websocket_endpoints"
	LabelLBBackendMode         = "com.docker.lb.backend_mode"
	LabelLBDefaultBackend      = "com.docker.lb.default_backend"
	LabelLBIPHash              = "com.docker.lb.ip_hash"
	LabelLBServiceCluster      = "com.docker.lb.service_cluster"
	// The per-route overrides of Interlock's global backend timeouts and
	// body limit, as for containers (limits.go).
	LabelLBBackendConnectTimeout        = "com.docker.lb.backend_connect_timeout"
	LabelLBBackendResponseHeaderTimeout = "com.docker.lb.backend_response_header_timeout"
	LabelLBBackendIdleTimeout           = "com.docker.lb.backend_idle_timeout"
	LabelLBMaxBodyBytes                 = "com.docker.lb.max_body_bytes"
)

const lbPrefix = "com.docker.lb."

// lbLabels are the known service labels, sorted; read-only.
var lbLabels = []string{
	LabelLBBackendConnectTimeout, LabelLBBackendIdleTimeout, LabelLBBackendMode, LabelLBBackendResponseHeaderTimeout,
	LabelLBContextRoot, LabelLBContextRootRewrite, LabelLBDefaultBackend,
	LabelLBHosts, LabelLBIPHash, LabelLBMaxBodyBytes, LabelLBNetwork, LabelLBPort, LabelLBRedirects,
	LabelLBServiceCluster, LabelLBSSLACME, LabelLBSSLBackend, LabelLBSSLBackendTLSVerify, LabelLBSSLCert,
	LabelLBSSLKey, LabelLBSSLOnly, LabelLBSSLPassthrough, LabelLBStickyCookie,
	LabelLBWebSocketEndpoints,
}

// Backend modes of com.docker.lb.backend_mode.
const (
	modeTask = "task"
	modeVIP  = "vip"
	// modePublished is Interlock's own addition: the port the service
	// publishes, on the backend address (Interlock outside the overlay).
	modePublished = "published"
)

// serviceParticipates reports whether svc asks to be routed.
func serviceParticipates(svc docker.Service) bool {
	_, ok := svc.Labels[LabelLBHosts]
	return ok
}

// asContainer is the container-shaped view of a service that the reader
// and the grouper work on.
func asContainer(svc docker.Service) docker.Container {
	return docker.Container{ID: svc.ID, Name: svc.Name, Created: svc.Created, Labels: svc.Labels}
}

// newServiceReader screens the com.docker.lb.* labels of svc.
func newServiceReader(svc docker.Service) *reader {
	r := &reader{c: asContainer(svc), kind: "service", values: make(map[string]string)}
	for _, key := range slices.Sorted(maps.Keys(svc.Labels)) {
		if !strings.HasPrefix(key, lbPrefix) {
			continue
		}
		if !slices.Contains(lbLabels, key) {
			msg := "unknown label"
			if s := suggest(key, lbLabels); s != "" {
				msg += " (did you mean " + s + "?)"
			}
			r.problem(safeLabel(key), routing.ReasonInvalidLabel, msg+"; known labels are "+strings.Join(lbLabels, ", "))
			continue
		}
		v := svc.Labels[key]
		if err := checkValue(v); err != nil {
			r.invalid(key, err)
			continue
		}
		r.values[key] = v
	}
	return r
}

// redirect is one com.docker.lb.redirects entry that names another host.
type redirect struct {
	from, to string
	spec     spec // the service asking, for precedence and messages
}

// parseService reads every com.docker.lb.* label of svc and returns one
// spec per host name it serves, plus redirects to other hosts. As for
// containers, the specs are only meaningful when there are no problems.
func parseService(svc docker.Service, opts Options) ([]spec, []redirect, []routing.Problem) {
	r := newServiceReader(svc)
	hosts, _ := read(r, LabelLBHosts, parseHostList)

	base := spec{c: r.c, kind: "service", aliases: map[string]string{}}
	base.tls = r.lbTLS()
	base.route = r.lbRoute()
	base.isDefault, _ = read(r, LabelLBDefaultBackend, parseBool)
	if _, ok := r.values[LabelLBServiceCluster]; ok {
		read(r, LabelLBServiceCluster, parseNetworkName) // validated, not used: one cluster per Interlock
	}
	base.backends = r.lbBackends(svc, opts)

	var redirects []redirect
	if raw, ok := r.values[LabelLBRedirects]; ok {
		from, to, err := parseRedirect(raw)
		switch {
		case err != nil:
			r.invalid(LabelLBRedirects, err)
		case slices.Contains(hosts, from.Hostname()) && from.Scheme == "http" && to.Scheme == "https" && to.Host == from.Host:
			// http://app -> https://app is ssl_only by another name.
			if base.tls == nil {
				base.tls = &routing.TLS{}
			}
			base.tls.Only = true
		case slices.Contains(hosts, from.Hostname()):
			r.invalidf(LabelLBRedirects, "redirects %s, a host of this service, to %s; only http -> https of the same host can redirect a served host, redirect another host name instead", quote(from.String()), quote(to.String()))
		default:
			redirects = append(redirects, redirect{from: from.Hostname(), to: to.Scheme + "://" + to.Host})
		}
	}

	r.acmeDefault(base.tls, LabelLBSSLACME, opts)

	specs := make([]spec, 0, len(hosts))
	for _, h := range hosts {
		s := base
		s.host, s.hostLabel = h, LabelLBHosts
		s.backends = slices.Clone(base.backends)
		specs = append(specs, s)
	}
	// Only the first host of the list becomes the default host.
	for i := 1; i < len(specs); i++ {
		specs[i].isDefault = false
	}
	for i := range redirects {
		redirects[i].spec = base
	}
	return specs, redirects, r.problems
}

func (r *reader) lbTLS() *routing.TLS {
	cert, _ := read(r, LabelLBSSLCert, parseCertPath)
	key, _ := read(r, LabelLBSSLKey, parseCertPath)
	only, _ := read(r, LabelLBSSLOnly, parseBool)
	pass, _ := read(r, LabelLBSSLPassthrough, parseBool)
	acme, _ := read(r, LabelLBSSLACME, parseBool)
	hasCert, hasKey := r.has(LabelLBSSLCert), r.has(LabelLBSSLKey)
	switch {
	case hasCert && !hasKey:
		r.invalidf(LabelLBSSLCert, "is set without %s, set both (certificate and key) or neither (default certificate)", LabelLBSSLKey)
	case hasKey && !hasCert:
		r.invalidf(LabelLBSSLKey, "is set without %s, set both (certificate and key) or neither (default certificate)", LabelLBSSLCert)
	}
	if pass && (hasCert || hasKey) {
		r.invalidf(LabelLBSSLPassthrough, "is true, so the proxy holds no certificate for the host; remove %s and %s or the passthrough", LabelLBSSLCert, LabelLBSSLKey)
	}
	switch {
	case acme && (hasCert || hasKey):
		r.invalidf(LabelLBSSLACME, "is true, but %s names a certificate; a host gets its certificate from a file or over ACME, not both, remove one", LabelLBSSLCert)
	case acme && pass:
		r.invalidf(LabelLBSSLACME, "is true, but %s is true too, so the proxy holds no certificate for the host; remove one", LabelLBSSLPassthrough)
	}
	if !(only || pass || hasCert || hasKey || acme) {
		return nil
	}
	return &routing.TLS{CertFile: cert, KeyFile: key, Only: only, Passthrough: pass, ACME: acme}
}

func (r *reader) lbRoute() routing.Route {
	rt := routing.Route{Path: "/", Protocol: routing.HTTP, Balance: routing.RoundRobin}
	if p, ok := read(r, LabelLBContextRoot, parsePath); ok {
		rt.Path = p
	}
	rt.StripPath, _ = read(r, LabelLBContextRootRewrite, parseBool)
	if ws, ok := read(r, LabelLBWebSocketEndpoints, parsePathList); ok {
		for _, p := range ws {
			if !under(p, rt.Path) {
				r.invalidf(LabelLBWebSocketEndpoints, "path %s is not under the context root %s, use a path under it", quote(p), quote(rt.Path))
			}
		}
		rt.WebSocketPaths = ws
	}
	if ipHash, _ := read(r, LabelLBIPHash, parseBool); ipHash {
		rt.Balance = routing.Source
	}
	if c, ok := read(r, LabelLBStickyCookie, parseCookieName); ok {
		rt.StickyCookie = c
	}
	rt.BackendTLS = r.backendTLS(LabelLBSSLBackend, LabelLBSSLBackendTLSVerify)
	rt.Limits = r.limits(lbLimitLabels)
	return rt
}

// lbBackends resolves the service's backends for its backend mode.
func (r *reader) lbBackends(svc docker.Service, opts Options) []routing.Backend {
	port, portOK := read(r, LabelLBPort, parsePort)
	if !r.has(LabelLBPort) {
		r.problem(LabelLBPort, routing.ReasonNoPort, fmt.Sprintf("service %s has no %s, set it to the port its tasks listen on", svc.Name, LabelLBPort))
		return nil
	}
	mode := modeTask
	if m, ok := read(r, LabelLBBackendMode, parseBackendMode); ok {
		mode = m
	}
	if !portOK {
		return nil
	}
	if mode == modePublished {
		for _, p := range svc.Ports {
			if p.Target == port && p.Published != 0 && (p.Proto == "" || p.Proto == "tcp") {
				host := opts.BackendAddress
				if host == "" {
					host = defaultBackendAddress
				}
				return []routing.Backend{{Address: net.JoinHostPort(host, strconv.Itoa(int(p.Published))), Name: svc.Name}}
			}
		}
		r.problem(LabelLBBackendMode, routing.ReasonNoPort, fmt.Sprintf("service %s does not publish target port %d, publish it (docker service update --publish-add %d) or use backend mode task", svc.Name, port, port))
		return nil
	}
	network, ok := r.lbNetwork(svc, opts)
	if !ok {
		return nil
	}
	if mode == modeVIP {
		vip, ok := svc.VIPs[network]
		if !ok {
			r.problem(LabelLBBackendMode, routing.ReasonNoNetwork, fmt.Sprintf("service %s has no virtual IP on network %s (endpoint mode dnsrr?), use backend mode task", svc.Name, quote(network)))
			return nil
		}
		return []routing.Backend{{Address: net.JoinHostPort(vip, strconv.Itoa(int(port))), Name: svc.Name}}
	}
	var out []routing.Backend
	for _, t := range svc.Tasks {
		ip, ok := t.Networks[network]
		if !ok || !t.Routable() {
			continue
		}
		out = append(out, routing.Backend{
			Address:   net.JoinHostPort(ip, strconv.Itoa(int(port))),
			Container: t.ContainerID,
			Name:      svc.Name + "." + strconv.Itoa(t.Slot),
			Task:      t.ID,
			Node:      t.Node,
		})
	}
	return out
}

// lbNetwork picks the network the service's tasks are reached on: its
// label, else Interlock's network setting, else the service's only
// network besides the ingress mesh.
func (r *reader) lbNetwork(svc docker.Service, opts Options) (string, bool) {
	label := ""
	network := opts.Network
	if r.has(LabelLBNetwork) {
		n, ok := read(r, LabelLBNetwork, parseNetworkName)
		if !ok {
			return "", false
		}
		network, label = n, LabelLBNetwork
	}
	var candidates []string
	for _, n := range svc.Networks {
		if n != "ingress" {
			candidates = append(candidates, n)
		}
	}
	switch {
	case network != "" && !slices.Contains(svc.Networks, network):
		r.problem(label, routing.ReasonNoNetwork, fmt.Sprintf("service %s is not attached to network %s (its networks: %s), attach it (docker service update --network-add) or choose another", svc.Name, quote(network), describeNames(candidates)))
		return "", false
	case network != "":
		return network, true
	case len(candidates) == 1:
		return candidates[0], true
	case len(candidates) == 0:
		r.problem(LabelLBNetwork, routing.ReasonNoNetwork, fmt.Sprintf("service %s is attached to no network Interlock can route over, attach it to an overlay network and set %s", svc.Name, LabelLBNetwork))
	default:
		r.problem(LabelLBNetwork, routing.ReasonNoNetwork, fmt.Sprintf("service %s is attached to several networks (%s), set %s to the one to route over", svc.Name, describeNames(candidates), LabelLBNetwork))
	}
	return "", false
}

func describeNames(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// parseHostList parses a comma-separated list of host names.
func parseHostList(v string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty host name in list %s, separate host names with single commas", quote(v))
		}
		h, err := parseHostName(part)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out, nil
}

func parseBackendMode(v string) (string, error) {
	switch v {
	case modeTask, modeVIP, modePublished:
		return v, nil
	}
	return "", fmt.Errorf("backend mode %s is not one of task, vip, published", quote(v))
}

// parseCookieName accepts a conservative cookie name: letters, digits,
// '_', '-' and '.', 1 to 64 of them (a subset of RFC 6265 token that no
// proxy config treats specially).
func parseCookieName(v string) (string, error) {
	if len(v) == 0 || len(v) > 64 {
		return "", fmt.Errorf("cookie name %s must be 1 to 64 characters", quote(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "", fmt.Errorf("cookie name %s may use only letters, digits, '_', '-' and '.'", quote(v))
		}
	}
	return v, nil
}

// parseRedirect parses "FROM,TO": two absolute http(s) URLs of a scheme
// and a host name, with an optional port and no path.
func parseRedirect(v string) (from, to *url.URL, err error) {
	parts := strings.Split(v, ",")
	if len(parts) != 2 {
		return nil, nil, fmt.Errorf("redirect %s must be two URLs, FROM,TO (http://old.example.com,https://new.example.com)", quote(v))
	}
	var urls [2]*url.URL
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			return nil, nil, fmt.Errorf("redirect URL %s must be http:// or https:// and a host name, with no path", quote(strings.TrimSpace(p)))
		}
		if _, err := parseHostName(u.Hostname()); err != nil {
			return nil, nil, fmt.Errorf("redirect URL %s: %w", quote(p), err)
		}
		if port := u.Port(); port != "" {
			if _, err := parsePort(port); err != nil {
				return nil, nil, fmt.Errorf("redirect URL %s: %w", quote(p), err)
			}
		}
		u.Host = strings.ToLower(u.Host)
		u.Path = ""
		urls[i] = u
	}
	return urls[0], urls[1], nil
}
