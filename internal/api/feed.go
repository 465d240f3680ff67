package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// Event is one change in the live feed (GET /api/events and the
// dashboard): a host or backend that came or went, an object left out or
// taken back, a failed apply, the Docker connection, the process's own
// lifecycle. Every text field may hold label-derived text: render it as
// text, never as markup.
type Event struct {
	// ID increases by one per event, from 1; it is the SSE event id.
	ID   uint64    `json:"id"`
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	// Level is "info", "warn" or "error".
	Level   string `json:"level"`
	Host    string `json:"host,omitempty"`
	Path    string `json:"path,omitempty"`
	Address string `json:"address,omitempty"`
	// Name is the container, task or service concerned.
	Name    string `json:"name,omitempty"`
	Message string `json:"message"`
	// Hash is the live table's hash after the change, on table changes:
	// a client that fetches /api/routes on this event and gets another
	// hash is early, and should fetch again.
	Hash string `json:"hash,omitempty"`
}

// Event kinds.
const (
	KindHostAdded          = "host_added"
	KindHostRemoved        = "host_removed"
	KindBackendAdded       = "backend_added"
	KindBackendRemoved     = "backend_removed"
	KindTableChanged       = "table_changed"
	KindLeftOut            = "left_out"
	KindLeftOutCleared     = "left_out_cleared"
	KindApplyFailed        = "apply_failed"
	KindDockerConnected    = "docker_connected"
	KindDockerDisconnected = "docker_disconnected"
	KindLifecycle          = "lifecycle"
)

// Event levels.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Feed keeps the most recent events in a ring and hands new ones to
// subscribers. It is a controller.Observer: the table changes it reports
// are the diff between the tables it saw applied. Publishing never blocks:
// a subscriber that falls a whole buffer behind is dropped, and its client
// reconnects and catches up from the ring (Last-Event-ID).
type Feed struct {
	now func() time.Time

	mu     sync.Mutex
	ring   []Event // oldest first, at most size
	size   int
	nextID uint64
	subs   map[*subscriber]struct{}
	closed bool

	// Owned by the controller's goroutine (Built, Applied).
	built    routing.Table
	live     routing.Table
	applied  bool                         // a table went live
	problems map[string][]routing.Problem // by object kind/ID
}

// FeedSize is how many recent events a Feed keeps.
const FeedSize = 256

// perApply caps the table-change events of one apply: past it, the rest
// are summed up in one event, so that a start with hundreds of hosts does
// not flush the ring.
const perApply = 25

// NewFeed returns an empty feed.
func NewFeed() *Feed {
	return &Feed{now: time.Now, size: FeedSize, nextID: 1, subs: map[*subscriber]struct{}{}}
}

// subscriber is one open stream.
type subscriber struct{ ch chan Event }

const subscriberBuffer = 64

// Publish adds an event (its ID and, when zero, At are set here) and hands
// it to every subscriber.
func (f *Feed) Publish(e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishLocked(e)
}

func (f *Feed) publishLocked(e Event) {
	e.ID = f.nextID
	f.nextID++
	if e.At.IsZero() {
		e.At = f.now()
	}
	if e.Level == "" {
		e.Level = LevelInfo
	}
	if len(f.ring) == f.size {
		copy(f.ring, f.ring[1:])
		f.ring = f.ring[:f.size-1]
	}
	f.ring = append(f.ring, e)
	for s := range f.subs {
		select {
		case s.ch <- e:
		default:
			// Too slow: let it go rather than block the controller.
			close(s.ch)
			delete(f.subs, s)
		}
	}
}

// Recent returns the events with an ID above after, oldest first.
func (f *Feed) Recent(after uint64) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recentLocked(after)
}

func (f *Feed) recentLocked(after uint64) []Event {
	for i, e := range f.ring {
		if e.ID > after {
			return append([]Event(nil), f.ring[i:]...)
		}
	}
	return nil
}

// subscribe returns the events after `after` still in the ring and a
// subscriber for the next ones; ok is false once the feed is closed.
func (f *Feed) subscribe(after uint64) (backlog []Event, s *subscriber, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, false
	}
	if after >= f.nextID {
		// An ID from before this process started: send everything.
		after = 0
	}
	s = &subscriber{ch: make(chan Event, subscriberBuffer)}
	f.subs[s] = struct{}{}
	return f.recentLocked(after), s, true
}

func (f *Feed) unsubscribe(s *subscriber) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[s]; ok {
		delete(f.subs, s)
		close(s.ch)
	}
}

// subscribers is the number of open streams.
func (f *Feed) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Close ends every stream, now and to come: an http.Server's Shutdown
// waits for them otherwise (register it with RegisterOnShutdown).
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		close(s.ch)
		delete(f.subs, s)
	}
}

var _ controller.Observer = (*Feed)(nil)

// Built implements controller.Observer: it reports objects newly left out
// and objects no longer left out, and keeps the table for Applied.
func (f *Feed) Built(t routing.Table, problems []routing.Problem) {
	f.built = t
	next := make(map[string][]routing.Problem, len(problems))
	for _, p := range problems {
		k := p.Kind + "/" + p.ID
		next[k] = append(next[k], p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range problems {
		known := false
		for _, q := range f.problems[p.Kind+"/"+p.ID] {
			known = known || q == p
		}
		if !known {
			f.publishLocked(Event{Kind: KindLeftOut, Level: LevelWarn, Name: p.Name, Message: p.Error()})
		}
	}
	for k, ps := range f.problems {
		if _, still := next[k]; !still {
			p := ps[0]
			f.publishLocked(Event{Kind: KindLeftOutCleared, Name: p.Name,
				Message: fmt.Sprintf("%s %s is no longer left out", p.Kind, p.Name)})
		}
	}
	f.problems = next
}

// Applied implements controller.Observer: on success it reports the hosts
// and backends that came and went since the last applied table.
func (f *Feed) Applied(driver string, took time.Duration, err error, _ time.Duration) {
	if err != nil {
		f.Publish(Event{Kind: KindApplyFailed, Level: LevelError,
			Message: fmt.Sprintf("driver %s failed to apply the table after %s; the previous one keeps serving: %v", driver, took.Round(time.Microsecond), err)})
		return
	}
	prev, next, first := f.live, f.built, !f.applied
	f.live, f.applied = next, true
	hash := next.Hash()
	events := diffTables(prev, next)
	f.mu.Lock()
	defer f.mu.Unlock()
	if first {
		f.publishLocked(Event{Kind: KindTableChanged, Hash: hash,
			Message: fmt.Sprintf("first routing table live: %s, %s", plural(len(next.Hosts), "host"), plural(next.BackendCount(), "backend"))})
	}
	if len(events) == 0 {
		if !first {
			f.publishLocked(Event{Kind: KindTableChanged, Hash: hash,
				Message: fmt.Sprintf("routing settings changed (%s, %s)", plural(len(next.Hosts), "host"), plural(next.BackendCount(), "backend"))})
		}
		return
	}
	for i, e := range events {
		if i == perApply {
			f.publishLocked(Event{Kind: KindTableChanged, Hash: hash,
				Message: fmt.Sprintf("and %d more changes: now %s, %s", len(events)-perApply, plural(len(next.Hosts), "host"), plural(next.BackendCount(), "backend"))})
			break
		}
		e.Hash = hash
		f.publishLocked(e)
	}
}

// diffTables lists the hosts and backends added and removed from prev to
// next, in table order: removals first, so a moved backend reads as such.
func diffTables(prev, next routing.Table) []Event {
	type bkey struct{ path, address, container, task string }
	index := func(t routing.Table) (map[string]bool, map[string]map[bkey]routing.Backend) {
		hosts := make(map[string]bool, len(t.Hosts))
		backends := make(map[string]map[bkey]routing.Backend, len(t.Hosts))
		for _, h := range t.Hosts {
			hosts[h.Name] = true
			m := map[bkey]routing.Backend{}
			for _, r := range h.Routes {
				for _, b := range r.Backends {
					m[bkey{r.Path, b.Address, b.Container, b.Task}] = b
				}
			}
			backends[h.Name] = m
		}
		return hosts, backends
	}
	ph, pb := index(prev)
	nh, nb := index(next)
	var out []Event
	for _, h := range prev.Hosts {
		for _, r := range h.Routes {
			for _, b := range r.Backends {
				if _, ok := nb[h.Name][bkey{r.Path, b.Address, b.Container, b.Task}]; !ok {
					out = append(out, Event{Kind: KindBackendRemoved, Host: h.Name, Path: r.Path, Address: b.Address, Name: b.Name,
						Message: fmt.Sprintf("backend %s removed from %s", describe(b), where(h.Name, r.Path))})
				}
			}
		}
		if !nh[h.Name] {
			out = append(out, Event{Kind: KindHostRemoved, Host: h.Name, Message: "host " + h.Name + " removed"})
		}
	}
	for _, h := range next.Hosts {
		if !ph[h.Name] {
			out = append(out, Event{Kind: KindHostAdded, Host: h.Name,
				Message: fmt.Sprintf("host %s added with %s", h.Name, plural(len(h.Routes), "route"))})
		}
		for _, r := range h.Routes {
			for _, b := range r.Backends {
				if _, ok := pb[h.Name][bkey{r.Path, b.Address, b.Container, b.Task}]; !ok {
					out = append(out, Event{Kind: KindBackendAdded, Host: h.Name, Path: r.Path, Address: b.Address, Name: b.Name,
						Message: fmt.Sprintf("backend %s added to %s", describe(b), where(h.Name, r.Path))})
				}
			}
		}
	}
	return out
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func describe(b routing.Backend) string {
	var parts []string
	if b.Name != "" {
		parts = append(parts, b.Name)
	}
	if b.Node != "" {
		parts = append(parts, "on "+b.Node)
	}
	if len(parts) == 0 {
		return b.Address
	}
	return b.Address + " (" + strings.Join(parts, " ") + ")"
}

func where(host, path string) string {
	if path == "/" {
		return host
	}
	return host + path
}

// WatchDocker publishes an event whenever the Docker connection changes
// state, checking every interval until ctx ends.
func (f *Feed) WatchDocker(ctx context.Context, d DockerStatus, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	connected := false
	for {
		st := d.Status()
		switch {
		case st.Connected && !connected:
			f.Publish(Event{Kind: KindDockerConnected, At: st.Since,
				Message: fmt.Sprintf("connected to docker (API %s)", st.APIVersion)})
		case !st.Connected && connected:
			f.Publish(Event{Kind: KindDockerDisconnected, Level: LevelError, At: st.Since,
				Message: "lost the docker connection; the last table keeps serving: " + st.LastError})
		}
		connected = st.Connected
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
