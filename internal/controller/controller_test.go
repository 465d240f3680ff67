package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// fakeDriver records applied tables; failNext makes the next applies fail
// and panicNext makes one panic.
type fakeDriver struct {
	mu        sync.Mutex
	applied   []routing.Table
	failNext  int
	panicNext bool
}

func (d *fakeDriver) Name() string { return "fake" }

func (d *fakeDriver) Apply(_ context.Context, t routing.Table) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.panicNext {
		d.panicNext = false
		panic("boom")
	}
	if d.failNext > 0 {
		d.failNext--
		return errors.New("render failed")
	}
	d.applied = append(d.applied, t)
	return nil
}

func (d *fakeDriver) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.applied)
}

func web(id, host string, port uint16) docker.Container {
	return docker.Container{
		ID: id, Name: "c" + id, State: "running",
		Labels: map[string]string{"interlock.hostname": host},
		Ports:  []docker.Port{{Private: 80, Proto: "tcp", HostIP: "0.0.0.0", Public: port}},
	}
}

func snap(cs ...docker.Container) docker.Snapshot { return docker.Snapshot{Containers: cs} }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, d Driver, opts Options) (*Controller, context.CancelFunc) {
	t.Helper()
	opts.Logger = quietLogger()
	c := New(d, discovery.Options{BackendAddress: "127.0.0.1"}, opts)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { _ = c.Run(ctx) }()
	return c, cancel
}

func TestDebounceCoalescesBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{Quiet: 100 * time.Millisecond, MaxWait: time.Second})
		defer cancel()

		for i := range 5 {
			c.Update(snap(web("a", "a.example.com", uint16(30000+i))))
			time.Sleep(50 * time.Millisecond) // inside the quiet window each time
		}
		synctest.Wait()
		if n := d.count(); n != 0 {
			t.Fatalf("applied %d times during the burst, want 0", n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := d.count(); n != 1 {
			t.Fatalf("applied %d times after the burst, want 1", n)
		}
		got := d.applied[0].Hosts[0].Routes[0].Backends[0].Address
		if got != "127.0.0.1:30004" {
			t.Errorf("applied backend %s, want the newest snapshot's 127.0.0.1:30004", got)
		}
	})
}

func TestMaxWaitCapsSteadyStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{Quiet: 100 * time.Millisecond, MaxWait: 300 * time.Millisecond})
		defer cancel()
		begin := time.Now()
		for i := 0; d.count() == 0; i++ {
			if time.Since(begin) > 2*time.Second {
				t.Fatal("a steady stream of changes starved the driver")
			}
			c.Update(snap(web("a", "a.example.com", uint16(30000+i))))
			time.Sleep(50 * time.Millisecond)
			synctest.Wait()
		}
		if took := time.Since(begin); took > 350*time.Millisecond {
			t.Errorf("first apply after %v, want within MaxWait (300ms)", took)
		}
	})
}

func TestUnchangedTableAppliesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{})
		defer cancel()
		s := snap(web("a", "a.example.com", 30000), web("b", "b.example.com", 30001))
		c.Update(s)
		synctest.Wait()
		// Same state in another order, plus a container Interlock ignores.
		other := docker.Container{ID: "z", Name: "db", State: "running"}
		c.Update(snap(other, s.Containers[1], s.Containers[0]))
		synctest.Wait()
		if n := d.count(); n != 1 {
			t.Fatalf("applied %d times, want 1: an event that changes nothing must apply nothing", n)
		}
		if st := c.Status(); st.Applies != 1 || !st.Applied || len(st.Table.Hosts) != 2 {
			t.Errorf("status = %+v, want 1 apply of 2 hosts", st)
		}
	})
}

func TestFailedApplyRetriesAndKeepsLastGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{RetryMin: time.Second, RetryMax: 4 * time.Second})
		defer cancel()
		c.Update(snap(web("a", "a.example.com", 30000)))
		synctest.Wait()
		good := c.Status().Hash

		d.mu.Lock()
		d.failNext = 2
		d.mu.Unlock()
		c.Update(snap(web("a", "a.example.com", 30000), web("b", "b.example.com", 30001)))
		synctest.Wait()
		st := c.Status()
		if st.Hash != good || st.Failures != 1 || st.LastApply.Error == "" {
			t.Fatalf("after a failed apply: hash changed=%v failures=%d error=%q; want the last good table live and the failure recorded",
				st.Hash != good, st.Failures, st.LastApply.Error)
		}
		time.Sleep(time.Second) // first retry fails again
		synctest.Wait()
		if st := c.Status(); st.Failures != 2 {
			t.Fatalf("failures = %d after the first retry, want 2", st.Failures)
		}
		time.Sleep(2 * time.Second) // backoff doubled; this retry succeeds
		synctest.Wait()
		if st := c.Status(); st.Hash == good || len(st.Table.Hosts) != 2 {
			t.Fatalf("after retries: %d hosts live, want the new table with 2", len(st.Table.Hosts))
		}
	})
}

func TestDriverPanicBecomesError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{panicNext: true}
		c, cancel := start(t, d, Options{RetryMin: time.Second})
		defer cancel()
		c.Update(snap(web("a", "a.example.com", 30000)))
		synctest.Wait()
		if st := c.Status(); st.Failures != 1 || st.Applied {
			t.Fatalf("status after panic = failures %d applied %v, want 1 failure and nothing applied", st.Failures, st.Applied)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := d.count(); n != 1 {
			t.Fatalf("applied %d times after the retry, want 1", n)
		}
	})
}

func TestUpdateNeverBlocks(t *testing.T) {
	d := &fakeDriver{}
	c := New(d, discovery.Options{}, Options{Logger: quietLogger()})
	// Nobody runs the loop: Update must still return every time, and only
	// the newest snapshot is kept.
	for i := range 100 {
		c.Update(snap(web("a", "a.example.com", uint16(30000+i))))
	}
	p := <-c.mailbox
	if got := p.snap.Containers[0].Ports[0].Public; got != 30099 {
		t.Errorf("mailbox holds port %d, want the newest (30099)", got)
	}
}

type recordingObserver struct {
	mu      sync.Mutex
	applied []error
	built   int
}

func (o *recordingObserver) Applied(_ string, _ time.Duration, err error, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.applied = append(o.applied, err)
}

func (o *recordingObserver) Built(routing.Table, []routing.Problem) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.built++
}

func TestObserverSeesBuildsAndApplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{failNext: 1}
		obs := &recordingObserver{}
		c, cancel := start(t, d, Options{RetryMin: time.Second, Observer: obs})
		defer cancel()
		s := snap(web("a", "a.example.com", 30000))
		c.Update(s)
		synctest.Wait()
		time.Sleep(time.Second) // the retry succeeds
		synctest.Wait()
		c.Update(s) // unchanged: built, not applied
		synctest.Wait()
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if obs.built != 3 || len(obs.applied) != 2 || obs.applied[0] == nil || obs.applied[1] != nil {
			t.Errorf("observer saw %d builds and applies %v; want 3 builds and a failed then a good apply", obs.built, obs.applied)
		}
	})
}

// slowDriver takes a while to apply, like a proxy that validates and
// reloads.
type slowDriver struct {
	fakeDriver
	took time.Duration
}

func (d *slowDriver) Apply(ctx context.Context, t routing.Table) error {
	time.Sleep(d.took)
	return d.fakeDriver.Apply(ctx, t)
}

func TestChurnStretchesQuietButNotForALoneChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &slowDriver{took: 300 * time.Millisecond}
		c, cancel := start(t, d, Options{Quiet: 100 * time.Millisecond, MaxWait: 2 * time.Second})
		defer cancel()

		// A burst: a new container every 200 ms for 10 s, faster than the
		// 400 ms a quiet period plus an apply take.
		for i := range 50 {
			c.Update(snap(web("a", "a.example.com", uint16(30000+i))))
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		synctest.Wait()
		burst := d.count()
		// Without stretching, every 400 ms would apply: 25 applies.
		if burst > 10 {
			t.Errorf("a 10 s burst caused %d applies, want the quiet period stretched to fold it into a few", burst)
		}
		if got := d.applied[len(d.applied)-1].Hosts[0].Routes[0].Backends[0].Address; got != "127.0.0.1:30049" {
			t.Errorf("last applied backend %s, want the burst's last state", got)
		}

		// After a calm apply, a lone change waits only Quiet again.
		c.Update(snap(web("a", "a.example.com", 40000)))
		synctest.Wait()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		begin := time.Now()
		c.Update(snap(web("a", "a.example.com", 40001)))
		for n := d.count(); d.count() == n; {
			time.Sleep(10 * time.Millisecond)
		}
		if took := time.Since(begin); took > 100*time.Millisecond+d.took+20*time.Millisecond {
			t.Errorf("a lone change after calm took %v to apply, want Quiet (100ms) plus the apply (300ms)", took)
		}
	})
}

func TestStoppingBackendSkipsTheStretchedQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &slowDriver{took: 300 * time.Millisecond}
		c, cancel := start(t, d, Options{Quiet: 100 * time.Millisecond, MaxWait: 5 * time.Second})
		defer cancel()
		stay := web("s", "stay.example.com", 29999)
		// Churn: the quiet period stretches towards 5 s.
		for i := range 20 {
			c.Update(snap(stay, web("a", "a.example.com", uint16(30000+i))))
			time.Sleep(200 * time.Millisecond)
		}
		synctest.Wait()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		// Still within churn (MaxWait of the last apply): the container of
		// stay.example.com is being stopped. It must go after Quiet, not
		// after the stretched wait.
		before := d.count()
		stopping := stay
		stopping.Draining = true
		begin := time.Now()
		c.Update(snap(stopping, web("a", "a.example.com", 30019)))
		for d.count() == before {
			time.Sleep(10 * time.Millisecond)
		}
		if took := time.Since(begin); took > 100*time.Millisecond+d.took+20*time.Millisecond {
			t.Errorf("a stopping backend left the proxy after %v, want Quiet (100ms) plus the apply (300ms)", took)
		}
		last := d.applied[len(d.applied)-1]
		if _, ok := last.Lookup("stay.example.com"); ok {
			t.Errorf("the stopping container's host is still in the applied table")
		}
	})
}

// cheapDriver takes a table without a reload when its hosts are those of
// the last one applied: a backend-only change, as haproxy's Runtime API.
type cheapDriver struct {
	fakeDriver
	asked int
}

func (d *cheapDriver) Cheap(t routing.Table) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	if len(d.applied) == 0 {
		return false
	}
	last := d.applied[len(d.applied)-1]
	if len(last.Hosts) != len(t.Hosts) {
		return false
	}
	for i := range t.Hosts {
		if last.Hosts[i].Name != t.Hosts[i].Name {
			return false
		}
	}
	return true
}

// TestCheapChangeSkipsTheQuiet: an isolated change the driver takes
// without a reload applies at once; a structural one waits for the quiet
// period, and so does a cheap one under churn, where folding still saves
// work.
func TestCheapChangeSkipsTheQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &cheapDriver{}
		c, cancel := start(t, d, Options{Quiet: 100 * time.Millisecond, MaxWait: time.Second})
		defer cancel()
		a1, a2, a3 := web("a1", "a.example.com", 30001), web("a2", "a.example.com", 30002), web("a3", "a.example.com", 30004)
		b := web("b", "b.example.com", 30003)

		c.Update(snap(a1))
		synctest.Wait()
		if n := d.count(); n != 0 {
			t.Fatalf("the first table applied at once (%d); nothing is live to compare with, so it should wait", n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := d.count(); n != 1 {
			t.Fatalf("applied %d times after the quiet period, want 1", n)
		}

		time.Sleep(200 * time.Millisecond) // two quiet periods: the next change is a lone one
		c.Update(snap(a1, a2))
		synctest.Wait()
		if n := d.count(); n != 2 {
			t.Fatalf("a lone backend-only change: applied %d times at once, want 2", n)
		}

		// Right after that apply: a burst, so a cheap change is folded.
		c.Update(snap(a1, a2, a3))
		synctest.Wait()
		if n := d.count(); n != 2 {
			t.Fatalf("a cheap change under churn applied at once (%d applies)", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := d.count(); n != 3 {
			t.Fatalf("applied %d times after the stretched quiet, want 3", n)
		}

		time.Sleep(2 * time.Second)
		c.Update(snap(a1, a2, a3, b))
		synctest.Wait()
		if n := d.count(); n != 3 {
			t.Fatalf("a structural change applied at once (%d applies)", n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := d.count(); n != 4 {
			t.Fatalf("applied %d times after the quiet period, want 4", n)
		}
		if d.asked == 0 {
			t.Error("Cheap was never asked")
		}
	})
}
