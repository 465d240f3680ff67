package builtin

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// table is the compiled, immutable form of a routing.Table that requests are
// served from. It is built whole by compile and published with one atomic
// store, so a request sees either the old table or the new one, never a mix.
// Nothing in it changes after publication except the atomic counters of
// routes and backend states.
type table struct {
	// hosts maps every host name and alias (see hostname) to its host.
	hosts map[string]*host
	// fallback answers names no host claims (routing.Host.Default); nil
	// means such requests get 404.
	fallback *host
	// passthrough maps the names of passthrough hosts (routing.TLS
	// .Passthrough) to the route whose backends take their TLS
	// connections untouched (passthrough.go): the host's "/" route, or
	// else its shortest path.
	passthrough map[string]*route
	// certs are the host certificates TLS handshakes choose from by SNI
	// (certs.go). They are loaded by Apply and published with the table,
	// in the same atomic store; never nil in a published table.
	certs *certSet
}

// host is one virtual host with its HTTP routes in table order, which
// routing.Table.Normalize makes longest path first: the first route that
// matches is the most specific one.
type host struct {
	name   string
	routes []*route
	// redirect, when set, is the base URL ("https://new.example.com") every
	// request is redirected to, keeping its path and query; the host has no
	// routes then.
	redirect string

	// rec records the host's requests (Options.Requests); set by Apply
	// before the table is published, nil when nothing is recorded.
	rec RequestRecorder

	// tls is the host's TLS settings, nil for plain HTTP. Proxy.ServeHTTP
	// acts on it before the route is matched (tlsPolicy: a plain request
	// to an Only host gets the redirect); its certificate is in the
	// table's certs.
	tls *routing.TLS
}

// route is one compiled HTTP route. Its fields are fixed at compile time;
// next is the only thing that changes.
type route struct {
	host     string // primary host name, for errors and logs
	path     string // prefix as in routing.Route.Path
	strip    bool
	balance  routing.Balance
	backends []backend
	tls      *routing.BackendTLS // nil: backends speak plain HTTP
	// sticky names the cookie that pins a client to a backend; "" for none.
	sticky string
	// limits are the route's overrides of the proxy's backend timeouts
	// (routing.Route.Limits; the engine picks its transport by them), zero
	// for none. maxBody is the route's effective body limit (its override,
	// else Options.MaxBodyBytes; 0: none) and bodyTooLargeMsg its 413
	// text; dialTimeout its effective connect timeout, for passthrough.
	limits          routing.Limits
	maxBody         int64
	bodyTooLargeMsg string
	dialTimeout     time.Duration

	// next is the round-robin counter; leastconn uses it to rotate ties.
	next atomic.Uint64

	// noLive is returned when no backend is live, built once so that the
	// 503 path allocates nothing.
	noLive *noLiveError

	// forward is the engine's handler for requests matched to this route.
	forward http.Handler
	// fast holds the route's fasthttp clients (fast.go), made on its
	// first request on a FastServer.
	fast atomic.Pointer[fastRoute]
}

// backend is one backend of a route, with the state it shares with every
// route and table that names the same address.
type backend struct {
	addr  string
	name  string // container name, for logs; may be empty
	hash  uint64 // hashString(addr), the backend's key for rendezvous hashing
	state *backendState
}

// compiled is what compile returns besides the table: facts Apply reports.
type compiled struct {
	table *table
	// states holds the state of every backend address in the table; it
	// replaces the proxy's map, which drops addresses no longer present.
	states map[string]*backendState
	// tcpHosts names the hosts whose tcp routes were skipped.
	tcpHosts []string
}

// routeDefaults are the proxy's global settings that a route's
// routing.Limits override.
type routeDefaults struct {
	maxBody     int64 // 0: no limit
	dialTimeout time.Duration
}

// compile validates t and builds its compiled form. old is the current state
// map, reused for addresses still present; it is not modified. fwd builds
// each route's forwarding handler; def are the settings routes override. On error nothing is published and old
// stays intact. compile relies on t being normalized (routing.Normalize): it
// keeps the table's route order.
func compile(t routing.Table, old map[string]*backendState, fwd engine, def routeDefaults) (compiled, error) {
	c := compiled{
		table:  &table{hosts: make(map[string]*host, len(t.Hosts))},
		states: make(map[string]*backendState, len(old)),
	}
	owner := make(map[string]string, len(t.Hosts)) // name -> primary name
	for _, th := range t.Hosts {
		h := &host{name: hostname(th.Name), redirect: th.RedirectTo}
		if h.name == "" {
			return compiled{}, fmt.Errorf("host with an empty name: every host needs a name")
		}
		if h.redirect != "" && len(th.Routes) > 0 {
			return compiled{}, fmt.Errorf("host %q both redirects and has routes: a host either serves or redirects", h.name)
		}
		if th.TLS != nil {
			tlsCopy := *th.TLS
			h.tls = &tlsCopy
		}
		skippedTCP := false
		for _, tr := range th.Routes {
			if tr.Protocol == routing.TCP {
				skippedTCP = true
				continue
			}
			rt, err := compileRoute(h.name, tr, old, c.states, def)
			if err != nil {
				return compiled{}, err
			}
			rt.forward = fwd.forwarder(rt)
			h.routes = append(h.routes, rt)
		}
		if skippedTCP {
			c.tcpHosts = append(c.tcpHosts, h.name)
		}
		if len(h.routes) == 0 && h.redirect == "" {
			// Only tcp routes: the host is not ours to answer, and
			// "no route for host" is the true answer for HTTP clients.
			continue
		}
		var through *route
		if h.tls != nil && h.tls.Passthrough && len(h.routes) > 0 {
			through = h.routes[len(h.routes)-1] // longest path first: the last is "/" or the shortest
			if c.table.passthrough == nil {
				c.table.passthrough = map[string]*route{}
			}
		}
		if th.Default {
			if c.table.fallback != nil {
				return compiled{}, fmt.Errorf("hosts %q and %q are both the default host: only one can be", c.table.fallback.name, h.name)
			}
			c.table.fallback = h
		}
		for _, n := range th.Names() {
			n = hostname(n)
			if prev, dup := owner[n]; dup {
				return compiled{}, fmt.Errorf("host name %q is claimed by host %q and host %q: each name must belong to one host", n, prev, h.name)
			}
			owner[n] = h.name
			c.table.hosts[n] = h
			if through != nil {
				c.table.passthrough[n] = through
			}
		}
	}
	return c, nil
}

func compileRoute(hostName string, tr routing.Route, old, states map[string]*backendState, def routeDefaults) (*route, error) {
	if !strings.HasPrefix(tr.Path, "/") || (tr.Path != "/" && strings.HasSuffix(tr.Path, "/")) {
		return nil, fmt.Errorf("host %q route %q: path must be absolute without a trailing slash (or \"/\")", hostName, tr.Path)
	}
	rt := &route{
		host:     hostName,
		path:     tr.Path,
		strip:    tr.StripPath,
		balance:  tr.Balance,
		sticky:   tr.StickyCookie,
		backends: make([]backend, 0, len(tr.Backends)),
		noLive:   &noLiveError{host: hostName, path: tr.Path},
	}
	switch tr.Balance {
	case "", routing.RoundRobin:
		rt.balance = routing.RoundRobin
	case routing.LeastConn, routing.Source, routing.Random:
	default:
		return nil, fmt.Errorf("host %q route %q: unknown balance algorithm %q (want one of %v)", hostName, tr.Path, tr.Balance, routing.Balances)
	}
	if tr.BackendTLS != nil {
		tlsCopy := *tr.BackendTLS
		rt.tls = &tlsCopy
	}
	if err := rt.setLimits(tr.Limits, def); err != nil {
		return nil, fmt.Errorf("host %q route %q: %w", hostName, tr.Path, err)
	}
	// Start the counter anywhere, so that frequent Applies (each resets it)
	// do not favour the first backend.
	rt.next.Store(rand.Uint64())
	for _, tb := range tr.Backends {
		ap, err := netip.ParseAddrPort(tb.Address)
		if err != nil || ap.Port() == 0 {
			if err == nil {
				err = fmt.Errorf("port 0")
			}
			return nil, fmt.Errorf("host %q route %q backend %q: address must be ip:port with a port in 1-65535: %w", hostName, tr.Path, tb.Address, err)
		}
		addr := ap.String() // canonical, so equal addresses share one state
		st := states[addr]
		if st == nil {
			st = old[addr]
			if st == nil {
				st = &backendState{addr: addr}
			}
			states[addr] = st
		}
		rt.backends = append(rt.backends, backend{addr: addr, name: tb.Name, hash: hashString(addr), state: st})
	}
	return rt, nil
}

// match returns the host and route for a request. h is nil for an unknown
// host; rt is nil when the host has no route for the path.
func (t *table) match(hostHeader, path string) (h *host, rt *route) {
	h = t.hosts[hostname(hostHeader)]
	if h == nil {
		h = t.fallback
	}
	if h == nil || h.redirect != "" {
		return h, nil
	}
	for _, r := range h.routes {
		if matchPrefix(path, r.path) {
			return h, r
		}
	}
	return h, nil
}
