// Package discovery turns a Docker snapshot into a routing table: it reads
// the Interlock 1 container labels (interlock.*), validates every value
// against a strict grammar, and groups containers into hosts and routes.
//
// Build is a pure function, rebuilt whole on every call: the same snapshot,
// in any container order, gives the same table (same Hash) and the same
// problems. A container with a bad label is left out with one Problem per
// mistake; it never harms another container's route. README.md documents the
// label contract.
package discovery

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// Options are the discovery settings that come from Interlock's
// configuration rather than from labels.
type Options struct {
	// BackendAddress is the host address used for ports published on all
	// addresses (0.0.0.0, :: or no host IP). "" means "127.0.0.1".
	BackendAddress string
	// Network, when set, reaches every container by its IP on this Docker
	// network and its private port, instead of by published ports. A
	// container's interlock.network label overrides it for that container.
	Network string
	// ACMEDefault makes ACME the default for every TLS host that names no
	// certificate and is not passed through (Interlock's acme_hosts=all):
	// such a host gets routing.TLS.ACME unless its interlock.ssl_acme or
	// com.docker.lb.ssl_acme label says false. Off, only the hosts whose
	// label says true get it.
	ACMEDefault bool
}

// Build computes the routing table for snap and the problems that kept
// containers out of it.
//
// Only running, routable containers with interlock.hostname or
// interlock.domain take part; others are skipped without a problem, and so
// is the side-loaded proxy (interlock.ext.name). Containers are taken in
// order of (Created, ID): the first container of a host or route defines its
// shared settings, and a later one that disagrees is left out with a
// routing.ReasonConflict problem.
//
// The table is normalized. Problems are sorted by Kind, Name, ID, Label,
// Reason and Message; nil when there are none.
func Build(snap docker.Snapshot, opts Options) (routing.Table, []routing.Problem) {
	objects := make([]object, 0, len(snap.Containers)+len(snap.Services))
	for _, c := range snap.Containers {
		if participates(c) {
			objects = append(objects, object{c: c, parse: func() ([]spec, []redirect, []routing.Problem) {
				s, probs := parseContainer(c, opts)
				return []spec{s}, nil, probs
			}})
		}
	}
	for _, svc := range snap.Services {
		if serviceParticipates(svc) {
			objects = append(objects, object{c: asContainer(svc), parse: func() ([]spec, []redirect, []routing.Problem) {
				return parseService(svc, opts)
			}})
		}
	}
	slices.SortFunc(objects, func(a, b object) int {
		return cmp.Or(a.c.Created.Compare(b.c.Created), cmp.Compare(a.c.ID, b.c.ID), cmp.Compare(a.c.Name, b.c.Name))
	})
	g := newGrouper()
	var problems []routing.Problem
	var redirects []redirect
	var defaultHost *spec
	for _, o := range objects {
		specs, reds, probs := o.parse()
		if len(probs) > 0 {
			problems = append(problems, probs...)
			continue
		}
		for _, s := range specs {
			if s.isDefault && defaultHost != nil && defaultHost.host != s.host {
				r := &reader{c: s.c, kind: s.kind}
				r.problem(LabelLBDefaultBackend, routing.ReasonConflict, fmt.Sprintf(
					"the default backend is already host %s of %s; only one host can be the default, remove %s here",
					quote(defaultHost.host), defaultHost.origin(), LabelLBDefaultBackend))
				problems = append(problems, r.problems...)
				break
			}
			if probs := g.add(s); len(probs) > 0 {
				problems = append(problems, probs...)
				continue
			}
			if s.isDefault && defaultHost == nil {
				defaultHost = &s
			}
		}
		redirects = append(redirects, reds...)
	}
	t := g.table()
	if defaultHost != nil {
		for i := range t.Hosts {
			t.Hosts[i].Default = t.Hosts[i].Name == defaultHost.host
		}
	}
	problems = append(problems, g.addRedirects(&t, redirects)...)
	t.Normalize()
	sortProblems(problems)
	return t, problems
}

// object is one container or service that asks to be routed.
type object struct {
	c     docker.Container // a service in container shape (asContainer)
	parse func() ([]spec, []redirect, []routing.Problem)
}

// addRedirects adds a redirecting host for each redirect whose name no
// other host claims; the first redirect of a name wins.
func (g *grouper) addRedirects(t *routing.Table, redirects []redirect) []routing.Problem {
	var problems []routing.Problem
	taken := map[string]string{}
	for _, rd := range redirects {
		r := &reader{c: rd.spec.c, kind: rd.spec.kind}
		if owner := g.names[rd.from]; owner != nil {
			r.problem(LabelLBRedirects, routing.ReasonConflict, fmt.Sprintf(
				"redirects host %s, which %s serves; a host either serves or redirects, remove one", quote(rd.from), owner.def.origin()))
		} else if by, ok := taken[rd.from]; ok {
			r.problem(LabelLBRedirects, routing.ReasonConflict, fmt.Sprintf(
				"host %s is already redirected by %s; remove one of the redirects", quote(rd.from), by))
		} else {
			taken[rd.from] = rd.spec.origin()
			t.Hosts = append(t.Hosts, routing.Host{Name: rd.from, RedirectTo: rd.to})
		}
		problems = append(problems, r.problems...)
	}
	return problems
}

func sortProblems(p []routing.Problem) {
	slices.SortFunc(p, func(a, b routing.Problem) int {
		return cmp.Or(
			strings.Compare(a.Kind, b.Kind),
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.ID, b.ID),
			strings.Compare(a.Label, b.Label),
			strings.Compare(a.Reason, b.Reason),
			strings.Compare(a.Message, b.Message),
		)
	})
}
