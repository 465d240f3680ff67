package haproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// View is what a template sees: the routing table turned into HAProxy
// terms, every value typed and checked. README.md ("The template view")
// documents it field by field; custom templates may rely on every field
// named there.
type View struct {
	// Global holds the process-wide settings.
	Global Global
	// HTTP is the plain-HTTP frontend's bind address. HTTPS is bound only
	// when TLS.Enabled.
	HTTP, HTTPS Listen
	// TCP is the bind address of the tcp frontend; nil when no tcp address
	// is configured (tcp routes are then skipped).
	TCP *Listen
	// Stats is the stats page (and Prometheus /metrics) address, always a
	// loopback address; nil when none is configured.
	Stats *Listen
	// RedirectPort is what an ssl_only redirect appends to the host: ""
	// when HTTPS listens on 443, else ":PORT".
	RedirectPort string
	// TLS is the server-side TLS profile and the certificates.
	TLS TLS
	// Hosts are the hosts with at least one HTTP route, sorted by name.
	Hosts []Host
	// TCPHosts are the hosts with a tcp route, sorted by name.
	TCPHosts []TCPHost
	// Passthrough is the SNI passthrough of the HTTPS address
	// (routing.TLS.Passthrough): nil when no host passes TLS through, and
	// then the https frontend binds the HTTPS address itself.
	Passthrough *Passthrough
	// HTTPSRedirect is true when plain HTTP to some host (ssl_only or
	// passthrough), or to unknown names (such a default host), is
	// redirected to HTTPS: the template then renders the backend
	// interlock_https_redirect.
	HTTPSRedirect bool
	// TrustedHTTPS is true when some host has Host.TrustedHTTPS: the http
	// frontend then declares acl interlock_trusted_https (X-Forwarded-Proto
	// https, or proto=https in the last element of Forwarded), which
	// counts only with interlock_forwarded_trusted.
	TrustedHTTPS bool
	// Backends are one per route, sorted by name.
	Backends []Backend
	// Redirects are the redirecting hosts' backends
	// (routing.Host.RedirectTo), sorted by name.
	Redirects []Redirect
	// HTTPDefault and HTTPSDefault say what the http and https frontends
	// do with names no host claims there: nil (no default host, or one
	// without TLS for https) answers 404; otherwise the default host's
	// rules take them (routing.Host.Default).
	HTTPDefault, HTTPSDefault *Default
	// Skipped are what the driver could not render, with why.
	Skipped []Skip
	// Edge is what HAProxy believes about its clients, logs and limits
	// (Settings.Edge): PROXY protocol, forwarded headers, access log,
	// timeouts, header and body limits.
	Edge EdgeView
	// ACMEChallenge passes the HTTP-01 challenges of ACME hosts to
	// Interlock; nil when there is none or no address is configured.
	ACMEChallenge *ACMEChallenge
}

// ACMEChallenge is the http frontend's rule for ACME HTTP-01 challenges
// (/.well-known/acme-challenge/ on an ACME host's names): they go to the
// backend interlock_acme_challenge, whose one server is Addr (Interlock's
// responder), before any other rule, ssl_only redirects included.
type ACMEChallenge struct {
	Addr  string
	Names []string
}

// Passthrough is the tcp frontend https_sni on the HTTPS address: it reads
// each connection's ClientHello (req.ssl_sni) and sends a passthrough
// host's connections byte for byte to its backend (mode tcp), whose
// servers terminate TLS themselves; every other connection goes, through
// the backend interlock_https with a PROXY protocol v2 header (the
// client's address), to the https frontend, which then binds Socket.
type Passthrough struct {
	// Socket is the unix socket of the https frontend (bind unix@PATH
	// mode 600 accept-proxy); write it with path.
	Socket string
	// Hosts are the passthrough hosts, sorted by name: connections whose
	// SNI is one of Names go to Backend (a "pt_" backend of Backends).
	Hosts []TCPHost
}

// Redirect is the backend of a host that redirects every request to a
// base URL, keeping path and query: 301 for GET and HEAD, 308 for other
// methods (which a client replays with their body), with Cache-Control:
// no-store, as the built-in proxy answers.
type Redirect struct {
	// Name is "rd_" + host + "_" + 10 hex digits, like a route's backend.
	Name string
	Host string
	// To is the base URL, checked: "http://" or "https://", a lowercase
	// host name, an optional port; nothing HAProxy's log-format reads.
	To string
}

// Default is what a frontend does with a name no host claims there: the
// default host's rules, as if the request had named it. A known host's
// request that no rule of its own takes still gets 404: Closed lists the
// hosts that need a rule for that (their rules do not take every path).
type Default struct {
	// Host is the default host's name.
	Host string
	// Closed are the hosts whose requests no rule of theirs took go to
	// interlock_no_route, before the default host's rules.
	Closed []Closed
	// Rules are the default host's path rules (not All), without its ACL.
	Rules []Rule
	// Backend takes what is left: the default host's "/" backend (its
	// redirect backend for a redirecting host), or interlock_no_route.
	Backend string
	// Redirect is true in the http frontend when the default host is
	// ssl_only: what is left goes to interlock_https_redirect, which
	// redirects to HTTPS under the requested name.
	Redirect bool
	// TrustedHTTPS is true in the http frontend when the default host has
	// Host.TrustedHTTPS: what is left goes to interlock_https_redirect
	// unless a trusted peer says it came over HTTPS, and then to the
	// default host's rules and Backend.
	TrustedHTTPS bool
}

// Closed is a host in a Default's frontend. Declare is true where the
// frontend does not declare its ACL already (a host without TLS, in the
// https frontend).
type Closed struct {
	ACL     string
	Names   []string
	Declare bool
}

// Global holds the settings of HAProxy's global section.
type Global struct {
	// AdminSocket is the Runtime API socket (level admin, expose-fd
	// listeners); "" leaves it out.
	AdminSocket string
	// StateFile is the server-state-file: the driver dumps the servers'
	// state there before each reload and the new worker loads it, so
	// health and administrative states survive reloads. "" leaves it out.
	StateFile string
	// HardStopAfter bounds how long an old worker may keep serving its
	// connections after a reload.
	HardStopAfter time.Duration
}

// Listen is one bind address: "127.0.0.1:8080", ":8080" (every address)
// or "[::1]:8080".
type Listen struct {
	Addr string
	Port string
}

// TLS is the TLS profile in HAProxy's terms (ssl-default-bind-*).
type TLS struct {
	// Enabled is true when any host has TLS: only then is the HTTPS
	// frontend rendered.
	Enabled bool
	// Profile is the profile's name (modern, intermediate, old).
	Profile string
	// MinVersion and MaxVersion are ssl-min-ver and ssl-max-ver
	// ("TLSv1.2", "TLSv1.3").
	MinVersion, MaxVersion string
	// Ciphers are the TLS 1.2-and-below suites (ssl-default-bind-ciphers),
	// "" when the profile has no TLS 1.2; Ciphersuites the TLS 1.3 ones
	// (ssl-default-bind-ciphersuites), "" without TLS 1.3.
	Ciphers, Ciphersuites string
	// Curves is ssl-default-bind-curves.
	Curves string
	// PreferClientCiphers is HAProxy's inverse of the profile's
	// PreferServerCiphers (HAProxy prefers the server's order by default).
	PreferClientCiphers bool
	// Certs are the certificate bundles (certificate and key in one PEM
	// file, as HAProxy reads them) of the HTTPS bind line: the default
	// one first, then one per distinct named certificate, sorted. HAProxy
	// picks one by the SNI name against each certificate's own names and
	// falls back to the first.
	Certs []Cert
}

// Cert is one certificate bundle.
type Cert struct {
	// Path is the PEM file HAProxy loads.
	Path string
	// Cert and Key are the files the driver joins into Path; both "" when
	// Path is used as it is (the default certificate, or a label that
	// names one file as both certificate and key).
	Cert, Key string
}

// Host is one host with HTTP routes.
type Host struct {
	// Name is the primary name; Names is Name followed by the aliases.
	Name  string
	Names []string
	// ACL names the ACL that matches the host's names.
	ACL string
	// TLS is true when the host is served over HTTPS too.
	TLS bool
	// Redirect is true for ssl_only and passthrough hosts: plain HTTP goes
	// to interlock_https_redirect (301 for GET and HEAD, 308 otherwise).
	Redirect bool
	// TrustedHTTPS, with Redirect, spares from the redirect the plain
	// requests that a peer in Edge.ForwardedFrom says came over HTTPS (a
	// load balancer in front that terminated TLS): the http frontend
	// serves them by the host's rules, as the built-in proxy does. Set
	// for ssl_only hosts (not passthrough ones) when Edge.ForwardedFrom is
	// not empty.
	TrustedHTTPS bool
	// Passthrough is true for a passthrough host (routing.TLS.Passthrough):
	// its TLS connections are View.Passthrough's, so it is not served by
	// the https frontend (TLS is false) and has no rules.
	Passthrough bool
	// Default is true for the default host (routing.Host.Default).
	Default bool
	// Rules are the routes, most specific first. A redirecting host has
	// one, All, to its Redirect backend.
	Rules []Rule
}

// Rule sends requests of a host under a path to a backend.
type Rule struct {
	// Route is the route path as in the table.
	Route string
	// Backend is the backend's name.
	Backend string
	// All is true for the route "/", which takes every path; otherwise a
	// request matches when its decoded path (path,url_dec) equals Exact or
	// starts with Prefix (Exact + "/"). Quote both with quote.
	All           bool
	Exact, Prefix string
}

// TCPHost is a host with a tcp route: TLS connections on the tcp frontend
// whose SNI is one of Names go to Backend.
type TCPHost struct {
	Name    string
	Names   []string
	Backend string
}

// Backend is one route's backend.
type Backend struct {
	// Name is derived from the host and route path ("be_" or "tcp_" +
	// host + "_" + 10 hex digits of a hash of both): deterministic,
	// unique and a safe name; never raw label text.
	Name string
	// Host and Route say which route it serves.
	Host, Route string
	// Mode is "http" or "tcp".
	Mode string
	// Balance is the balance algorithm: roundrobin, leastconn, source or
	// random. HashType is "consistent" for source, "" otherwise: HAProxy
	// takes dynamic servers only with a dynamic algorithm.
	Balance, HashType string
	// Options are "option" names from the allow-list (forwardfor, which
	// every HTTP backend gets anyway, is left out), sorted.
	Options []string
	// ForwardFor is true for HTTP backends: option forwardfor, after the
	// frontend dropped the client's own X-Forwarded-For.
	ForwardFor bool
	// Check is the active HTTP health check, nil without one.
	Check *Check
	// Strip is the path rewrite of interlock.context_root_rewrite, nil
	// without one.
	Strip *Strip
	// WebSockets are the websocket endpoints: requests under them get a
	// one-hour tunnel timeout.
	WebSockets []PathMatch
	// ServerOptions are the words after the address on every server line,
	// the same ones the driver sends with "add server" over the Runtime
	// API, so a server added at run time and one read from the file are
	// alike.
	ServerOptions []string
	// Cookie is the sticky session cookie (routing.Route.StickyCookie),
	// nil without one.
	Cookie *Cookie
	// Servers are the backends, sorted by address.
	Servers []Server
	// LogRoute is the access log's route field of an HTTP backend
	// ("HOST/PATH", set into txn.interlock_route), "" without an access
	// log.
	LogRoute string
	// Passthrough marks the backend of a passthrough host ("pt_" + host +
	// "_" + 10 hex digits): mode tcp, its servers get the TLS connections
	// untouched, with a one-hour idle timeout (timeout tunnel 1h); a health
	// check speaks TLS (check-ssl).
	Passthrough bool
	// Timeouts are the route's own timeout connect and timeout server
	// (routing.Limits, route_limits.go), nil to keep the defaults'.
	Timeouts *BackendTimeouts
	// MaxBodyBytes is the body limit of an HTTP backend: the route's own,
	// else Edge.MaxBodyBytes; past it (by the announced length) a 413. 0:
	// none.
	MaxBodyBytes int64
}

// Cookie is a backend's sticky session cookie, in HAProxy's insert mode:
// a request whose cookie names a server that is up goes to it; any other
// is balanced, and HAProxy sets the cookie on the answer ("insert":
// only when the request did not already carry that server's value).
// HAProxy passes the cookie on to the server, as the built-in proxy does.
type Cookie struct {
	// Name is the cookie's name (discovery's grammar: 1-64 of
	// [A-Za-z0-9_.-]); quote it.
	Name string
	// Path is the route path when it is not "/". HAProxy writes "path=/"
	// into every cookie it inserts; the template adds "attr Path=PATH"
	// after it, and browsers take the last Path attribute (RFC 6265,
	// 5.3), so the cookie is the route's, as the built-in proxy's is.
	Path string
}

// Check is an active HTTP health check.
type Check struct {
	// Path is the URL path checked (as sent on the wire, %XX escapes and
	// all); Host the Host header sent with it.
	Path, Host string
	// Interval is the time between checks.
	Interval time.Duration
}

// Strip holds the regular expressions of the path rewrite, for
// http-request replace-path: Exact ("^/app$") becomes "/", Prefix
// ("^/app(/.*)$") becomes its group. They match the route path as the
// table spells it; quote them with quote.
type Strip struct {
	Exact, Prefix string
}

// PathMatch matches a path and what lies under it: the decoded request
// path equals Exact or starts with Prefix.
type PathMatch struct {
	Exact, Prefix string
}

// Server is one backend server.
type Server struct {
	// Name is derived from the address ("127.0.0.1_32768").
	Name string
	// Address is "ip:port", "[ipv6]:port" or "name:port".
	Address string
	// Container is the backend's container name, for comments only; it is
	// a Docker name, [a-zA-Z0-9][a-zA-Z0-9_.-]*, or "".
	Container string
	// Cookie is the sticky cookie value that names this server when its
	// backend has a Cookie, "" otherwise: the built-in proxy's value (the
	// 64-bit FNV-1a hash of the address, in hex), so a client pinned by
	// one driver stays pinned by the other. HAProxy 2.6 cannot set it on a
	// server added over the Runtime API, so new servers of a sticky
	// backend take a reload.
	Cookie string
}

// Skip is something left out of the rendered file.
type Skip struct {
	Host, Path, Reason string
}

// Settings are the inputs of a view that come from Interlock's
// configuration rather than from the table.
type Settings struct {
	// HTTPAddr and HTTPSAddr are host:port bind addresses (port > 0; an
	// empty host binds every address).
	HTTPAddr, HTTPSAddr string
	// TCPAddr is where tcp routes are served, routed by TLS SNI; "" skips
	// tcp routes.
	TCPAddr string
	// StatsAddr is the stats page address; it must be a loopback address.
	// "" renders no stats page.
	StatsAddr string
	// CertDir is the directory label certificate paths are relative to.
	CertDir string
	// DefaultCert is a PEM file with certificate and key for TLS hosts
	// without a certificate of their own.
	DefaultCert string
	// BundleDir is where the driver joins a host's certificate and key
	// into one file.
	BundleDir string
	// Profile is the TLS profile; the zero value means tlsconf.Default.
	Profile tlsconf.Profile
	// AdminSocket, StateFile and HardStopAfter go to View.Global;
	// HardStopAfter defaults to 30s.
	AdminSocket, StateFile string
	HardStopAfter          time.Duration
	// BackendCA verifies backends over TLS; default
	// /etc/ssl/certs/ca-certificates.crt.
	BackendCA string
	// CertCheck, when set, judges the label certificates (TLS.CertFile
	// and KeyFile) of a table's hosts: why each host whose certificate
	// cannot be served is refused, by primary name. Such a host gets the
	// default certificate and is listed in View.Skipped, rather than
	// failing the whole file. Without it, CertMissing, when set, reports
	// whether a certificate file (absolute path) cannot be read, with the
	// same effect.
	CertCheck   func(t routing.Table) map[string]string
	CertMissing func(path string) bool
	// certWhy is CertCheck's verdict on the table being viewed.
	certWhy map[string]string
	// TLSSocket is the unix socket the https frontend binds behind the SNI
	// frontend when some host passes TLS through; "" leaves passthrough
	// out (reported in View.Skipped; plain HTTP to such a host is still
	// redirected).
	TLSSocket string
	// Edge is the PROXY protocol, forwarded headers, access log, timeouts
	// and limits; the zero value renders none of them (View.Edge).
	Edge Edge
	// ACMECert, when set, returns the file (certificate chain and key) of
	// an ACME name's certificate, "" while there is none; such names get
	// the default certificate.
	ACMECert func(name string) string
	// ACMEChallenge is the host:port ACME hosts' HTTP-01 challenges are
	// passed to (Interlock's responder); "" passes none.
	ACMEChallenge string
}

const (
	defaultCABundle      = "/etc/ssl/certs/ca-certificates.crt"
	defaultHardStop      = 30 * time.Second
	defaultCheckInterval = 5 * time.Second
)

// backendOptions is the allow-list of interlock.backend_option (the
// discovery contract); anything else is refused here too.
var backendOptions = []string{
	"abortonclose", "allbackups", "forwardfor", "http-buffer-request", "http-keep-alive",
	"http-pretend-keepalive", "http-server-close", "httpclose", "log-health-checks", "redispatch",
}

// NewView turns a normalized table into a View. Every value is checked
// again here, whatever discovery did: an error names the host, route and
// value, and nothing of the table reaches a template unchecked.
func NewView(t routing.Table, s Settings) (View, error) {
	v := View{Global: Global{AdminSocket: s.AdminSocket, StateFile: s.StateFile, HardStopAfter: s.HardStopAfter}}
	if v.Global.HardStopAfter <= 0 {
		v.Global.HardStopAfter = defaultHardStop
	}
	ca := s.BackendCA
	if ca == "" {
		ca = defaultCABundle
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
	if s.TCPAddr != "" {
		l, err := listen(s.TCPAddr)
		if err != nil {
			return View{}, fmt.Errorf("tcp address: %w", err)
		}
		v.TCP = &l
	}
	if s.StatsAddr != "" {
		l, err := loopback(s.StatsAddr)
		if err != nil {
			return View{}, fmt.Errorf("stats address: %w", err)
		}
		v.Stats = &l
	}
	if v.TLS, err = tlsView(s); err != nil {
		return View{}, err
	}
	if s.CertCheck != nil {
		s.certWhy = s.CertCheck(t)
	}
	seen := map[string]string{}
	bundles := map[string]Cert{}
	dflt := -1 // index of the default host in v.Hosts
	for _, h := range t.Hosts {
		if err := checkHost(h, seen); err != nil {
			return View{}, err
		}
		if h.RedirectTo != "" && len(h.Routes) > 0 {
			return View{}, fmt.Errorf("host %s both redirects and has routes: a host either serves or redirects", h.Name)
		}
		if len(h.Routes) > 0 && h.Routes[0].Protocol == routing.TCP {
			th, be, skips, err := tcpHost(h, v.TCP != nil)
			if err == nil && be != nil {
				err = applyLimits(be, h.Routes[0], s.Edge, true)
			}
			if err != nil {
				return View{}, err
			}
			v.Skipped = append(v.Skipped, skips...)
			if be != nil {
				v.TCPHosts = append(v.TCPHosts, th)
				v.Backends = append(v.Backends, *be)
			}
			continue
		}
		host, bes, skips, err := httpHost(h, s, ca, bundles)
		if err != nil {
			return View{}, err
		}
		v.Skipped = append(v.Skipped, skips...)
		if host.Passthrough && len(bes) > 0 {
			if v.Passthrough == nil {
				v.Passthrough = &Passthrough{Socket: s.TLSSocket}
			}
			v.Passthrough.Hosts = append(v.Passthrough.Hosts, TCPHost{Name: h.Name, Names: h.Names(), Backend: bes[0].Name})
		}
		if h.RedirectTo != "" {
			rd, err := redirect(h)
			if err != nil {
				return View{}, err
			}
			host.Rules = []Rule{{Route: "/", Backend: rd.Name, All: true}}
			v.Redirects = append(v.Redirects, rd)
		}
		if len(host.Rules) == 0 && !host.Passthrough {
			// No HTTP route: nothing to answer, and no default host
			// either, as in the built-in proxy.
			continue
		}
		if host.TLS || host.Passthrough && len(bes) > 0 {
			v.TLS.Enabled = true
		}
		if host.TLS && h.UsesACME() && s.ACMEChallenge != "" {
			if v.ACMEChallenge == nil {
				v.ACMEChallenge = &ACMEChallenge{Addr: s.ACMEChallenge}
			}
			v.ACMEChallenge.Names = append(v.ACMEChallenge.Names, host.Names...)
		}
		v.HTTPSRedirect = v.HTTPSRedirect || host.Redirect
		if host.Redirect && !host.Passthrough && len(v.Edge.ForwardedFrom) > 0 {
			host.TrustedHTTPS, v.TrustedHTTPS = true, true
		}
		if h.Default {
			if dflt >= 0 {
				return View{}, fmt.Errorf("hosts %s and %s are both the default host: only one can be", v.Hosts[dflt].Name, h.Name)
			}
			dflt, host.Default = len(v.Hosts), true
		}
		v.Hosts = append(v.Hosts, host)
		v.Backends = append(v.Backends, bes...)
	}
	if dflt >= 0 {
		v.HTTPDefault = fallback(v.Hosts, dflt, false)
		if v.Hosts[dflt].TLS {
			v.HTTPSDefault = fallback(v.Hosts, dflt, true)
		}
		v.HTTPSRedirect = v.HTTPSRedirect || v.HTTPDefault.Redirect
	}
	if v.ACMEChallenge != nil {
		l, err := listen(v.ACMEChallenge.Addr)
		if err == nil && strings.HasPrefix(l.Addr, ":") {
			err = fmt.Errorf("%q has no host to connect to", v.ACMEChallenge.Addr)
		}
		if err != nil {
			return View{}, fmt.Errorf("ACME challenge address: %w", err)
		}
		v.ACMEChallenge.Addr = l.Addr
		slices.Sort(v.ACMEChallenge.Names)
	}
	if s.DefaultCert != "" {
		v.TLS.Certs = append(v.TLS.Certs, Cert{Path: s.DefaultCert})
	}
	named := make([]Cert, 0, len(bundles))
	for _, c := range bundles {
		if c.Path != s.DefaultCert {
			named = append(named, c)
		}
	}
	slices.SortFunc(named, func(a, b Cert) int { return strings.Compare(a.Path, b.Path) })
	v.TLS.Certs = append(v.TLS.Certs, named...)
	slices.SortFunc(v.Backends, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(v.Redirects, func(a, b Redirect) int { return strings.Compare(a.Name, b.Name) })
	return v, nil
}

// fallback is what the http (or https) frontend does with names no host
// claims there, hosts[d] being the default host.
func fallback(hosts []Host, d int, https bool) *Default {
	dh := hosts[d]
	f := &Default{Host: dh.Name, Backend: noRouteBackend}
	if !https && dh.Redirect && !dh.TrustedHTTPS {
		f.Redirect = true
	} else {
		f.TrustedHTTPS = !https && dh.TrustedHTTPS
		for _, r := range dh.Rules {
			if r.All {
				f.Backend = r.Backend
			} else {
				f.Rules = append(f.Rules, r)
			}
		}
	}
	for i, h := range hosts {
		switch {
		case i == d:
			// Its own requests that its rules did not take find the
			// same rules again, then 404.
		case https && !h.TLS:
			// Not served over HTTPS: 404, as without a default host.
			f.Closed = append(f.Closed, Closed{ACL: h.ACL, Names: h.Names, Declare: true})
		case !https && h.Redirect && !h.TrustedHTTPS:
			// ssl_only: redirected before any rule. (With TrustedHTTPS,
			// its rules serve what a trusted peer says is HTTPS, and what
			// they do not take is a 404 like any host's.)
		case !slices.ContainsFunc(h.Rules, func(r Rule) bool { return r.All }):
			f.Closed = append(f.Closed, Closed{ACL: h.ACL, Names: h.Names})
		}
	}
	return f
}

// noRouteBackend answers 404 for what no host and route takes.
const noRouteBackend = "interlock_no_route"

// redirect builds the backend of a redirecting host.
func redirect(h routing.Host) (Redirect, error) {
	to, err := redirectTarget(h.RedirectTo)
	if err != nil {
		return Redirect{}, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return Redirect{Name: backendName("rd", h.Name, ""), Host: h.Name, To: to}, nil
}

// redirectTarget checks a redirect's base URL as discovery makes it: http
// or https, a lowercase host name and an optional port, nothing else (so
// nothing in it is a log-format '%' or needs quoting).
func redirectTarget(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("redirect target %q must be http:// or https:// and a host name, with no path", s)
	}
	if !isHostname(u.Hostname()) {
		return "", fmt.Errorf("redirect target %q: %q is not a lowercase host name", s, u.Hostname())
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

// stickyCookie checks a route's sticky cookie; nil without one.
func stickyCookie(r routing.Route, where string) (*Cookie, error) {
	if r.StickyCookie == "" {
		return nil, nil
	}
	n := r.StickyCookie
	if len(n) > 64 {
		return nil, fmt.Errorf("%s: sticky cookie name %.16q... is longer than 64 bytes", where, n)
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return nil, fmt.Errorf("%s: sticky cookie name %q may use only letters, digits, '_', '-' and '.'", where, n)
		}
	}
	c := &Cookie{Name: n}
	if r.Path != "/" {
		c.Path = r.Path // checkPath'd: no ';', no control byte
	}
	return c, nil
}

// cookieValue is the sticky cookie value that names the backend at addr:
// the built-in proxy's (internal/proxy/builtin/sticky.go), 64-bit FNV-1a
// of the address in netip's form, in hex.
func cookieValue(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		addr = ap.String()
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(addr))
	return strconv.FormatUint(h.Sum64(), 16)
}

// checkHost validates a host's names and its route list's shape.
func checkHost(h routing.Host, seen map[string]string) error {
	for _, n := range h.Names() {
		if !isHostname(n) {
			return fmt.Errorf("host %q: %q is not a lowercase host name", h.Name, n)
		}
		if other, ok := seen[n]; ok {
			return fmt.Errorf("host %s: the name %s is already a name of host %s", h.Name, n, other)
		}
		seen[n] = h.Name
	}
	tcp := 0
	for _, r := range h.Routes {
		switch r.Protocol {
		case routing.HTTP:
		case routing.TCP:
			tcp++
		default:
			return fmt.Errorf("host %s route %s: unknown protocol %q; want http or tcp", h.Name, r.Path, r.Protocol)
		}
	}
	if tcp > 0 && len(h.Routes) != 1 {
		return fmt.Errorf("host %s: a tcp route takes the whole host, but the host has %d routes", h.Name, len(h.Routes))
	}
	return nil
}

// passthroughRoute returns the index of the route whose backends take a
// passthrough host's TLS connections (routing.TLS.Passthrough): its "/"
// route, or else its shortest path (routes are longest first, so the
// last one), as the built-in proxy picks it; -1 when h passes nothing
// through (no passthrough, a redirecting host, no route, a tcp route).
// Only that route is rendered, as the "pt_" backend; the Runtime API
// path (applyRuntime) finds its servers by the same rule.
func passthroughRoute(h routing.Host) int {
	if h.TLS == nil || !h.TLS.Passthrough || h.RedirectTo != "" || len(h.Routes) == 0 || h.Routes[0].Protocol == routing.TCP {
		return -1
	}
	return len(h.Routes) - 1
}

// httpHost builds one host's rules and backends. A passthrough host has
// no rules and one backend, its passthrough route's (none when
// Settings.TLSSocket is "").
func httpHost(h routing.Host, s Settings, ca string, bundles map[string]Cert) (Host, []Backend, []Skip, error) {
	host := Host{Name: h.Name, Names: h.Names(), ACL: hostACL(h.Name)}
	var skips []Skip
	if i := passthroughRoute(h); i >= 0 {
		// Plain HTTP goes to HTTPS: the backends speak only TLS.
		host.Passthrough, host.Redirect = true, true
		r := h.Routes[i]
		if s.TLSSocket == "" {
			skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: "SNI passthrough needs a unix socket for the https frontend, and none is configured; its TLS connections are not passed through (plain HTTP is still redirected to HTTPS)"})
			return host, nil, skips, nil
		}
		be, skip, err := passthroughBackend(h.Name, r)
		if err == nil {
			err = applyLimits(&be, r, s.Edge, true)
		}
		if err != nil {
			return Host{}, nil, nil, err
		}
		if skip != "" {
			skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: skip})
		}
		return host, []Backend{be}, skips, nil
	}
	if h.TLS != nil {
		c, skip, err := hostCert(h, s)
		if err != nil {
			return Host{}, nil, nil, err
		}
		if skip != "" {
			skips = append(skips, Skip{Host: h.Name, Reason: skip})
		}
		host.TLS, host.Redirect = true, h.TLS.Only
		bundles[c.Path] = c
		// An ACME name's own certificate, once issued: HAProxy picks it by
		// SNI among the bind's, the default for the others.
		if h.UsesACME() && s.ACMECert != nil {
			for _, n := range host.Names {
				if f := s.ACMECert(n); f != "" {
					bundles[f] = Cert{Path: f}
				}
			}
		}
	}
	var bes []Backend
	for _, r := range h.Routes {
		be, err := httpBackend(h.Name, r, ca)
		if err != nil {
			return Host{}, nil, nil, err
		}
		if s.Edge.AccessLog != "" {
			if be.LogRoute = h.Name + r.Path; !isLogRoute(be.LogRoute) {
				return Host{}, nil, nil, fmt.Errorf("host %s route %s: %q cannot be the access log's route", h.Name, r.Path, be.LogRoute)
			}
		}
		if err := applyLimits(&be, r, s.Edge, false); err != nil {
			return Host{}, nil, nil, err
		}
		rule := Rule{Route: r.Path, Backend: be.Name, All: r.Path == "/"}
		if !rule.All {
			rule.Exact = decode(r.Path)
			rule.Prefix = rule.Exact + "/"
		}
		host.Rules = append(host.Rules, rule)
		bes = append(bes, be)
	}
	return host, bes, skips, nil
}

// hostCert returns a TLS host's certificate bundle and, when its label
// certificate cannot be served, why: the bundle is then the default one.
func hostCert(h routing.Host, s Settings) (Cert, string, error) {
	if h.TLS.CertFile == "" && h.TLS.KeyFile == "" {
		if s.DefaultCert == "" {
			return Cert{}, "", fmt.Errorf("host %s uses the default certificate, but none is configured", h.Name)
		}
		return Cert{Path: s.DefaultCert}, "", nil
	}
	for _, p := range []string{h.TLS.CertFile, h.TLS.KeyFile} {
		if err := checkCertPath(p); err != nil {
			return Cert{}, "", fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	if s.CertDir == "" {
		return Cert{}, "", fmt.Errorf("host %s names certificate %s, but no certificate directory is configured", h.Name, h.TLS.CertFile)
	}
	cert, key := filepath.Join(s.CertDir, h.TLS.CertFile), filepath.Join(s.CertDir, h.TLS.KeyFile)
	why := ""
	switch {
	case s.CertCheck != nil:
		why = s.certWhy[h.Name]
	case s.CertMissing != nil && (s.CertMissing(cert) || s.CertMissing(key)):
		why = fmt.Sprintf("certificate %s or key %s cannot be read", cert, key)
	}
	if why != "" && s.DefaultCert != "" {
		// As the built-in proxy: the default certificate, reported.
		return Cert{Path: s.DefaultCert}, why + "; the host gets the default certificate", nil
	}
	if why != "" {
		return Cert{}, "", fmt.Errorf("host %s: %s, and no default certificate is configured", h.Name, why)
	}
	if cert == key {
		return Cert{Path: cert}, "", nil
	}
	if s.BundleDir == "" {
		return Cert{}, "", fmt.Errorf("host %s: no directory is configured for certificate bundles", h.Name)
	}
	sum := sha256.Sum256([]byte(cert + "\x00" + key))
	return Cert{Path: filepath.Join(s.BundleDir, hex.EncodeToString(sum[:8])+".pem"), Cert: cert, Key: key}, "", nil
}

// httpBackend builds the backend of one HTTP route.
func httpBackend(host string, r routing.Route, ca string) (Backend, error) {
	where := fmt.Sprintf("host %s route %s", host, r.Path)
	if err := checkPath(r.Path); err != nil {
		return Backend{}, fmt.Errorf("%s: %w", where, err)
	}
	be := Backend{Name: backendName("be", host, r.Path), Host: host, Route: r.Path, Mode: "http", ForwardFor: true}
	var err error
	if err = common(&be, r, where); err != nil {
		return Backend{}, err
	}
	if r.StripPath && r.Path != "/" {
		re := regexpQuote(r.Path)
		be.Strip = &Strip{Exact: "^" + re + "$", Prefix: "^" + re + "(/.*)$"}
	}
	for _, w := range r.WebSocketPaths {
		if err := checkPath(w); err != nil {
			return Backend{}, fmt.Errorf("%s: websocket endpoint: %w", where, err)
		}
		d := decode(w)
		m := PathMatch{Exact: d, Prefix: d + "/"}
		if w == "/" {
			m = PathMatch{Exact: "/", Prefix: "/"}
		}
		be.WebSockets = append(be.WebSockets, m)
	}
	if be.Check, err = check(host, r, where); err != nil {
		return Backend{}, err
	}
	be.ServerOptions = serverOptions(be.Check, r.BackendTLS, ca, true)
	if be.Cookie, err = stickyCookie(r, where); err != nil {
		return Backend{}, err
	}
	return be, be.addServers(r, where)
}

// passthroughBackend builds the backend of a passthrough route: mode tcp,
// the route's balance and servers, a health check over TLS. What applies
// only to HTTP (a sticky cookie, backend options, TLS to the backends) is
// left out, and skip says so.
func passthroughBackend(host string, r routing.Route) (Backend, string, error) {
	where := fmt.Sprintf("host %s route %s", host, r.Path)
	if err := checkPath(r.Path); err != nil {
		return Backend{}, "", fmt.Errorf("%s: %w", where, err)
	}
	be := Backend{Name: backendName("pt", host, r.Path), Host: host, Route: r.Path, Mode: "tcp", Passthrough: true}
	if err := common(&be, r, where); err != nil {
		return Backend{}, "", err
	}
	var ignored []string
	if r.StickyCookie != "" {
		ignored = append(ignored, "the sticky cookie")
	}
	if len(be.Options) > 0 {
		ignored = append(ignored, "the backend options")
		be.Options = nil
	}
	if r.BackendTLS != nil {
		ignored = append(ignored, "ssl_backend (the backends terminate TLS themselves)")
	}
	var skip string
	if len(ignored) > 0 {
		skip = "SNI passthrough: " + strings.Join(ignored, ", ") + " ignored; the proxy never sees the HTTP inside the TLS connection"
	}
	var err error
	if be.Check, err = check(host, r, where); err != nil {
		return Backend{}, "", err
	}
	if be.Check != nil {
		// The backends speak only TLS: so does the check. Their
		// certificate is theirs to show, not the proxy's to verify.
		ms, _ := ms(be.Check.Interval)
		be.ServerOptions = []string{"check", "inter", ms, "check-ssl", "verify", "none", "check-sni", host}
	}
	return be, skip, be.addServers(r, where)
}

// tcpHost builds a tcp host and its backend; be is nil when tcp routes are
// skipped.
func tcpHost(h routing.Host, enabled bool) (TCPHost, *Backend, []Skip, error) {
	r := h.Routes[0]
	where := fmt.Sprintf("host %s route %s", h.Name, r.Path)
	if !enabled {
		return TCPHost{}, nil, []Skip{{Host: h.Name, Path: r.Path, Reason: "tcp route: no tcp address is configured for the haproxy driver"}}, nil
	}
	if err := checkPath(r.Path); err != nil {
		return TCPHost{}, nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	var skips []Skip
	if h.TLS != nil {
		skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: "tcp route: the ssl labels are ignored; TLS passes through to the backends, routed by SNI"})
	}
	if r.StickyCookie != "" {
		skips = append(skips, Skip{Host: h.Name, Path: r.Path, Reason: "tcp route: the sticky cookie is ignored; a tcp connection carries no cookie"})
	}
	be := Backend{Name: backendName("tcp", h.Name, r.Path), Host: h.Name, Route: r.Path, Mode: "tcp"}
	if err := common(&be, r, where); err != nil {
		return TCPHost{}, nil, nil, err
	}
	var err error
	if be.Check, err = check(h.Name, r, where); err != nil {
		return TCPHost{}, nil, nil, err
	}
	be.ServerOptions = serverOptions(be.Check, r.BackendTLS, defaultCABundle, false)
	if err := be.addServers(r, where); err != nil {
		return TCPHost{}, nil, nil, err
	}
	return TCPHost{Name: h.Name, Names: h.Names(), Backend: be.Name}, &be, skips, nil
}

// check validates a route's health check.
func check(host string, r routing.Route, where string) (*Check, error) {
	if r.HealthCheck == nil {
		return nil, nil
	}
	if err := checkPath(r.HealthCheck.Path); err != nil {
		return nil, fmt.Errorf("%s: health check: %w", where, err)
	}
	iv := r.HealthCheck.Interval
	if iv == 0 {
		iv = defaultCheckInterval
	}
	if iv < 100*time.Millisecond || iv > time.Hour {
		return nil, fmt.Errorf("%s: health check interval %v is outside 100ms to 1h", where, iv)
	}
	return &Check{Path: r.HealthCheck.Path, Host: host, Interval: iv}, nil
}

// common fills what HTTP and TCP backends share: balance and options.
func common(be *Backend, r routing.Route, where string) error {
	switch r.Balance {
	case routing.RoundRobin, "":
		be.Balance = "roundrobin"
	case routing.LeastConn:
		be.Balance = "leastconn"
	case routing.Source:
		be.Balance, be.HashType = "source", "consistent"
	case routing.Random:
		be.Balance = "random"
	default:
		return fmt.Errorf("%s: unknown balance algorithm %q", where, r.Balance)
	}
	for _, o := range r.BackendOptions {
		if !slices.Contains(backendOptions, o) {
			return fmt.Errorf("%s: backend option %q is not in the allow-list (%s)", where, o, strings.Join(backendOptions, ", "))
		}
		if o == "forwardfor" && be.Mode == "http" {
			continue // always on for HTTP
		}
		be.Options = append(be.Options, o)
	}
	slices.Sort(be.Options)
	be.Options = slices.Compact(be.Options)
	return nil
}

// addServers checks the route's backend addresses and adds one server per
// distinct address (the first backend listed wins a shared address).
func (be *Backend) addServers(r routing.Route, where string) error {
	seen := map[string]bool{}
	for _, b := range r.Backends {
		a, err := parseAddress(b.Address)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		n := serverName(a)
		if seen[n] {
			continue
		}
		seen[n] = true
		srv := Server{Name: n, Address: a.String(), Container: containerName(b.Name)}
		if be.Cookie != nil {
			srv.Cookie = cookieValue(b.Address)
		}
		be.Servers = append(be.Servers, srv)
	}
	slices.SortFunc(be.Servers, func(a, b Server) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

// serverOptions are the words after a server's address.
func serverOptions(c *Check, t *routing.BackendTLS, ca string, http bool) []string {
	var o []string
	if c != nil {
		ms, _ := ms(c.Interval)
		o = append(o, "check", "inter", ms)
	}
	if t != nil {
		o = append(o, "ssl")
		if t.Verify {
			o = append(o, "verify", "required", "ca-file", ca)
			if http {
				// The backend's certificate is checked against the
				// requested host name, as nginx's proxy_ssl_name $host.
				o = append(o, "sni", "req.hdr(host),field(1,:)")
			}
			if c != nil {
				o = append(o, "check-sni", c.Host)
			}
		} else {
			o = append(o, "verify", "none")
		}
	}
	return o
}

// containerName keeps a Docker container name for a comment, or "" if it
// is not one.
func containerName(s string) string {
	s = strings.TrimPrefix(s, "/")
	if s == "" || len(s) > 128 || !isAlnum(s[0]) {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return ""
		}
	}
	return s
}

// tlsView turns the profile into HAProxy's terms.
func tlsView(s Settings) (TLS, error) {
	p := s.Profile
	if p.Name == "" {
		p, _ = tlsconf.Lookup(tlsconf.Default)
	}
	if len(p.Protocols) == 0 {
		return TLS{}, fmt.Errorf("tls profile %s enables no protocol version", p.Name)
	}
	t := TLS{Profile: p.Name, Curves: p.OpenSSLCurves(), PreferClientCiphers: !p.PreferServerCiphers}
	// HAProxy takes a range; the profile's versions must be one.
	all := []string{"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
	first := slices.Index(all, p.Protocols[0].HAProxy)
	for i, ver := range p.Protocols {
		if first < 0 || first+i >= len(all) || all[first+i] != ver.HAProxy {
			return TLS{}, fmt.Errorf("tls profile %s: haproxy needs a contiguous range of protocol versions, not %s", p.Name, p.NginxProtocols())
		}
	}
	t.MinVersion, t.MaxVersion = p.Protocols[0].HAProxy, p.Protocols[len(p.Protocols)-1].HAProxy
	if p.HasTLS12() {
		t.Ciphers = p.OpenSSLCiphers()
	}
	if t.MaxVersion == "TLSv1.3" {
		t.Ciphersuites = strings.Join(tlsconf.TLS13Ciphers, ":")
	}
	return t, nil
}

// listen turns host:port into a bind address.
func listen(addr string) (Listen, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Listen{}, fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || port[0] == '0' || port[0] == '+' {
		return Listen{}, fmt.Errorf("%q: haproxy needs a fixed port from 1 to 65535", addr)
	}
	switch {
	case host == "":
		return Listen{Addr: ":" + port, Port: port}, nil
	case strings.Contains(host, ":"):
		if _, err := netip.ParseAddr(host); err != nil {
			return Listen{}, fmt.Errorf("%q: %q is not an IP address", addr, host)
		}
		return Listen{Addr: "[" + host + "]:" + port, Port: port}, nil
	}
	if _, err := netip.ParseAddr(host); err != nil && !isHostname(host) {
		return Listen{}, fmt.Errorf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	return Listen{Addr: host + ":" + port, Port: port}, nil
}

// loopback is listen for an address that must stay on this machine.
func loopback(addr string) (Listen, error) {
	l, err := listen(addr)
	if err != nil {
		return Listen{}, err
	}
	host, _, _ := net.SplitHostPort(addr)
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return Listen{}, fmt.Errorf("%q must be a loopback address (127.0.0.1 or [::1]): the stats page has admin rights", addr)
	}
	return l, nil
}

// checkPath checks the discovery URL-path grammar: absolute, clean, only
// [A-Za-z0-9._~/-] and %XX escapes.
func checkPath(p string) error {
	if p == "" || p[0] != '/' {
		return fmt.Errorf("path %q must start with /", p)
	}
	if len(p) > 1024 {
		return fmt.Errorf("path %.32q... is longer than 1024 bytes", p)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case isAlnum(c) || strings.IndexByte("._~/-", c) >= 0:
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if d < 0x20 || d == 0x7f || d == '/' || d == '\\' || isAlnum(d) || strings.IndexByte("._~-", d) >= 0 {
				return fmt.Errorf("path %q escapes %q, which must not be escaped", p, d)
			}
			if 'a' <= p[i+1] && p[i+1] <= 'f' || 'a' <= p[i+2] && p[i+2] <= 'f' {
				return fmt.Errorf("path %q has a lowercase escape", p)
			}
			i += 2
		default:
			return fmt.Errorf("path %q holds %q, outside the path grammar", p, c)
		}
	}
	if p != "/" && strings.HasSuffix(p, "/") {
		return fmt.Errorf("path %q ends with /", p)
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if p != "/" && (seg == "" || seg == "." || seg == "..") {
			return fmt.Errorf("path %q is not clean (empty, . or .. segment)", p)
		}
	}
	return nil
}

// checkCertPath checks the discovery certificate-path grammar.
func checkCertPath(p string) error {
	if p == "" || len(p) > 255 {
		return fmt.Errorf("certificate path %q must be 1-255 bytes", p)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || seg[0] == '-' {
			return fmt.Errorf("certificate path %q: bad segment %q", p, seg)
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return fmt.Errorf("certificate path %q holds %q", p, c)
			}
		}
	}
	return nil
}

// regexpQuote escapes a checked route path for a PCRE: of its alphabet
// only '.' is special.
func regexpQuote(p string) string { return strings.ReplaceAll(p, ".", `\.`) }

// decode turns %XX escapes into bytes, as HAProxy's url_dec does; the path
// grammar guarantees every '%' starts a valid escape.
func decode(p string) string {
	d, err := url.PathUnescape(p)
	if err != nil {
		return p // unreachable for paths that passed the grammar
	}
	return d
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
