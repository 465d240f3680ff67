package discovery

import (
	"fmt"
	"maps"
	"slices"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// grouper merges container specs into hosts and routes. Specs must be added
// in precedence order (see Build): the first container of a host or route
// defines its shared settings, and a later one that disagrees is refused.
type grouper struct {
	hosts map[string]*hostEntry
	// names maps every claimed name (host names and aliases) to its host.
	names map[string]*hostEntry
}

type hostEntry struct {
	def    spec // the container that defined the host's settings
	routes map[string]*routeEntry
}

type routeEntry struct {
	def      spec // the container that defined the route's settings
	backends []routing.Backend
}

func newGrouper() *grouper {
	return &grouper{hosts: make(map[string]*hostEntry), names: make(map[string]*hostEntry)}
}

// add merges s, or returns the conflicts that keep it out. Nothing of a
// refused spec is kept, so it cannot affect a later one.
func (g *grouper) add(s spec) []routing.Problem {
	r := &reader{c: s.c, kind: s.kind}
	g.checkNames(r, s)
	h := g.hosts[s.host]
	if h != nil {
		g.checkHost(r, h, s)
	}
	if len(r.problems) > 0 {
		return r.problems
	}
	if h == nil {
		h = &hostEntry{def: s, routes: make(map[string]*routeEntry)}
		g.hosts[s.host] = h
		g.names[s.host] = h
		for a := range s.aliases {
			g.names[a] = h
		}
	}
	rt := h.routes[s.route.Path]
	if rt == nil {
		rt = &routeEntry{def: s}
		h.routes[s.route.Path] = rt
	}
	rt.backends = append(rt.backends, s.backends...)
	return nil
}

// checkNames refuses s when its host name or an alias already belongs to
// another host: a name can answer for one host only.
func (g *grouper) checkNames(r *reader, s spec) {
	if !g.claimedElsewhere(s) {
		return
	}
	names := map[string]string{s.host: s.hostLabel}
	maps.Copy(names, s.aliases)
	for _, name := range slices.Sorted(maps.Keys(names)) {
		owner := g.names[name]
		if owner == nil || owner.def.host == s.host {
			continue
		}
		role := "an alias"
		if owner.def.host == name {
			role = "the host name"
		}
		r.problem(names[name], routing.ReasonConflict, fmt.Sprintf(
			"name %s is already %s of host %s, defined by %s; a name can belong to one host only, remove it here or give both the same host",
			quote(name), role, quote(owner.def.host), owner.def.origin()))
	}
}

// claimedElsewhere reports whether any name of s belongs to another host:
// the cheap test before checkNames builds its ordered report.
func (g *grouper) claimedElsewhere(s spec) bool {
	if owner := g.names[s.host]; owner != nil && owner.def.host != s.host {
		return true
	}
	for a := range s.aliases {
		if owner := g.names[a]; owner != nil && owner.def.host != s.host {
			return true
		}
	}
	return false
}

// checkHost refuses s when it disagrees with host h on a per-host setting
// or, when it joins an existing route, on a per-route setting; and when a
// tcp route would share its host with any other route.
func (g *grouper) checkHost(r *reader, h *hostEntry, s spec) {
	if !sameHostSettings(h.def, s) {
		differ(r, "host "+quote(s.host), h.def, h.def.hostSettings(), s.hostSettings())
	}
	if rt := h.routes[s.route.Path]; rt != nil {
		if !sameRouteSettings(rt.def.route, s.route) {
			differ(r, "route "+quote(s.host+s.route.Path), rt.def, rt.def.routeSettings(), s.routeSettings())
		}
		return
	}
	for _, path := range slices.Sorted(maps.Keys(h.routes)) {
		other := h.routes[path].def
		if other.route.Protocol == routing.TCP || s.route.Protocol == routing.TCP {
			r.problem(LabelProtocol, routing.ReasonConflict, fmt.Sprintf(
				"host %s already has route %s (protocol %s), defined by %s; a tcp route must be the only route of its host",
				quote(s.host), quote(path), other.route.Protocol, other.origin()))
			return
		}
	}
}

// differ records one conflict per setting where got disagrees with want,
// defined by container def.
func differ(r *reader, what string, def spec, want, got []setting) {
	differs := make(map[string]bool)
	for i := range want {
		if want[i].value == got[i].value || differs[want[i].parent] {
			continue
		}
		differs[want[i].label] = true
		mine, theirs := labelOf(r.kindName(), want[i].label), describeLabel(def.kindName(), want[i].label)
		r.problem(mine, routing.ReasonConflict, fmt.Sprintf(
			"%s is already defined by %s with %s %s, this %s has %s; give every container or service of the %s the same setting",
			what, def.origin(), theirs, showSetting(want[i].value), r.kindName(), showSetting(got[i].value), what))
	}
}

// table returns the merged routing table, not yet normalized.
func (g *grouper) table() routing.Table {
	var t routing.Table
	for _, h := range g.hosts {
		host := routing.Host{Name: h.def.host, Aliases: h.def.aliasList()}
		if h.def.tls != nil {
			tls := *h.def.tls
			host.TLS = &tls
		}
		for _, rt := range h.routes {
			route := rt.def.route
			route.Backends = rt.backends
			host.Routes = append(host.Routes, route)
		}
		t.Hosts = append(t.Hosts, host)
	}
	return t
}

// lbEquivalent maps a shared setting, named by its Interlock 1 label, to
// the service label that sets it, or to "" when no one service label does.
var lbEquivalent = map[string]string{
	LabelAliasDomain:         "",
	LabelSSL:                 "",
	LabelSSLOnly:             LabelLBSSLOnly,
	LabelSSLCert:             LabelLBSSLCert,
	LabelSSLCertKey:          LabelLBSSLKey,
	LabelSSLACME:             LabelLBSSLACME,
	LabelProtocol:            "",
	LabelContextRootRewrite:  LabelLBContextRootRewrite,
	LabelWebSocketEndpoint:   LabelLBWebSocketEndpoints,
	LabelHealthCheck:         "",
	LabelHealthCheckInterval: "",
	LabelBalanceAlgorithm:    LabelLBIPHash,
	LabelBackendOption:       "",
	LabelSSLBackend:          LabelLBSSLBackend,
	LabelSSLBackendTLSVerify: LabelLBSSLBackendTLSVerify,

	LabelBackendConnectTimeout:        LabelLBBackendConnectTimeout,
	LabelBackendResponseHeaderTimeout: LabelLBBackendResponseHeaderTimeout,
	LabelBackendIdleTimeout:           LabelLBBackendIdleTimeout,
	LabelMaxBodyBytes:                 LabelLBMaxBodyBytes,
}

// labelOf names a shared setting in the dialect of kind: the label that
// sets it there, or "" when none does (the sticky cookie on a container,
// aliases or health checks on a service).
func labelOf(kind, label string) string {
	if kind == "service" {
		if l, ok := lbEquivalent[label]; ok {
			return l
		}
		return label
	}
	if label == LabelLBStickyCookie || label == LabelLBSSLPassthrough {
		return ""
	}
	return label
}

// describeLabel names a setting for a message, even when no label sets it.
func describeLabel(kind, label string) string {
	if l := labelOf(kind, label); l != "" {
		return l
	}
	return "the setting of " + label + " (no " + kind + " label sets it)"
}
