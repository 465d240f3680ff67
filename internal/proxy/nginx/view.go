package nginx

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
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
}

// Listen is one nginx listen address.
type Listen struct {
	// Addr is the argument of the listen directive: "8080",
	// "127.0.0.1:8080" or "[::1]:8080".
	Addr string
	// Port is the port alone.
	Port string
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
	Servers   []UpstreamServer
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
	// CatchAll is true when no route covers "/": the template then answers
	// paths outside every route with 404.
	CatchAll bool
}

// ServerTLS is a host's certificate, as paths nginx reads.
type ServerTLS struct {
	Cert, Key string
	// Only redirects plain HTTP to HTTPS (interlock.ssl_only).
	Only bool
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
	// CertMissing, when set, reports whether a certificate file a label
	// names (absolute path) cannot be read; such a host is served over
	// plain HTTP only and listed in View.Skipped, rather than failing the
	// whole file. The default certificate is not checked.
	CertMissing func(path string) bool
}

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
	for _, h := range t.Hosts {
		srv, ups, skips := server(h, s, v.BackendCA)
		v.Skipped = append(v.Skipped, skips...)
		if len(srv.Locations) == 0 {
			continue
		}
		if srv.TLS != nil {
			v.TLS.Enabled = true
		}
		v.Servers = append(v.Servers, srv)
		v.Upstreams = append(v.Upstreams, ups...)
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

// server builds one host's server, its upstreams and what it skipped.
func server(h routing.Host, s Settings, ca string) (Server, []Upstream, []Skip) {
	srv := Server{Host: h.Name, Names: h.Names(), CatchAll: true}
	var skips []Skip
	if h.TLS != nil {
		tl := &ServerTLS{Cert: s.DefaultCert, Key: s.DefaultKey, Only: h.TLS.Only}
		if h.TLS.CertFile != "" {
			tl.Cert = filepath.Join(s.CertDir, h.TLS.CertFile)
			tl.Key = filepath.Join(s.CertDir, h.TLS.KeyFile)
		}
		switch {
		case h.TLS.CertFile != "" && s.CertMissing != nil && (s.CertMissing(tl.Cert) || s.CertMissing(tl.Key)):
			skips = append(skips, Skip{Host: h.Name, Reason: fmt.Sprintf("certificate %s or key %s cannot be read; the host is served over plain HTTP only", tl.Cert, tl.Key)})
		default:
			srv.TLS = tl
		}
	}
	var http []routing.Route
	for _, r := range h.Routes {
		if r.Protocol == routing.TCP {
			skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: "tcp routes need the haproxy driver; nginx leaves them out"})
			continue
		}
		http = append(http, r)
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
		if len(up.Servers) == 0 {
			up.Name = ""
		} else {
			ups = append(ups, up)
		}
		srv.Locations = append(srv.Locations, locations(r, http, up.Name, ca)...)
	}
	return srv, ups, skips
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
