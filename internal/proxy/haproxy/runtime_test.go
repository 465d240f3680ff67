package haproxy

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// webTable is one host, one route, with the given backends and balance.
func webTable(bal routing.Balance, hc *routing.HealthCheck, bs ...*backend) routing.Table {
	var rbs []routing.Backend
	for _, b := range bs {
		rbs = append(rbs, b.rb())
	}
	return table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Balance: bal, HealthCheck: hc, Backends: rbs}}})
}

// reached polls until a request through HAProxy answers from b.
func reached(t *testing.T, r *rig, b *backend) {
	t.Helper()
	waitFor(t, 5*time.Second, "request reaches "+b.name, func() error {
		_, body, _, err := tryGet(r.http, "web.test", "/")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(body, b.name+" ") {
			return fmt.Errorf("answered %q", body)
		}
		return nil
	})
}

func proc(t *testing.T, r *rig) Proc {
	t.Helper()
	p, err := r.d.Proc(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBackendChangesUseTheRuntimeAPI(t *testing.T) {
	for _, bal := range routing.Balances {
		t.Run(string(bal), func(t *testing.T) {
			r := newRig(t, nil)
			a, b := newBackend(t, "a"), newBackend(t, "b")
			r.apply(t, webTable(bal, nil, a))
			reached(t, r, a)
			p0 := proc(t, r)

			// Add b, drop a: the only answer left must be b's.
			r.apply(t, webTable(bal, nil, a, b))
			r.apply(t, webTable(bal, nil, b))
			for i := 0; i < 20; i++ {
				if _, body, _ := get(t, r.http, "web.test", "/"); !strings.HasPrefix(body, "b ") {
					t.Fatalf("request %d after a left answered %q", i, body)
				}
			}
			// a drains and is deleted: it has no connection left.
			waitFor(t, 5*time.Second, "a deleted", func() error {
				if s := r.d.Stats(); s.Draining != 0 || s.Drained != 1 {
					return fmt.Errorf("draining %d drained %d", s.Draining, s.Drained)
				}
				return nil
			})
			// a comes back: a new server, still no reload.
			r.apply(t, webTable(bal, nil, a, b))
			seen := map[string]bool{}
			for i := 0; i < 40 && len(seen) < 2; i++ {
				_, body, _, err := tryGet(r.http, "web.test", "/")
				if err != nil {
					t.Fatal(err)
				}
				name, _, _ := strings.Cut(body, " ")
				seen[name] = true
				if bal == routing.Source {
					break // one client, one backend
				}
			}
			if bal != routing.Source && !(seen["a"] && seen["b"]) {
				t.Errorf("answers from %v, want a and b", seen)
			}

			s := r.d.Stats()
			p1 := proc(t, r)
			if s.Reloads != 0 || s.RuntimeApplies != 3 || p1.Reloads != p0.Reloads || p1.Workers[0] != p0.Workers[0] {
				t.Errorf("stats %+v, master before %+v after %+v: want 3 runtime applies and no reload", s, p0, p1)
			}
			// The file lists the current servers, for a later reload.
			conf, err := os.ReadFile(r.d.opts.ConfigPath)
			if err != nil {
				t.Fatal(err)
			}
			for _, bk := range []*backend{a, b} {
				if !strings.Contains(string(conf), " "+bk.addr()) {
					t.Errorf("live file does not list %s", bk.addr())
				}
			}
		})
	}
}

func TestDrainWaitsForRequestsInFlight(t *testing.T) {
	r := newRig(t, nil)
	slow, fast := newBackend(t, "slow"), newBackend(t, "fast")
	r.apply(t, webTable(routing.RoundRobin, nil, slow))
	reached(t, r, slow)
	slow.delay.Store(int64(700 * time.Millisecond))

	done := make(chan string, 1)
	go func() {
		_, body, _, err := tryGet(r.http, "web.test", "/slow")
		if err != nil {
			body = err.Error()
		}
		done <- body
	}()
	waitFor(t, 2*time.Second, "slow request in flight", func() error {
		if slow.hits.Load() < 2 {
			return fmt.Errorf("hits %d", slow.hits.Load())
		}
		return nil
	})
	// slow leaves the table while its request runs.
	r.apply(t, webTable(routing.RoundRobin, nil, fast))
	if _, body, _ := get(t, r.http, "web.test", "/"); !strings.HasPrefix(body, "fast ") {
		t.Fatalf("new request went to %q, want fast", body)
	}
	if s := r.d.Stats(); s.Draining != 1 {
		t.Fatalf("draining = %d while a request runs, want 1", s.Draining)
	}
	if body := <-done; !strings.HasPrefix(body, "slow /slow") {
		t.Fatalf("request in flight got %q, want slow's answer", body)
	}
	waitFor(t, 5*time.Second, "slow deleted", func() error {
		if s := r.d.Stats(); s.Draining != 0 || s.Drained != 1 || s.DrainTimeouts != 0 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
}

func TestDrainTimeoutCutsConnections(t *testing.T) {
	r := newRig(t, func(o *Options) { o.DrainTimeout = 300 * time.Millisecond })
	stuck, fast := newBackend(t, "stuck"), newBackend(t, "fast")
	r.apply(t, webTable(routing.RoundRobin, nil, stuck))
	reached(t, r, stuck)
	stuck.delay.Store(int64(1500 * time.Millisecond))
	go func() { _, _, _, _ = tryGet(r.http, "web.test", "/stuck") }()
	waitFor(t, 2*time.Second, "stuck request in flight", func() error {
		if stuck.hits.Load() < 2 {
			return fmt.Errorf("hits %d", stuck.hits.Load())
		}
		return nil
	})
	r.apply(t, webTable(routing.RoundRobin, nil, fast))
	waitFor(t, 5*time.Second, "stuck cut and deleted", func() error {
		if s := r.d.Stats(); s.Draining != 0 || s.DrainTimeouts != 1 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
}

func TestHealthCheckOnRuntimeServers(t *testing.T) {
	r := newRig(t, nil)
	a, b := newBackend(t, "a"), newBackend(t, "b")
	hc := &routing.HealthCheck{Path: "/healthz", Interval: 200 * time.Millisecond}
	r.apply(t, webTable(routing.RoundRobin, hc, a))
	reached(t, r, a)
	r.apply(t, webTable(routing.RoundRobin, hc, a, b))
	// Both are checked: each gets /healthz requests.
	waitFor(t, 5*time.Second, "b health-checked", func() error {
		if b.hits.Load() < 2 {
			return fmt.Errorf("b saw %d requests", b.hits.Load())
		}
		return nil
	})
	stats, err := r.d.sup.admin.stats(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if strings.HasPrefix(s.Backend, "be_web.test") && !strings.HasPrefix(s.Status, "UP") {
			t.Errorf("server %s status %q, want UP", s.Server, s.Status)
		}
	}
	// A failing check takes a server out: point the check at a path that
	// answers 503 (a route change, so a reload).
	bad := &routing.HealthCheck{Path: "/healthz-fail", Interval: 200 * time.Millisecond}
	r.apply(t, webTable(routing.RoundRobin, bad, a, b))
	waitFor(t, 5*time.Second, "servers down", func() error {
		code, body, _, err := tryGet(r.http, "web.test", "/")
		if err != nil {
			return err
		}
		if code != 503 {
			return fmt.Errorf("answered %d %q, want 503 once checks fail", code, body)
		}
		return nil
	})
	if s := r.d.Stats(); s.Reloads != 1 || s.RuntimeApplies != 1 {
		t.Errorf("stats %+v: want one runtime apply, one reload", s)
	}
}

func TestServerStateSurvivesReload(t *testing.T) {
	r := newRig(t, nil)
	a, b := newBackend(t, "a"), newBackend(t, "b")
	r.apply(t, webTable(routing.RoundRobin, nil, a, b))
	reached(t, r, a)
	// An operator puts a in maintenance on the stats page (here: the CLI).
	be := r.d.live.backends
	var name string
	for n := range be {
		name = n
	}
	aName := serverName(mustAddr(t, a.addr()))
	if err := r.d.sup.admin.exec(context.Background(), "disable server", name+"/"+aName); err != nil {
		t.Fatal(err)
	}
	// A route change reloads; the state file keeps a in maintenance.
	tb := webTable(routing.RoundRobin, nil, a, b)
	tb.Hosts[0].Aliases = []string{"www.web.test"}
	r.apply(t, tb)
	if s := r.d.Stats(); s.Reloads != 1 {
		t.Fatalf("reloads = %d, want 1", s.Reloads)
	}
	for i := 0; i < 10; i++ {
		if _, body, _ := get(t, r.http, "web.test", "/"); !strings.HasPrefix(body, "b ") {
			t.Fatalf("answer %q after reload: a should still be in maintenance", body)
		}
	}
}

func mustAddr(t *testing.T, s string) Address {
	t.Helper()
	a, err := parseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
