package haproxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// The acceptance tests: constant load through the real HAProxy
// while the table changes. Every request must succeed; the reloads are
// counted by the driver and by HAProxy's master itself.

// loadRate is the constant request rate, half keep-alive, half fresh
// connections.
const loadRate = 200

// stoppable is a backend that stops like a container's process on SIGTERM:
// it closes its listener, finishes the requests it has, then exits.
type stoppable struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func newStoppable(t testing.TB, name string) *stoppable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stoppable{name: name, ln: ln, srv: &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *stoppable) rb() routing.Backend {
	return routing.Backend{Address: s.ln.Addr().String(), Name: s.name}
}

// stop is a graceful shutdown, as after docker stop's SIGTERM.
func (s *stoppable) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

func scaleTable(bs []*stoppable) routing.Table {
	var rbs []routing.Backend
	for _, b := range bs {
		rbs = append(rbs, b.rb())
	}
	return table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: rbs}}})
}

func TestScaleUnderLoadWithoutReload(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	r := newRig(t, nil)
	n := 0
	next := func() *stoppable { n++; return newStoppable(t, fmt.Sprintf("b%d", n)) }
	live := []*stoppable{next(), next()}
	r.apply(t, scaleTable(live))
	waitFor(t, 5*time.Second, "first answer", func() error {
		code, _, _, err := tryGet(r.http, "web.test", "/")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	p0, s0 := proc(t, r), r.d.Stats()
	l := startLoad(t, r.http, "web.test", "/", loadRate)
	time.Sleep(300 * time.Millisecond)

	var stops sync.WaitGroup
	const steps = 50
	for i := 0; i < steps; i++ {
		var gone *stoppable
		if i%2 == 0 {
			live = append(live, next()) // scale up
		} else {
			gone, live = live[0], live[1:] // scale down: the oldest leaves
		}
		r.apply(t, scaleTable(live))
		if gone != nil {
			// It left the table (drain); now its process stops.
			stops.Add(1)
			go func() { defer stops.Done(); gone.stop() }()
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	l.halt()
	stops.Wait()

	ok, fail, errs := l.report()
	s, p1 := r.d.Stats(), proc(t, r)
	t.Logf("%d scale steps under %d req/s: %d requests ok, %d failed; driver: %d runtime applies, %d runtime ops, %d reloads; haproxy: master reloads %d -> %d, worker %v -> %v",
		steps, loadRate, ok, fail, s.RuntimeApplies-s0.RuntimeApplies, s.RuntimeOps-s0.RuntimeOps, s.Reloads-s0.Reloads,
		p0.Reloads, p1.Reloads, p0.Workers, p1.Workers)
	if fail != 0 {
		t.Errorf("%d failed requests: %s", fail, strings.Join(errs, "\n"))
	}
	if ok < steps*loadRate/10/2 {
		t.Errorf("only %d requests succeeded; the load generator did not run", ok)
	}
	if s.Reloads != s0.Reloads || s.RuntimeApplies-s0.RuntimeApplies != steps {
		t.Errorf("driver: %d reloads, %d runtime applies; want 0 and %d", s.Reloads-s0.Reloads, s.RuntimeApplies-s0.RuntimeApplies, steps)
	}
	if p1.Reloads != p0.Reloads || len(p1.Workers) != 1 || p1.Workers[0] != p0.Workers[0] || len(p1.OldWorkers) != 0 {
		t.Errorf("haproxy reloaded: master before %+v, after %+v", p0, p1)
	}
	// Every backend that left was deleted once drained.
	waitFor(t, 5*time.Second, "drains finished", func() error {
		if st := r.d.Stats(); st.Draining != 0 || st.Drained != steps/2 {
			return fmt.Errorf("draining %d, drained %d, timeouts %d", st.Draining, st.Drained, st.DrainTimeouts)
		}
		return nil
	})
}

func TestRouteChangesUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	r := newRig(t, nil)
	a, b, c := newStoppable(t, "a"), newStoppable(t, "b"), newStoppable(t, "c")
	routeTable := func(i int) routing.Table {
		hosts := []routing.Host{{Name: "web.test", Routes: []routing.Route{
			{Path: "/", Backends: []routing.Backend{a.rb(), b.rb()}},
		}}}
		// Each step changes the structure: a new path, a new alias, a
		// new host, a new option, in turn.
		switch i % 4 {
		case 1:
			hosts[0].Routes = append(hosts[0].Routes, routing.Route{Path: fmt.Sprintf("/p%d", i), StripPath: true, Backends: []routing.Backend{c.rb()}})
		case 2:
			hosts[0].Aliases = []string{fmt.Sprintf("w%d.web.test", i)}
		case 3:
			hosts = append(hosts, routing.Host{Name: fmt.Sprintf("h%d.test", i), Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{c.rb()}}}})
		}
		if i%2 == 0 {
			hosts[0].Routes[0].BackendOptions = []string{"http-server-close"}
		}
		return table(hosts...)
	}
	r.apply(t, routeTable(0))
	waitFor(t, 5*time.Second, "first answer", func() error {
		code, _, _, err := tryGet(r.http, "web.test", "/")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	p0, s0 := proc(t, r), r.d.Stats()
	l := startLoad(t, r.http, "web.test", "/", loadRate)
	time.Sleep(300 * time.Millisecond)
	const steps = 20
	var took []time.Duration
	for i := 1; i <= steps; i++ {
		start := time.Now()
		r.apply(t, routeTable(i))
		took = append(took, time.Since(start))
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	l.halt()

	ok, fail, errs := l.report()
	s, p1 := r.d.Stats(), proc(t, r)
	t.Logf("%d route changes under %d req/s: %d requests ok, %d failed; driver reloads %d; haproxy master reloads %d -> %d; apply took %v",
		steps, loadRate, ok, fail, s.Reloads-s0.Reloads, p0.Reloads, p1.Reloads, took)
	if fail != 0 {
		t.Errorf("%d failed requests: %s", fail, strings.Join(errs, "\n"))
	}
	if ok < steps*loadRate/10/2 {
		t.Errorf("only %d requests succeeded; the load generator did not run", ok)
	}
	if s.Reloads-s0.Reloads != steps || p1.Reloads-p0.Reloads != steps {
		t.Errorf("reloads: driver %d, haproxy %d; want %d each", s.Reloads-s0.Reloads, p1.Reloads-p0.Reloads, steps)
	}
}
