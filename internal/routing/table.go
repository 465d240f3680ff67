// Package routing is the model every part of Interlock speaks: discovery
// produces a Table, the controller hands it to a driver, and drivers render
// or serve it. It never imports Docker or driver types.
//
// A Table is always in canonical form (see Normalize): every slice is sorted
// and free of duplicates, so equal routing state gives equal bytes and an
// equal Hash, and no driver has to sort anything itself.
package routing

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"
)

// Table is the complete routing state: hosts, their routes and backends.
// The zero value routes nothing.
type Table struct {
	Hosts []Host `json:"hosts"`
}

// Host is one virtual host. Name is the primary host name; Aliases answer
// exactly like it. All names are lowercase RFC 1123 host names.
type Host struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
	// TLS is nil for a plain-HTTP host.
	TLS *TLS `json:"tls,omitempty"`
	// Default makes this host answer requests for names no host claims
	// (com.docker.lb.default_backend). At most one host is the default.
	Default bool `json:"default,omitempty"`
	// RedirectTo, when set, answers every request for this host with a
	// permanent redirect to this base URL ("https://new.example.com",
	// scheme and host only), keeping the path and query; such a host has
	// no routes (com.docker.lb.redirects).
	RedirectTo string  `json:"redirect_to,omitempty"`
	Routes     []Route `json:"routes"`
}

// TLS holds a host's certificate settings. CertFile and KeyFile are paths
// relative to the configured certificate directory; empty means the proxy's
// default certificate.
type TLS struct {
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// Only redirects plain HTTP requests for this host to HTTPS.
	Only bool `json:"only,omitempty"`
	// Passthrough hands the TLS connection to the backends undecrypted,
	// chosen by SNI (com.docker.lb.ssl_passthrough); the proxy holds no
	// certificate for the host.
	Passthrough bool `json:"passthrough,omitempty"`
	// ACME asks for a certificate issued over ACME for every name of the
	// host (interlock.ssl_acme, com.docker.lb.ssl_acme, or Interlock's
	// acme_hosts=all for TLS hosts without a certificate of their own).
	// Never set together with CertFile or Passthrough. Only the built-in
	// proxy acts on it; until a certificate is issued, and whenever
	// issuance fails, the host gets the default certificate.
	ACME bool `json:"acme,omitempty"`
}

// Balance names a load-balancing algorithm. The zero value means RoundRobin.
type Balance string

const (
	RoundRobin Balance = "roundrobin"
	LeastConn  Balance = "leastconn"
	// Source hashes the client address, so one client keeps one backend
	// while the set of backends is stable (nginx ip_hash, HAProxy source).
	Source Balance = "source"
	Random Balance = "random"
)

// Balances lists every supported algorithm, for validation and error messages.
var Balances = []Balance{RoundRobin, LeastConn, Source, Random}

// Protocol is the protocol a route speaks to its backends.
type Protocol string

const (
	HTTP Protocol = "http"
	// TCP routes are plain TCP passthrough; only drivers that can do it
	// (HAProxy) serve them.
	TCP Protocol = "tcp"
)

// Route sends requests under Path (a URL path prefix, "/" for all) to
// Backends.
type Route struct {
	// Path is a clean absolute URL path prefix without a trailing slash,
	// except "/" itself. A request matches when its path equals Path or
	// continues it after a "/".
	Path string `json:"path"`
	// StripPath removes Path from the request before it is forwarded
	// (interlock.context_root_rewrite).
	StripPath bool     `json:"strip_path,omitempty"`
	Protocol  Protocol `json:"protocol"`
	Balance   Balance  `json:"balance"`
	// WebSocketPaths are paths under this route where the proxy must pass
	// the Upgrade handshake through (drivers that need explicit config,
	// like nginx, use them; the built-in proxy upgrades anywhere).
	WebSocketPaths []string     `json:"websocket_paths,omitempty"`
	HealthCheck    *HealthCheck `json:"health_check,omitempty"`
	// BackendOptions are HAProxy "option" names from a fixed allow-list.
	BackendOptions []string `json:"backend_options,omitempty"`
	// BackendTLS is nil when backends speak plain HTTP.
	BackendTLS *BackendTLS `json:"backend_tls,omitempty"`
	// StickyCookie, when set, names a cookie that pins a client to the
	// backend it first reached (com.docker.lb.sticky_session_cookie).
	StickyCookie string `json:"sticky_cookie,omitempty"`
	// Limits overrides the proxy's global backend timeouts and body limit
	// for this route (interlock.backend_connect_timeout and the like); nil
	// keeps every global setting. Normalize makes an all-zero Limits nil.
	Limits   *Limits   `json:"limits,omitempty"`
	Backends []Backend `json:"backends"`
}

// Unlimited, in a field of Limits that takes it, lifts the proxy's global
// limit for the route ("0" in the label: no limit).
const Unlimited = -1

// Limits are a route's overrides of the proxy's global settings of the
// same names (--backend-connect-timeout and the like). A zero field keeps
// the global setting. Only settings a proxy applies once it knows the
// route are here: the client's header and idle timeouts and the header
// size limit are the listener's, decided before a request names its host.
type Limits struct {
	// ConnectTimeout bounds a connect to one of the route's backends. More
	// than 0, or 0 for the global setting.
	ConnectTimeout time.Duration `json:"connect_timeout,omitempty"`
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers (nginx and HAProxy: the longest pause between two reads of
	// the response). 0: the global setting; Unlimited: no limit.
	ResponseHeaderTimeout time.Duration `json:"response_header_timeout,omitempty"`
	// IdleTimeout is how long an idle keep-alive connection to a backend
	// is kept. More than 0, or 0 for the global setting.
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	// MaxBodyBytes bounds request bodies (413 past it). 0: the global
	// setting; Unlimited: no limit.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
}

// HealthCheck is an active HTTP health check against each backend.
type HealthCheck struct {
	Path     string        `json:"path"`
	Interval time.Duration `json:"interval"`
}

// BackendTLS says the backends speak TLS.
type BackendTLS struct {
	// Verify checks the backend's certificate chain and name.
	Verify bool `json:"verify"`
}

// Backend is one address that serves a route, with where it came from.
type Backend struct {
	// Address is "ip:port" (IPv6 in brackets).
	Address string `json:"address"`
	// Container is the full container ID, when the backend is a container.
	Container string `json:"container,omitempty"`
	// Name is a human name for the backend: the container name, or
	// service.slot for a Swarm task.
	Name string `json:"name,omitempty"`
	// Task and Node identify a Swarm task and the node (host name) it runs
	// on; empty for plain containers.
	Task string `json:"task,omitempty"`
	Node string `json:"node,omitempty"`
}

// Names returns the primary name followed by the aliases.
func (h Host) Names() []string {
	return append([]string{h.Name}, h.Aliases...)
}

// Normalize puts t in canonical form: hosts sorted by name, aliases sorted
// and deduplicated, routes sorted longest path first (so the first prefix
// that matches is the most specific one), backends sorted by address.
// Discovery calls it once; everything downstream may rely on it.
func (t *Table) Normalize() {
	for i := range t.Hosts {
		h := &t.Hosts[i]
		h.Aliases = sortedUnique(h.Aliases)
		for j := range h.Routes {
			r := &h.Routes[j]
			if r.Protocol == "" {
				r.Protocol = HTTP
			}
			if r.Balance == "" {
				r.Balance = RoundRobin
			}
			r.WebSocketPaths = sortedUnique(r.WebSocketPaths)
			r.BackendOptions = sortedUnique(r.BackendOptions)
			if r.Limits != nil && *r.Limits == (Limits{}) {
				r.Limits = nil
			}
			slices.SortFunc(r.Backends, func(a, b Backend) int {
				return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Container, b.Container), cmp.Compare(a.Task, b.Task))
			})
			r.Backends = slices.CompactFunc(r.Backends, func(a, b Backend) bool { return a == b })
		}
		slices.SortFunc(h.Routes, func(a, b Route) int {
			return cmp.Or(cmp.Compare(len(b.Path), len(a.Path)), cmp.Compare(a.Path, b.Path))
		})
	}
	slices.SortFunc(t.Hosts, func(a, b Host) int { return cmp.Compare(a.Name, b.Name) })
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Hash identifies the table's content: equal tables have equal hashes. It
// assumes t is normalized.
func (t Table) Hash() string {
	b, err := json.Marshal(t)
	if err != nil {
		// Only plain data types are in a Table; this cannot fail.
		panic("routing: marshal table: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Lookup returns the host that answers to name (primary or alias).
func (t Table) Lookup(name string) (Host, bool) {
	for _, h := range t.Hosts {
		if h.Name == name || slices.Contains(h.Aliases, name) {
			return h, true
		}
	}
	return Host{}, false
}

// BackendCount is the number of backends over all routes.
func (t Table) BackendCount() int {
	n := 0
	for _, h := range t.Hosts {
		for _, r := range h.Routes {
			n += len(r.Backends)
		}
	}
	return n
}

// UsesACME reports whether h gets its certificate over ACME: TLS.ACME,
// and neither a certificate of its own nor passthrough.
func (h Host) UsesACME() bool {
	return h.TLS != nil && h.TLS.ACME && h.TLS.CertFile == "" && !h.TLS.Passthrough
}

// ACMENames returns every name (primary names and aliases) of t's ACME
// hosts, sorted: what a certificate source is asked to manage.
func (t Table) ACMENames() []string {
	var names []string
	for _, h := range t.Hosts {
		if h.UsesACME() {
			names = append(names, h.Names()...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
