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
// needs a reload (an address that does not parse, a host name, which only
// a reload resolves, or a new server of a sticky backend, whose cookie
// value only the file can give); a failed command also returns one, and the
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
		through := passthroughRoute(h)
		for i, r := range h.Routes {
			prefix := "be"
			switch {
			case r.Protocol == routing.TCP:
				prefix = "tcp"
			case through >= 0:
				// A passthrough host renders only its passthrough route,
				// as the "pt_" backend (view.go).
				if i != through {
					continue
				}
				prefix = "pt"
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
				if _, back := d.draining[serverKey{name, sn}]; lb.sticky && !back {
					// "add server" refuses the cookie keyword in HAProxy 2.6
					// ("'cookie' option is not accepted for dynamic server"),
					// and a server without its value could never be pinned
					// to. One coming back from maintenance has its value.
					return fmt.Errorf("server %s/%s needs its sticky cookie value, which HAProxy 2.6 cannot set on a server added over the Runtime API", name, sn)
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
	if len(adds) == 0 && len(removes) == 0 {
		return nil
	}
	ins, err := d.run.instances(ctx)
	if err != nil {
		return err
	}
	for _, in := range ins {
		if err := d.admit(ctx, in); err != nil {
			return err
		}
	}
	// Every instance gets every command; one that fails leaves the rest to
	// the reload that follows, which rebuilds all of them from the file.
	for _, a := range adds {
		k := serverKey{a.backend, a.s.Name}
		_, back := d.draining[k]
		for _, in := range ins {
			if back {
				if err := in.api.readyServer(ctx, a.backend, a.s.Name); err != nil {
					return fmt.Errorf("%s: %w", in.name, err)
				}
				d.stats.RuntimeOps++
				continue
			}
			n, err := in.api.addServer(ctx, a.backend, a.s, a.opts, a.check)
			d.stats.RuntimeOps += int64(n)
			if err != nil {
				return fmt.Errorf("%s: %w", in.name, err)
			}
		}
		delete(d.draining, k)
		d.live.backends[a.backend].servers[a.s.Name] = a.s
	}
	deadline := time.Now().Add(d.opts.DrainTimeout)
	for _, k := range removes {
		// A sticky backend's server goes to maintenance instead: in drain
		// state HAProxy still sends it the clients its cookie pins, and the
		// built-in proxy sends a backend that left the table nothing.
		retire := runtimeAPI.drainServer
		if d.live.backends[k.backend].sticky {
			retire = runtimeAPI.maintServer
		}
		for _, in := range ins {
			if err := retire(in.api, ctx, k.backend, k.server); err != nil {
				return fmt.Errorf("%s: %w", in.name, err)
			}
			d.stats.RuntimeOps++
		}
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
	d.log.Debug("servers changed over the runtime api", "added", len(adds), "draining", len(removes), "instances", len(ins))
	return nil
}

// admit makes sure an instance that started since the last reload (a new
// proxy container) serves what the others do before it gets Runtime API
// commands: it read the file when it started, which may have been a moment
// behind the servers the others got over the Runtime API. Its servers are
// compared with the live ones; any difference is an error, and the caller
// reloads.
func (d *Driver) admit(ctx context.Context, in instance) error {
	if d.known[in.id] {
		return nil
	}
	has, err := in.api.servers(ctx)
	if err != nil {
		return fmt.Errorf("%s started since the last reload: %w", in.name, err)
	}
	for name, lb := range d.live.backends {
		if !maps.Equal(has[name], setOf(maps.Keys(lb.servers))) {
			return fmt.Errorf("%s started on a file behind the live servers of %s", in.name, name)
		}
	}
	d.known[in.id] = true
	return nil
}

func setOf(seq func(func(string) bool)) map[string]bool {
	m := map[string]bool{}
	for k := range seq {
		m[k] = true
	}
	return m
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
		ins, err := d.run.instances(rctx)
		if err != nil {
			d.log.Debug("drain: cannot list haproxy instances", "error", err)
			cancel()
			continue
		}
		stats := make([]map[serverKey]serverStat, len(ins))
		ok := true
		for i, in := range ins {
			stats[i] = map[serverKey]serverStat{}
			for _, b := range backends {
				rows, err := in.api.stats(rctx, b)
				if err != nil {
					// The backend may be gone after a reload; the next
					// round sees the draining list cleared.
					d.log.Debug("drain: cannot read server stats", "instance", in.name, "backend", b, "error", err)
					ok = false
					continue
				}
				for _, s := range rows {
					stats[i][serverKey{s.Backend, s.Server}] = s
				}
			}
		}
		d.mu.Lock()
		if !d.closed {
			d.reapOnce(rctx, ins, stats, ok)
		}
		d.mu.Unlock()
		cancel()
	}
}

// reapOnce deletes the draining servers that have no connection left in
// any instance, after cutting those of servers past their deadline. stats
// are each instance's rows; complete says they cover every draining
// backend of every instance. An instance that does not list a server (a
// container started since, from the file) has nothing to drain. Called
// with d.mu held.
func (d *Driver) reapOnce(ctx context.Context, ins []instance, stats []map[serverKey]serverStat, complete bool) {
	now := time.Now()
	for _, k := range slices.SortedFunc(maps.Keys(d.draining), func(a, b serverKey) int {
		return strings.Compare(a.backend+"/"+a.server, b.backend+"/"+b.server)
	}) {
		dr := d.draining[k]
		var holding []int // the instances that still list the server
		busy := false
		for i := range ins {
			if st, ok := stats[i][k]; ok {
				holding = append(holding, i)
				busy = busy || st.Sessions > 0 || st.Queued > 0
			}
		}
		if len(holding) == 0 {
			if complete { // gone already
				delete(d.draining, k)
			}
			continue
		}
		timedOut := now.After(dr.deadline)
		if busy && !timedOut {
			continue
		}
		deleted := true
		for _, i := range holding {
			if !d.reapServer(ctx, ins[i], k, stats[i][k], timedOut) {
				deleted = false
			}
		}
		if !deleted {
			continue
		}
		delete(d.draining, k)
		if timedOut && busy {
			d.stats.DrainTimeouts++
			d.log.Warn("drain: connections cut after the drain timeout", "backend", k.backend, "server", k.server, "timeout", d.opts.DrainTimeout)
		} else {
			d.stats.Drained++
		}
	}
	d.stats.Draining = len(d.draining)
}

// reapServer deletes a drained server from one instance, cutting its
// connections first when timedOut, and reports whether it is gone.
func (d *Driver) reapServer(ctx context.Context, in instance, k serverKey, st serverStat, timedOut bool) bool {
	if st.Sessions > 0 || st.Queued > 0 {
		if err := in.api.shutdownSessions(ctx, k.backend, k.server); err != nil {
			d.log.Warn("drain: cannot cut connections", "instance", in.name, "backend", k.backend, "server", k.server, "error", err)
			return false
		}
		d.stats.RuntimeOps++
	}
	err := in.api.deleteServer(ctx, k.backend, k.server)
	d.stats.RuntimeOps += 2
	var re *RuntimeError
	switch {
	case err == nil:
		return true
	case errors.As(err, &re):
		// Still has (idle) connections; it is in maintenance now, and the
		// next round deletes it. A server that comes back meanwhile is
		// readied again by Apply.
		if timedOut {
			_ = in.api.shutdownSessions(ctx, k.backend, k.server)
		}
		d.log.Debug("drain: not deleted yet", "instance", in.name, "backend", k.backend, "server", k.server, "answer", re.Answer)
	default:
		d.log.Warn("drain: delete failed", "instance", in.name, "backend", k.backend, "server", k.server, "error", err)
	}
	return false
}
