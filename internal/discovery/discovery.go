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
	containers := slices.Clone(snap.Containers)
	slices.SortFunc(containers, func(a, b docker.Container) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID), cmp.Compare(a.Name, b.Name))
	})
	g := newGrouper()
	var problems []routing.Problem
	for _, c := range containers {
		if !participates(c) {
			continue
		}
		s, probs := parseContainer(c, opts)
		if len(probs) == 0 {
			probs = g.add(s)
		}
		problems = append(problems, probs...)
	}
	t := g.table()
	t.Normalize()
	sortProblems(problems)
	return t, problems
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
