package discovery

import (
	"fmt"
	"slices"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// reader walks one container's labels and collects its problems.
type reader struct {
	c docker.Container
	// kind is "container" (the zero value) or "service".
	kind string
	// values holds the interlock labels whose value passed checkValue.
	values   map[string]string
	problems []routing.Problem
}

// newReader screens every interlock.* label of c: unknown names and values
// with control characters or excess length become problems here, before
// any grammar runs.
func newReader(c docker.Container) *reader {
	r := &reader{c: c, values: make(map[string]string)}
	// Label order does not matter: problems are sorted at the end of Build.
	for key, v := range c.Labels {
		switch kind, _ := classify(key); kind {
		case labelForeign, labelIgnored:
			continue
		case labelUnknown:
			r.problem(safeLabel(key), routing.ReasonInvalidLabel, unknownLabelMessage(key))
			continue
		}
		if err := checkValue(v); err != nil {
			r.invalid(key, err)
			continue
		}
		r.values[key] = v
	}
	return r
}

// has reports whether the label is set at all, valid or not.
func (r *reader) has(key string) bool {
	_, ok := r.c.Labels[key]
	return ok
}

// indexed returns the keys of the indexed label base ("base" and
// "base.N"), sorted, that passed the value screen.
func (r *reader) indexed(base string) []string {
	var keys []string
	for key := range r.values {
		if kind, b := classify(key); kind == labelIndexed && b == base {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

func (r *reader) problem(label, reason, msg string) {
	r.problems = append(r.problems, routing.Problem{
		Kind:    r.kindName(),
		ID:      r.c.ID,
		Name:    r.c.Name,
		Label:   label,
		Reason:  reason,
		Message: msg,
	})
}

func (r *reader) kindName() string {
	if r.kind == "" {
		return "container"
	}
	return r.kind
}

func (r *reader) invalid(label string, err error) {
	r.problem(label, routing.ReasonInvalidLabel, err.Error())
}

func (r *reader) invalidf(label, format string, args ...any) {
	r.problem(label, routing.ReasonInvalidLabel, fmt.Sprintf(format, args...))
}

// read parses label key with parse. ok is false when the label is absent or
// its value is bad; a bad value has been recorded as a problem.
func read[T any](r *reader, key string, parse func(string) (T, error)) (v T, ok bool) {
	raw, found := r.values[key]
	if !found {
		return v, false
	}
	v, err := parse(raw)
	if err != nil {
		r.invalid(key, err)
		return v, false
	}
	return v, true
}

// safeLabel returns key as it may appear in Problem.Label: as is when it is
// plain printable ASCII without spaces, quoted otherwise, so that a hostile
// label name cannot inject lines into a log or a dashboard.
func safeLabel(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] >= 0x7f || key[i] == '"' {
			return quote(key)
		}
	}
	if len(key) > quoteLen {
		return quote(key)
	}
	return key
}
