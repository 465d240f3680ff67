package nginx

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// View is what a template sees: the routing table turned into nginx terms,
// every value typed and checked. It is documented field by field in
// README.md ("The template view"); custom templates may rely on every field
// named there.
type View struct {
	// HTTP and HTTPS are where nginx listens.
	HTTP, HTTPS Listen
	// TLSListen is where the HTTPS servers of http{} listen: the HTTPS
	// address, or, with Passthrough, an internal unix socket the stream
	// block hands them the connections it does not pass through, with a
	// PROXY protocol header carrying the client's address.
	TLSListen TLSListen
	// Passthrough is the SNI passthrough of the HTTPS address
	// (routing.TLS.Passthrough): nil when no passthrough host has a
	// backend, and then no stream block is rendered.
	Passthrough *Passthrough
	// RedirectPort is what an ssl_only redirect appends to $host: "" when
	// HTTPS listens on 443, else ":PORT".
	RedirectPort string
	// Runtime are the files and directories of the nginx process itself.
	Runtime Runtime
	// TLS is the server-side TLS profile and the default certificate.
	TLS TLS
	// BackendCA is the CA bundle that verifies backends (ssl_backend with
	// verification).
	BackendCA string
	// Upstreams are one per route that has backends, in table order
	// (hosts by name, routes most specific first).
	Upstreams []Upstream
	// Servers are one per host with at least one HTTP route, sorted by host.
	Servers []Server
	// Skipped are what the driver could not render, with why: tcp routes
	// (HAProxy only), certificates that are missing.
	Skipped []Skip
	// Default is the host that answers names no server claims
	// (routing.Host.Default); "" when there is none, and such requests get
	// the 404 server. DefaultTLS is true when that host answers unknown
	// names over HTTPS too (it has an HTTPS server): the HTTPS listener
	// then has no handshake-refusing default server.
	Default    string
	DefaultTLS bool
	// PlainNames are the names of the hosts without HTTPS, listed only when
	// DefaultTLS: over HTTPS they are refused (as without a default host)
	// rather than answered by the default host.
	PlainNames []string
	// Redirects is true when a server redirects (Server.RedirectTo or
	// Server.RedirectHTTPS): the template then renders the map that picks
	// 301 or 308 by method.
	Redirects bool
	// TrustedHTTPS is true when a server has Server.TrustedHTTPS, and
	// TrustedHTTPSACME when one of those also has Server.ACMEChallenge:
	// the template then renders the maps that decide, per request, whether
	// such a server redirects ($interlock_https_redirect, and
	// $interlock_https_redirect_acme that spares the challenges).
	TrustedHTTPS, TrustedHTTPSACME bool
	// Sticky is true when an upstream has a sticky cookie: the template
	// then renders the map of the address that answered last.
	Sticky bool
	// Edge is what nginx believes about its clients, logs and limits
	// (Settings.Edge): PROXY protocol, forwarded headers, access log,
	// timeouts, header and body limits.
	Edge EdgeView
	// ACMEChallenge is the host:port the servers with
	// Server.ACMEChallenge pass HTTP-01 challenges to (Interlock's
	// responder); "" when none is configured.
	ACMEChallenge string
}

// Listen is one nginx listen address.
type Listen struct {
	// Addr is the argument of the listen directive: "8080",
	// "127.0.0.1:8080" or "[::1]:8080".
	Addr string
	// Port is the port alone.
	Port string
}

// TLSListen is the listen address of the HTTPS servers of http{}.
type TLSListen struct {
	// Addr is the listen argument: View.HTTPS.Addr, or "unix:PATH".
	Addr string
	// ProxyProtocol is true when the listener takes a PROXY protocol
	// header (listen ... proxy_protocol): behind the stream block (with
	// Passthrough), which only the unix socket's clients may send
	// (set_real_ip_from unix:), or with Edge.ProxyProtocol, from the
	// trusted networks (Edge.RealIPFrom); $remote_addr then becomes the
	// client's address.
	ProxyProtocol bool
}

// Passthrough is the stream block that routes the HTTPS address by the
// server name of each ClientHello (ssl_preread): a passthrough host's
// connections go byte for byte to one of its backends, which terminates
// TLS itself; every other connection goes to the HTTPS servers of http{}
// (View.TLSListen). The stream block sends a PROXY protocol header on
// both ways, so passthrough connections take a second hop, the Relay
// server, which reads it (the client's address then balances, as
// $remote_addr) and connects to the backend without one: the backend
// sees the proxy's address.
type Passthrough struct {
	// Module is the load_module argument of nginx's stream module (a
	// dynamic module in Debian's nginx); "" when it is compiled in.
	Module string
	// Terminate is View.TLSListen.Addr, the upstream of every connection
	// that is not passed through ("unix:PATH").
	Terminate string
	// Relay is the listen address of the second hop ("unix:PATH").
	Relay string
	// Hosts are the passthrough hosts with a backend, sorted by name.
	Hosts []PassthroughHost
}

// PassthroughHost is one passthrough host: connections whose SNI is one
// of Names go to Upstream.
type PassthroughHost struct {
	Host  string
	Names []string
	// Route is the route whose backends take the connections: the host's
	// "/" route, or else its shortest path (as the built-in proxy).
	Route    string
	Upstream StreamUpstream
}

// StreamUpstream is a stream upstream block: a passthrough route's
// backends.
type StreamUpstream struct {
	// Name is "pt_" + host + "_" + 10 hex digits, like an http upstream.
	Name string
	// Balance is "" (round robin), "least_conn" or "random"; HashClient
	// replaces it for balance source: "hash $remote_addr consistent".
	Balance    string
	HashClient bool
	Servers    []UpstreamServer
}

// Runtime holds the paths of the nginx process. An empty field means the
// template leaves the directive out, so nginx's compiled-in default applies
// (the right thing inside a container image).
type Runtime struct {
	PidFile string
	// ErrorLog is the error_log target: "stderr" or a file.
	ErrorLog string
	// TempDir is the parent of the client_body/proxy/... temp paths.
	TempDir string
}

// TLS is the TLS profile in nginx's terms.
type TLS struct {
	// Enabled is true when any server has TLS: only then is the HTTPS
	// listener rendered at all.
	Enabled bool
	// Profile is the profile's name (modern, intermediate, old).
	Profile string
	// Protocols is the ssl_protocols value ("TLSv1.2 TLSv1.3").
	Protocols string
	// Ciphers is the ssl_ciphers value; "" when the profile has no TLS 1.2.
	Ciphers string
	// Curves is the ssl_ecdh_curve value.
	Curves              string
	PreferServerCiphers bool
	SessionTimeout      string
	// DefaultCert and DefaultKey serve TLS hosts that name no certificate.
	DefaultCert, DefaultKey string
}

// Upstream is one nginx upstream block: the backends of one route.
type Upstream struct {
	// Name is derived from the host and the route path ("u_" + host + "_" +
	// 10 hex digits of a hash of both): deterministic, unique and safe as a
	// bare nginx word; never raw label text.
	Name string
	// Balance is the balancing directive: "" (round robin), "least_conn",
	// "ip_hash" or "random".
	Balance string
	// Keepalive is the number of idle connections kept per worker.
	Keepalive int
	// KeepaliveTimeout is the route's own keepalive_timeout
	// (routing.Limits.IdleTimeout), "" for Edge.UpstreamKeepaliveTimeout.
	KeepaliveTimeout string
	Servers          []UpstreamServer
	// Sticky is the route's sticky session cookie, nil without one. It
	// replaces Balance: "hash $VAR_key".
	Sticky *Sticky
}

// Sticky is a route's sticky session cookie (routing.Route.StickyCookie)
// in nginx terms. The cookie's value names a backend exactly as the
// built-in proxy's does (16 hex digits at most: the 64-bit FNV-1a hash of
// the backend's address), so a client pinned by one driver stays pinned by
// the other. nginx OSS has no sticky directive; the template builds it
// from maps and the upstream's hash:
//
//	$VAR_cookie     the cookie's value, captured from the Cookie header by Match
//	$VAR_key        the hash key of the backend the cookie names; Fallback
//	                for a request without such a cookie
//	$VAR_served     the cookie value of the backend that answered (the last
//	                address of $upstream_addr)
//	$VAR_pin        that value, when it is not the one the request carried
//	$VAR_set_cookie the Set-Cookie header that pins the client, or "" (no
//	                header)
//
// A key is chosen for each backend (Key) such that nginx's hash (the
// Cache::Memcached one: ((crc32(key) >> 16) & 0x7fff) mod the number of
// servers) picks exactly that backend first; when it is down, nginx
// rehashes to another live one, which then pins the client.
type Sticky struct {
	// Var prefixes the variables: "interlock_sticky_N", N counting the
	// sticky upstreams in order.
	Var string
	// Cookie is the cookie's name.
	Cookie string
	// Match is the map regex that captures the cookie's value into
	// $VAR_value; the template writes it as a map key, "~" + Match quoted
	// with nginxLiteral.
	Match string
	// Fallback names the variable (without '$') hashed for a request
	// without a cookie that names a backend: "" (nginx then balances round
	// robin), "remote_addr" (balance source) or "request_id" (random).
	Fallback string
	// Backends are the route's distinct backends, in server order.
	Backends []StickyBackend
}

// StickyBackend is one backend of a sticky route.
type StickyBackend struct {
	// ID is the cookie value that names the backend.
	ID string
	// Key is the hash key that makes nginx pick it.
	Key string
	// Address is the backend's address as $upstream_addr shows it.
	Address string
	// SetCookie is the whole Set-Cookie value that pins a client to it,
	// byte for byte the built-in proxy's: "NAME=ID; Path=PATH; HttpOnly;
	// SameSite=Lax".
	SetCookie string
}

// UpstreamServer is one backend.
type UpstreamServer struct {
	// Address is ip:port (IPv6 in brackets).
	Address string
	// MaxFails and FailTimeout are nginx's passive ejection: after MaxFails
	// failures the server is skipped for FailTimeout.
	MaxFails    int
	FailTimeout string
}

// Server is one host: its plain-HTTP server and, with TLS, its HTTPS one.
type Server struct {
	// Host is the primary name; Names is Host followed by the aliases.
	Host  string
	Names []string
	// TLS is nil for a plain-HTTP host.
	TLS *ServerTLS
	// Locations are the host's routes, most specific first.
	Locations []Location
	// BodyLimits are the routes' own body limits (LocationLimits
	// .BodyTooLarge), each a named location @interlock_body_too_large_N
	// that answers the built-in proxy's 413 for it.
	BodyLimits []int64
	// CatchAll is true when no route covers "/": the template then answers
	// paths outside every route with 404.
	CatchAll bool
	// Default makes this server the default_server of its listeners: it
	// answers names no server claims (routing.Host.Default).
	Default bool
	// RedirectTo, when set, is the base URL ("https://new.example.com")
	// the server redirects every request to, path and query kept
	// ($request_uri): 301 for GET and HEAD, 308 otherwise, with
	// Cache-Control: no-store, as the built-in proxy answers. Such a
	// server has no locations.
	RedirectTo string
	// RedirectHTTPS makes the plain-HTTP server redirect every request to
	// https://$host[:PORT]$request_uri (View.RedirectPort): 301 for GET
	// and HEAD, 308 otherwise, with Cache-Control: no-store, as the
	// built-in proxy answers. Set for ssl_only hosts (TLS.Only) and
	// passthrough hosts.
	RedirectHTTPS bool
	// TrustedHTTPS, with RedirectHTTPS, spares from the redirect the
	// requests that a peer in Edge.ForwardedFrom says came over HTTPS
	// (X-Forwarded-Proto: https, or proto=https in the last element of
	// Forwarded: a load balancer in front that terminated TLS): they are
	// served by the locations, as the built-in proxy does. Set for ssl_only
	// hosts (not passthrough ones) when Edge.ForwardedFrom is not empty.
	TrustedHTTPS bool
	// Passthrough marks a passthrough host (routing.TLS.Passthrough): its
	// TLS connections are View.Passthrough's, so it has no HTTPS server
	// (TLS is nil) and no locations; plain HTTP is redirected.
	Passthrough bool
	// ACMEChallenge makes the plain-HTTP server pass HTTP-01 challenges
	// (/.well-known/acme-challenge/) to View.ACMEChallenge, before any
	// redirect: set for ACME hosts (routing.TLS.ACME) when a challenge
	// address is configured.
	ACMEChallenge bool
}

// ServerTLS is a host's certificate, as paths nginx reads.
type ServerTLS struct {
	// Cert and Key serve the primary name.
	Cert, Key string
	// Only redirects plain HTTP to HTTPS (interlock.ssl_only).
	Only bool
	// Certs are the host's HTTPS servers, one per certificate, the
	// primary name's first: one with every name, except for an ACME host,
	// whose names have a certificate each (names still waiting for theirs
	// share the default certificate). A template that renders only Cert
	// and Key serves the primary name's certificate for every name.
	Certs []TLSCert
}

// TLSCert is one certificate of a host and the names it serves.
type TLSCert struct {
	Names     []string
	Cert, Key string
}

// Location is one nginx location block.
type Location struct {
	// Exact makes it "location = PATH", else a prefix "location PATH".
	Exact bool
	// Path is what nginx matches: the route path with its %XX escapes
	// decoded, since nginx matches the decoded request path. Quote it with
	// nginxLocation.
	Path string
	// Route is the route path this location belongs to, as in the table.
	Route string
	// Upstream is the upstream name; "" when the route has no backend
	// (the template answers 503).
	Upstream string
	// Pass is the whole proxy_pass argument: scheme, upstream and, when the
	// route strips its prefix, the replacement URI ("http://u_x/"). A safe
	// bare word (nginxWord).
	Pass string
	// WebSocket marks a websocket endpoint: long read and send timeouts.
	WebSocket bool
	// BackendTLS is nil for plain-HTTP backends.
	BackendTLS *BackendTLS
	// SetCookie is the variable (without '$') holding the route's sticky
	// Set-Cookie header (Sticky), "" when the route has no sticky cookie.
	SetCookie string
	// LogRoute is the access log's route field ("HOST/PATH", set into
	// $interlock_route), "" without an access log.
	LogRoute string
	// Limits are the route's overrides of the backend timeouts and the
	// body limit (route_limits.go), nil without any.
	Limits *LocationLimits
}

// BackendTLS says the backends speak HTTPS.
type BackendTLS struct {
	Verify bool
	// CA is the bundle that verifies them (View.BackendCA).
	CA string
}

// Skip is something left out of the rendered file.
type Skip struct {
	Host, Path, Reason string
}

// Settings are the inputs of a view that come from Interlock's
// configuration rather than from the table.
type Settings struct {
	// HTTPAddr and HTTPSAddr are host:port listen addresses (port > 0).
	HTTPAddr, HTTPSAddr string
	// CertDir is the directory label certificate paths are relative to, as
	// nginx sees it (absolute).
	CertDir string
	// DefaultCert and DefaultKey serve TLS hosts without a certificate of
	// their own.
	DefaultCert, DefaultKey string
	// Profile is the TLS profile; the zero value means tlsconf.Default.
	Profile tlsconf.Profile
	Runtime Runtime
	// BackendCA defaults to /etc/ssl/certs/ca-certificates.crt.
	BackendCA string
	// CertCheck, when set, judges the label certificates (TLS.CertFile
	// and KeyFile) of a table's hosts: why each host whose certificate
	// cannot be served is refused, by primary name. Such a host gets the
	// default certificate and is listed in View.Skipped, rather than
	// failing the whole file. Without it, CertMissing, when set, reports
	// whether a certificate file (absolute path) cannot be read, with the
	// same effect. The default certificate is not checked.
	CertCheck   func(t routing.Table) map[string]string
	CertMissing func(path string) bool
	// certWhy is CertCheck's verdict on the table being viewed.
	certWhy map[string]string
	// StreamModule is the load_module argument for nginx's stream module,
	// rendered only with passthrough hosts; "" when nginx has it compiled
	// in. ModuleMissing, when set, reports whether that file cannot be
	// read: passthrough hosts are then left out of the stream block (and
	// listed in View.Skipped) rather than failing the whole file.
	StreamModule  string
	ModuleMissing func(path string) bool
	// SocketDir is where the internal unix sockets of SNI passthrough are
	// (socketTLS, socketRelay), as nginx sees it; "" leaves passthrough
	// hosts out of the stream block (listed in View.Skipped).
	SocketDir string
	// Edge is the PROXY protocol, forwarded headers, access log, timeouts
	// and limits; the zero value renders none of them (View.Edge).
	Edge Edge
	// ACMECert, when set, returns the file (certificate chain and key, as
	// nginx reads it) of an ACME name's certificate, "" while there is
	// none; ACME hosts' names without one get the default certificate.
	ACMECert func(name string) string
	// ACMEChallenge is the host:port ACME hosts' HTTP-01 challenges are
	// passed to (Interlock's responder); "" passes none.
	ACMEChallenge string
}

// The internal unix sockets of SNI passthrough, in Settings.SocketDir.
const (
	socketTLS   = "interlock-tls.sock"
	socketRelay = "interlock-passthrough.sock"
)

// maxSocketPath is the longest unix socket path nginx takes (sun_path is
// 108 bytes, NUL included).
const maxSocketPath = 107

// Tuning that is not a setting.
const (
	keepalive       = 32
	maxFails        = 1
	failTimeout     = "10s"
	defaultCABundle = "/etc/ssl/certs/ca-certificates.crt"
)

// NewView turns a normalized table into a View.
func NewView(t routing.Table, s Settings) (View, error) {
	v := View{BackendCA: s.BackendCA, Runtime: s.Runtime}
	if v.BackendCA == "" {
		v.BackendCA = defaultCABundle
	}
	var err error
	if v.Edge, err = edgeView(s.Edge); err != nil {
		return View{}, err
	}
	if v.HTTP, err = listen(s.HTTPAddr); err != nil {
		return View{}, fmt.Errorf("http address: %w", err)
	}
	if v.HTTPS, err = listen(s.HTTPSAddr); err != nil {
		return View{}, fmt.Errorf("https address: %w", err)
	}
	if v.HTTPS.Port != "443" {
		v.RedirectPort = ":" + v.HTTPS.Port
	}
	p := s.Profile
	if p.Name == "" {
		p, _ = tlsconf.Lookup(tlsconf.Default)
	}
	v.TLS = TLS{
		Profile: p.Name, Protocols: p.NginxProtocols(), Curves: p.OpenSSLCurves(),
		PreferServerCiphers: p.PreferServerCiphers, SessionTimeout: p.SessionTimeout,
		DefaultCert: s.DefaultCert, DefaultKey: s.DefaultKey,
	}
	if p.HasTLS12() {
		v.TLS.Ciphers = p.OpenSSLCiphers()
	}
	if s.CertCheck != nil {
		s.certWhy = s.CertCheck(t)
	}
	if s.ACMEChallenge != "" {
		if err := checkHostPort(s.ACMEChallenge); err != nil {
			return View{}, fmt.Errorf("ACME challenge address: %w", err)
		}
		v.ACMEChallenge = s.ACMEChallenge
	}
	sticky := 0
	var through []PassthroughHost
	for _, h := range t.Hosts {
		srv, ups, pt, skips, err := server(h, s, v.BackendCA, &sticky)
		if err != nil {
			return View{}, err
		}
		v.Skipped = append(v.Skipped, skips...)
		if len(srv.Locations) == 0 && srv.RedirectTo == "" && !srv.Passthrough {
			// Only tcp routes (or none): nothing for nginx to answer, and
			// not a default host either, as in the built-in proxy.
			continue
		}
		if pt != nil {
			through = append(through, *pt)
		}
		if srv.TLS != nil {
			v.TLS.Enabled = true
		}
		if h.Default {
			if v.Default != "" {
				return View{}, fmt.Errorf("hosts %s and %s are both the default host: only one can be", v.Default, h.Name)
			}
			v.Default, v.DefaultTLS, srv.Default = h.Name, srv.TLS != nil, true
		}
		v.Redirects = v.Redirects || srv.RedirectTo != "" || srv.RedirectHTTPS
		if srv.RedirectHTTPS && !srv.Passthrough && len(v.Edge.ForwardedFrom) > 0 {
			srv.TrustedHTTPS = true
			v.TrustedHTTPS = true
			v.TrustedHTTPSACME = v.TrustedHTTPSACME || srv.ACMEChallenge
		}
		v.Servers = append(v.Servers, srv)
		v.Upstreams = append(v.Upstreams, ups...)
	}
	v.Sticky = sticky > 0
	v.TLSListen = TLSListen{Addr: v.HTTPS.Addr, ProxyProtocol: v.Edge.ProxyProtocol}
	if len(through) > 0 {
		pt, reason := passthroughView(s, through)
		if reason != "" {
			for _, h := range through {
				v.Skipped = append(v.Skipped, Skip{Host: h.Host, Path: h.Route, Reason: reason})
			}
		} else {
			v.Passthrough, v.TLS.Enabled = pt, true
			v.TLSListen = TLSListen{Addr: pt.Terminate, ProxyProtocol: true}
		}
	}
	if v.DefaultTLS {
		for _, srv := range v.Servers {
			if srv.TLS == nil {
				v.PlainNames = append(v.PlainNames, srv.Names...)
			}
		}
	}
	if v.TLS.Enabled && (v.TLS.DefaultCert == "" || v.TLS.DefaultKey == "") {
		// Without a default certificate, hosts that name none cannot be
		// served; server() already used it, so this is a settings bug.
		for _, srv := range v.Servers {
			if srv.TLS != nil && (srv.TLS.Cert == "" || srv.TLS.Key == "") {
				return View{}, fmt.Errorf("host %s uses the default certificate, but none is configured", srv.Host)
			}
		}
	}
	return v, nil
}

// listen turns host:port into a listen argument.
func listen(addr string) (Listen, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Listen{}, fmt.Errorf("%q is not host:port", addr)
	}
	if port == "" || port == "0" || strings.Trim(port, "0123456789") != "" {
		return Listen{}, fmt.Errorf("%q: nginx needs a fixed port from 1 to 65535", addr)
	}
	switch {
	case host == "":
		return Listen{Addr: port, Port: port}, nil
	case strings.Contains(host, ":"):
		return Listen{Addr: "[" + host + "]:" + port, Port: port}, nil
	}
	return Listen{Addr: host + ":" + port, Port: port}, nil
}

// passthroughView builds the stream block for the passthrough hosts, or
// says why it cannot be rendered: the stream module or the socket
// directory is missing.
func passthroughView(s Settings, hosts []PassthroughHost) (*Passthrough, string) {
	const leftOut = "; its TLS connections are not passed through (plain HTTP is still redirected to HTTPS)"
	if s.StreamModule != "" && s.ModuleMissing != nil && s.ModuleMissing(s.StreamModule) {
		return nil, fmt.Sprintf("SNI passthrough needs nginx's stream module, and %s cannot be read (Debian package libnginx-mod-stream)%s", s.StreamModule, leftOut)
	}
	if s.SocketDir == "" {
		return nil, "SNI passthrough needs a directory for its unix sockets, and none is configured" + leftOut
	}
	sock := func(name string) (string, error) {
		p := filepath.Join(s.SocketDir, name)
		if len(p) > maxSocketPath {
			return "", fmt.Errorf("SNI passthrough: the unix socket path %s is %d bytes, over the %d nginx takes; choose a shorter state directory", p, len(p), maxSocketPath)
		}
		w, err := nginxWord("unix:" + p)
		if err != nil {
			return "", fmt.Errorf("SNI passthrough: the unix socket path %s cannot stand unquoted in nginx.conf; choose a state directory of letters, digits and ._-/ only", p)
		}
		return w, nil
	}
	terminate, err := sock(socketTLS)
	if err != nil {
		return nil, err.Error() + leftOut
	}
	relay, err := sock(socketRelay)
	if err != nil {
		return nil, err.Error() + leftOut
	}
	return &Passthrough{Module: s.StreamModule, Terminate: terminate, Relay: relay, Hosts: hosts}, ""
}

// checkHostPort checks that addr is an IP or host name and a port, which
// nginx can proxy to.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
		return fmt.Errorf("%q: want a port 1-65535", addr)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if _, err := serverName(host); err != nil {
			return fmt.Errorf("%q: want an IP address or a host name", addr)
		}
	}
	return nil
}

// certProblem says why h's label certificate (the files cert and key)
// cannot be served: Settings.CertCheck, else Settings.CertMissing.
func (s Settings) certProblem(h routing.Host, cert, key string) string {
	switch {
	case s.CertCheck != nil:
		return s.certWhy[h.Name]
	case s.CertMissing != nil && (s.CertMissing(cert) || s.CertMissing(key)):
		return fmt.Sprintf("certificate %s or key %s cannot be read", cert, key)
	}
	return ""
}

// acmeCerts groups an ACME host's names by the file that serves them:
// their own certificate, or the default one while they have none. The
// primary name's group comes first.
func acmeCerts(names []string, s Settings) []TLSCert {
	var certs []TLSCert
	at := map[string]int{}
	for _, n := range names {
		cert, key := s.DefaultCert, s.DefaultKey
		if s.ACMECert != nil {
			if f := s.ACMECert(n); f != "" {
				cert, key = f, f
			}
		}
		if i, ok := at[cert]; ok {
			certs[i].Names = append(certs[i].Names, n)
			continue
		}
		at[cert] = len(certs)
		certs = append(certs, TLSCert{Names: []string{n}, Cert: cert, Key: key})
	}
	return certs
}

// server builds one host's server, its upstreams, its passthrough (nil
// unless it is a passthrough host with a backend) and what it skipped.
// sticky counts the sticky upstreams so far, for their variable names.
func server(h routing.Host, s Settings, ca string, sticky *int) (Server, []Upstream, *PassthroughHost, []Skip, error) {
	srv := Server{Host: h.Name, Names: h.Names(), CatchAll: true}
	var skips []Skip
	// A passthrough host's TLS connections never reach http{}: it has no
	// certificate and no HTTPS server. A redirecting host has no backend
	// to pass them to, so its TLS settings apply as for any TLS host.
	pass := h.TLS != nil && h.TLS.Passthrough && h.RedirectTo == ""
	if h.TLS != nil && !pass {
		tl := &ServerTLS{Cert: s.DefaultCert, Key: s.DefaultKey, Only: h.TLS.Only}
		if h.TLS.CertFile != "" {
			cert, key := filepath.Join(s.CertDir, h.TLS.CertFile), filepath.Join(s.CertDir, h.TLS.KeyFile)
			if why := s.certProblem(h, cert, key); why != "" {
				// As the built-in proxy: the default certificate, reported.
				skips = append(skips, Skip{Host: h.Name, Reason: why + "; the host gets the default certificate"})
			} else {
				tl.Cert, tl.Key = cert, key
			}
		}
		tl.Certs = []TLSCert{{Names: srv.Names, Cert: tl.Cert, Key: tl.Key}}
		if h.UsesACME() {
			tl.Certs = acmeCerts(srv.Names, s)
			tl.Cert, tl.Key = tl.Certs[0].Cert, tl.Certs[0].Key
			srv.ACMEChallenge = s.ACMEChallenge != ""
		}
		srv.TLS = tl
		srv.RedirectHTTPS = tl.Only
	}
	if h.RedirectTo != "" {
		if len(h.Routes) > 0 {
			return Server{}, nil, nil, nil, fmt.Errorf("host %s both redirects and has routes: a host either serves or redirects", h.Name)
		}
		to, err := redirectTarget(h.RedirectTo)
		if err != nil {
			return Server{}, nil, nil, nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		srv.RedirectTo, srv.CatchAll = to, false
		return srv, nil, nil, skips, nil
	}
	var http []routing.Route
	for _, r := range h.Routes {
		if r.Protocol == routing.TCP {
			skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: "tcp routes need the haproxy driver; nginx leaves them out"})
			continue
		}
		http = append(http, r)
	}
	if pass {
		if len(http) == 0 {
			return srv, nil, nil, skips, nil // nothing to answer, as without passthrough
		}
		srv.Passthrough, srv.RedirectHTTPS, srv.CatchAll = true, true, false
		pt, skip := passthroughHost(h, http[len(http)-1]) // longest path first: the last is "/" or the shortest
		if skip != "" {
			skips = append(skips, Skip{Host: h.Name, Path: http[len(http)-1].Path, Reason: skip})
		}
		return srv, nil, pt, skips, nil
	}
	var ups []Upstream
	for _, r := range http {
		if r.Path == "/" {
			srv.CatchAll = false
		}
		up := Upstream{Name: upstreamName(h.Name, r.Path), Balance: balance(r.Balance), Keepalive: keepalive}
		for _, b := range r.Backends {
			up.Servers = append(up.Servers, UpstreamServer{Address: b.Address, MaxFails: maxFails, FailTimeout: failTimeout})
		}
		var setCookie string
		if len(up.Servers) == 0 {
			up.Name = ""
		} else {
			if r.StickyCookie != "" {
				st, skip, err := stickyView(h.Name, r, up.Servers, fmt.Sprintf("interlock_sticky_%d", *sticky))
				if err != nil {
					return Server{}, nil, nil, nil, err
				}
				if skip != "" {
					skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: skip})
				}
				if st != nil {
					*sticky++
					up.Sticky, up.Balance, setCookie = st, "", st.Var+"_set_cookie"
				}
			}
			ups = append(ups, up)
		}
		limits, keepaliveTimeout, err := routeLimits(h.Name, r, s.Edge)
		if err != nil {
			return Server{}, nil, nil, nil, err
		}
		if up.Name != "" {
			ups[len(ups)-1].KeepaliveTimeout = keepaliveTimeout
		}
		locs := locations(r, http, up.Name, ca)
		for i := range locs {
			if limits != nil {
				l := *limits
				if locs[i].WebSocket {
					l.ReadTimeout = "" // websocket endpoints keep their 1h
				}
				locs[i].Limits = &l
			}
			locs[i].SetCookie = setCookie
			if s.Edge.AccessLog != "" {
				locs[i].LogRoute = logRoute(h.Name, r.Path)
			}
		}
		srv.Locations = append(srv.Locations, locs...)
	}
	srv.BodyLimits = bodyLimits(srv.Locations)
	return srv, ups, nil, skips, nil
}

// passthroughHost builds a passthrough host's stream upstream from the
// route r that takes its connections; nil when r has no backend (its
// connections then go to the HTTPS servers, which refuse the handshake).
// skip says what of the route does not apply to a connection nginx never
// decrypts.
func passthroughHost(h routing.Host, r routing.Route) (*PassthroughHost, string) {
	var skip string
	if r.StickyCookie != "" {
		skip = "SNI passthrough: the sticky cookie is ignored; the proxy never sees the HTTP inside the TLS connection"
	}
	if len(r.Backends) == 0 {
		return nil, skip
	}
	up := StreamUpstream{Name: streamUpstreamName(h.Name, r.Path)}
	switch r.Balance {
	case routing.LeastConn:
		up.Balance = "least_conn"
	case routing.Random:
		up.Balance = "random"
	case routing.Source:
		up.HashClient = true
	}
	for _, b := range r.Backends {
		up.Servers = append(up.Servers, UpstreamServer{Address: b.Address, MaxFails: maxFails, FailTimeout: failTimeout})
	}
	return &PassthroughHost{Host: h.Name, Names: h.Names(), Route: r.Path, Upstream: up}, skip
}

// streamUpstreamName is upstreamName with the prefix "pt_": the stream
// upstream of a passthrough route.
func streamUpstreamName(host, path string) string {
	return "pt_" + strings.TrimPrefix(upstreamName(host, path), "u_")
}

// redirectTarget checks a redirect's base URL, as discovery makes it:
// http or https, a lowercase host name and an optional port, nothing else.
func redirectTarget(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("redirect target %q must be http:// or https:// and a host name, with no path", s)
	}
	if _, err := serverName(u.Hostname()); err != nil {
		return "", fmt.Errorf("redirect target %q: %w", s, err)
	}
	to := u.Scheme + "://" + u.Hostname()
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 || p[0] == '0' {
			return "", fmt.Errorf("redirect target %q: port must be 1-65535", s)
		}
		to += ":" + p
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("redirect target %q: empty port", s)
	}
	return to, nil
}

// maxStickyServers is how many servers nginx's hash can tell apart: it
// takes 15 bits of the key's CRC32.
const maxStickyServers = 1 << 15

// stickyView builds a route's sticky cookie over its upstream servers, or
// says why it is left out (skip). The cookie value and header are the
// built-in proxy's (internal/proxy/builtin/sticky.go).
func stickyView(host string, r routing.Route, servers []UpstreamServer, name string) (*Sticky, string, error) {
	where := fmt.Sprintf("host %s route %s", host, r.Path)
	if !isCookieName(r.StickyCookie) {
		return nil, "", fmt.Errorf("%s: sticky cookie name %q must be 1-64 letters, digits, '_', '-' or '.'", where, r.StickyCookie)
	}
	if !isCookiePath(r.Path) {
		return nil, "", fmt.Errorf("%s: the path cannot be a cookie path", where)
	}
	if len(servers) > maxStickyServers {
		return nil, fmt.Sprintf("sticky cookie left out: %d backends are more than nginx's hash can tell apart (%d)", len(servers), maxStickyServers), nil
	}
	st := &Sticky{
		Var: name, Cookie: r.StickyCookie,
		Match: `(?:^|;)[ \t]*` + strings.ReplaceAll(r.StickyCookie, ".", `\.`) + `=(?<` + name + `_value>[^; \t]*)`,
	}
	var skip string
	switch r.Balance {
	case routing.Source:
		st.Fallback = "remote_addr"
	case routing.Random:
		st.Fallback = "request_id"
	case routing.LeastConn:
		skip = "sticky cookie: requests without the cookie are balanced round robin, not leastconn (nginx's hash and least_conn do not combine)"
	}
	first := map[string]int{} // cookie value -> index of its first server
	for i, srv := range servers {
		addr := canonicalAddr(srv.Address)
		id := strconv.FormatUint(fnv64a(addr), 16)
		if _, dup := first[id]; dup {
			continue
		}
		first[id] = i
		c := &http.Cookie{Name: r.StickyCookie, Value: id, Path: r.Path, HttpOnly: true, SameSite: http.SameSiteLaxMode}
		st.Backends = append(st.Backends, StickyBackend{ID: id, Address: addr, SetCookie: c.String()})
	}
	keys, err := hashKeys(len(servers), first)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", where, err)
	}
	for i := range st.Backends {
		st.Backends[i].Key = keys[st.Backends[i].ID]
	}
	return st, skip, nil
}

// hashKeys finds, for each cookie value, a key that nginx's "hash KEY"
// over n equal servers maps first to that value's server index. nginx
// (ngx_http_upstream_get_hash_peer) takes ((crc32(key) >> 16) & 0x7fff)
// mod n on the first try. Keys are "s0", "s1", ...: the first that lands
// on an index goes to it, so the result is deterministic.
func hashKeys(n int, index map[string]int) (map[string]string, error) {
	want := make(map[int]string, len(index)) // server index -> cookie value
	for id, i := range index {
		want[i] = id
	}
	keys := make(map[string]string, len(index))
	for k := 0; len(keys) < len(index); k++ {
		if k > 1<<24 {
			return nil, fmt.Errorf("no nginx hash key found for %d of %d sticky backends", len(index)-len(keys), len(index))
		}
		key := "s" + strconv.Itoa(k)
		i := int((crc32.ChecksumIEEE([]byte(key))>>16)&0x7fff) % n
		if id, ok := want[i]; ok {
			keys[id] = key
			delete(want, i)
		}
	}
	return keys, nil
}

// canonicalAddr is the address as the built-in proxy keys its backends
// (and nginx's $upstream_addr shows it): netip's form of ip:port.
func canonicalAddr(a string) string {
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return ap.String()
	}
	return a
}

// fnv64a is 64-bit FNV-1a, the built-in proxy's backend hash.
func fnv64a(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// isCookieName is discovery's cookie-name grammar: 1-64 of [A-Za-z0-9_.-].
func isCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// isCookiePath reports whether a route path can stand as a cookie's Path
// as it is: the URL-path alphabet of discovery, with nothing a cookie
// attribute or nginx would read specially (';', '$', quotes, controls).
func isCookiePath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._~/%-", c) >= 0) {
			return false
		}
	}
	return true
}

// locations renders one route: "= P" and "P/" (or just "/"), plus the same
// pair for each websocket endpoint that this route really serves (the most
// specific route of the endpoint's path is this one; otherwise the other
// route's own locations already answer it).
func locations(r routing.Route, all []routing.Route, upstream, ca string) []Location {
	base := Location{Route: r.Path, Upstream: upstream}
	scheme := "http"
	if r.BackendTLS != nil {
		scheme = "https"
		base.BackendTLS = &BackendTLS{Verify: r.BackendTLS.Verify, CA: ca}
	}
	pass := func(uri string) string {
		if upstream == "" {
			return ""
		}
		return scheme + "://" + upstream + uri
	}
	// strip returns the proxy_pass URI for a location at path p (encoded):
	// with StripPath, the route prefix is cut off; without it, none, so
	// nginx passes the request URI unchanged.
	strip := func(p string) string {
		if !r.StripPath || r.Path == "/" {
			return ""
		}
		rest := strings.TrimPrefix(p, r.Path)
		if rest == "" {
			return "/"
		}
		return rest
	}
	ws := map[string]bool{}
	for _, w := range r.WebSocketPaths {
		if owner(w, all) == r.Path {
			ws[w] = true
		}
	}
	pair := func(p string, websocket bool) []Location {
		dec := decode(p)
		if p == "/" {
			l := base
			l.Path, l.Pass, l.WebSocket = "/", pass(""), websocket
			return []Location{l}
		}
		exact, prefix := base, base
		exact.Exact, exact.Path, exact.Pass, exact.WebSocket = true, dec, pass(strip(p)), websocket
		prefix.Path, prefix.Pass, prefix.WebSocket = dec+"/", pass(stripSlash(strip(p))), websocket
		return []Location{exact, prefix}
	}
	out := pair(r.Path, ws[r.Path])
	for _, w := range r.WebSocketPaths {
		if ws[w] && w != r.Path {
			out = append(out, pair(w, true)...)
		}
	}
	return out
}

// stripSlash is the prefix location's URI: the exact one's plus "/",
// unless it is empty (no strip) or already "/".
func stripSlash(uri string) string {
	if uri == "" || uri == "/" {
		return uri
	}
	return uri + "/"
}

// owner returns the path of the most specific route that matches p.
func owner(p string, routes []routing.Route) string {
	best := ""
	for _, r := range routes {
		if (r.Path == "/" || p == r.Path || strings.HasPrefix(p, r.Path+"/")) && len(r.Path) > len(best) {
			best = r.Path
		}
	}
	return best
}

func balance(b routing.Balance) string {
	switch b {
	case routing.LeastConn:
		return "least_conn"
	case routing.Source:
		return "ip_hash"
	case routing.Random:
		return "random"
	}
	return ""
}

// upstreamName is "u_" + host + "_" + 10 hex digits of sha256(host NUL
// path). Host names are [a-z0-9.-] by the discovery grammar; anything else
// is replaced, so the name is always a safe word.
func upstreamName(host, path string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + path))
	var b strings.Builder
	b.WriteString("u_")
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(sum[:5]))
	return b.String()
}

// decode turns %XX escapes into bytes; the discovery grammar guarantees
// every '%' starts a valid escape.
func decode(p string) string {
	d, err := url.PathUnescape(p)
	if err != nil {
		return p // unreachable for paths that passed the grammar
	}
	return d
}
