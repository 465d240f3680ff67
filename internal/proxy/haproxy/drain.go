package haproxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// A server that leaves the table is not cut: Apply puts it in HAProxy's
// drain state (no new connections, its own ones go on), and the reaper
// deletes it once it has no connection left, or cuts what is left after
// DrainTimeout. A container being stopped leaves the table on the kill
// event, before its process exits, so its requests in flight finish here.

// drain is a server in drain state.
type drain struct {
	backend, server string
	// deadline is when remaining connections are cut.
	deadline time.Time
}

// drainPoll is how often the reaper looks at draining servers.
const drainPoll = 100 * time.Millisecond

// applyRuntime turns the live servers into t's over the Runtime API:
// additions first (a server coming back from drain is made ready again),
// then drains, so a backend never has fewer servers than it needs. It
// works from the table, not the view, so traffic follows before anything
// is rendered. It returns an error, before any command, when a change
// needs a reload (an address that does not parse, or a host name, which
// only a reload resolves); a failed command also returns one, and the
// caller reloads (which rebuilds every server from the file). t has the
// live table's shape.
func (d *Driver) applyRuntime(ctx context.Context, t routing.Table) error {
	type add struct {
		backend string
		s       Server
		opts    []string
		check   bool
	}
	var adds []add
	var removes []serverKey
	for _, h := range t.Hosts {
		for _, r := range h.Routes {
			prefix := "be"
			if r.Protocol == routing.TCP {
				prefix = "tcp"
			}
			name := backendName(prefix, h.Name, r.Path)
			lb, ok := d.live.backends[name]
			if !ok {
				continue // not rendered (a skipped tcp route), in both tables alike
			}
			want := make(map[string]bool, len(r.Backends))
			for _, b := range r.Backends {
				a, err := parseAddress(b.Address)
				if err != nil {
					return fmt.Errorf("host %s route %s: %w", h.Name, r.Path, err)
				}
				sn := serverName(a)
				if want[sn] {
					continue // the first backend of an address wins, as in the view
				}
				want[sn] = true
				if _, ok := lb.servers[sn]; ok {
					continue
				}
				if !a.IP {
					return fmt.Errorf("server %s/%s is named by a host name, which only a reload resolves", name, sn)
				}
				adds = append(adds, add{backend: name, s: Server{Name: sn, Address: a.String(), Container: containerName(b.Name)},
					opts: lb.opts, check: lb.check})
			}
			for _, sn := range slices.Sorted(maps.Keys(lb.servers)) {
				if !want[sn] {
					removes = append(removes, serverKey{name, sn})
				}
			}
		}
	}
	for _, a := range adds {
		k := serverKey{a.backend, a.s.Name}
		if _, ok := d.draining[k]; ok {
			if err := d.api.readyServer(ctx, a.backend, a.s.Name); err != nil {
				return err
			}
			d.stats.RuntimeOps++
			delete(d.draining, k)
		} else {
			n, err := d.api.addServer(ctx, a.backend, a.s, a.opts, a.check)
			d.stats.RuntimeOps += int64(n)
			if err != nil {
				return err
			}
		}
		d.live.backends[a.backend].servers[a.s.Name] = a.s
	}
	deadline := time.Now().Add(d.opts.DrainTimeout)
	for _, k := range removes {
		if err := d.api.drainServer(ctx, k.backend, k.server); err != nil {
			return err
		}
		d.stats.RuntimeOps++
		delete(d.live.backends[k.backend].servers, k.server)
		d.draining[k] = &drain{backend: k.backend, server: k.server, deadline: deadline}
	}
	d.stats.Draining = len(d.draining)
	if len(removes) > 0 {
		d.startReaper()
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	if len(adds) > 0 || len(removes) > 0 {
		d.log.Debug("servers changed over the runtime api", "added", len(adds), "draining", len(removes))
	}
	return nil
}

// startReaper starts the drain goroutine once; Close ends it.
func (d *Driver) startReaper() {
	d.reaper.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		d.reaperStop, d.reaperDone = cancel, make(chan struct{})
		go func() {
			defer close(d.reaperDone)
			d.reap(ctx)
		}()
	})
}

// reap deletes drained servers until ctx ends. It reads the servers'
// connection counts without the driver's lock, so an Apply never waits
// for that; the deletions themselves (two short commands each) take the
// lock, so a server Apply has just taken back from drain is never deleted.
func (d *Driver) reap(ctx context.Context) {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.wake:
		}
		d.mu.Lock()
		var backends []string
		if !d.closed {
			for k := range d.draining {
				if !slices.Contains(backends, k.backend) {
					backends = append(backends, k.backend)
				}
			}
		}
		d.mu.Unlock()
		if len(backends) == 0 {
			continue
		}
		slices.Sort(backends)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		stats := map[serverKey]serverStat{}
		ok := true
		for _, b := range backends {
			rows, err := d.api.stats(rctx, b)
			if err != nil {
				// The backend may be gone after a reload; the next round
				// sees the draining list cleared.
				d.log.Debug("drain: cannot read server stats", "backend", b, "error", err)
				ok = false
				continue
			}
			for _, s := range rows {
				stats[serverKey{s.Backend, s.Server}] = s
			}
		}
		d.mu.Lock()
		if !d.closed {
			d.reapOnce(rctx, stats, ok)
		}
		d.mu.Unlock()
		cancel()
	}
}

// reapOnce deletes the draining servers that have no connection left,
// after cutting those of servers past their deadline. complete says the
// stats cover every draining backend. Called with d.mu held.
func (d *Driver) reapOnce(ctx context.Context, stats map[serverKey]serverStat, complete bool) {
	now := time.Now()
	for _, k := range slices.SortedFunc(maps.Keys(d.draining), func(a, b serverKey) int {
		return strings.Compare(a.backend+"/"+a.server, b.backend+"/"+b.server)
	}) {
		dr := d.draining[k]
		st, ok := stats[k]
		if !ok {
			if complete { // gone already
				delete(d.draining, k)
			}
			continue
		}
		timedOut := now.After(dr.deadline)
		if st.Sessions > 0 || st.Queued > 0 {
			if !timedOut {
				continue
			}
			if err := d.api.shutdownSessions(ctx, k.backend, k.server); err != nil {
				d.log.Warn("drain: cannot cut connections", "backend", k.backend, "server", k.server, "error", err)
				continue
			}
			d.stats.RuntimeOps++
		}
		err := d.api.deleteServer(ctx, k.backend, k.server)
		d.stats.RuntimeOps += 2
		var re *RuntimeError
		switch {
		case err == nil:
			delete(d.draining, k)
			if timedOut {
				d.stats.DrainTimeouts++
				d.log.Warn("drain: connections cut after the drain timeout", "backend", k.backend, "server", k.server, "timeout", d.opts.DrainTimeout)
			} else {
				d.stats.Drained++
			}
		case errors.As(err, &re):
			// Still has (idle) connections; it is in maintenance now, and
			// the next round deletes it. A server that comes back meanwhile
			// is readied again by Apply.
			if timedOut {
				_ = d.api.shutdownSessions(ctx, k.backend, k.server)
			}
			d.log.Debug("drain: not deleted yet", "backend", k.backend, "server", k.server, "answer", re.Answer)
		default:
			d.log.Warn("drain: delete failed", "backend", k.backend, "server", k.server, "error", err)
		}
	}
	d.stats.Draining = len(d.draining)
}
