// Package controller runs Interlock's loop: the newest Docker snapshot is
// turned into a routing table, and a changed table is applied to the
// driver. It keeps the status the API reports.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// Driver puts a routing table live. Apply must leave the previous table
// serving when it fails.
type Driver interface {
	Name() string
	Apply(ctx context.Context, t routing.Table) error
}

// CheapApplier is a Driver that can tell, before the quiet period, that a
// table would go live without a reload (haproxy: only backends changed,
// which its Runtime API takes). An isolated change of that kind is
// applied at once: the quiet period is there to fold reloads, and there
// is none to fold. A change that comes within two quiet periods of the
// last apply is part of a burst and waits as any other. Cheap is called
// from the loop's goroutine, like Apply.
type CheapApplier interface {
	Cheap(t routing.Table) bool
}

// Refresher is a Driver whose configuration names files that change
// without the table changing: certificates renewed over ACME, or rotated
// in the certificate directory. Refresh puts the live table's
// configuration live again, so the proxy reads them anew; it is called
// from the loop's goroutine, like Apply, and must leave the previous
// configuration serving when it fails.
type Refresher interface {
	Refresh(ctx context.Context) error
}

// cheapCheckBudget bounds what the early table build may cost: past it
// (tens of thousands of containers) every change waits for the quiet
// period again, rather than pay for a build per event.
const cheapCheckBudget = 20 * time.Millisecond

// Options tune the loop. Zero values take the documented defaults.
type Options struct {
	// Quiet is how long the loop waits for more changes after one arrives
	// before it applies; MaxWait caps that wait from the first change, so
	// a steady stream of events cannot starve the proxy. Quiet 0 applies
	// at once (right for the built-in proxy, whose apply is a pointer
	// swap); MaxWait defaults to 1s.
	//
	// Under churn the quiet period stretches: a batch that begins within
	// MaxWait of the previous apply waits twice as long as that one did
	// (up to MaxWait); a batch after a calm MaxWait starts over at Quiet.
	// A lone change still applies after Quiet, and a burst of container
	// starts is folded into a few applies. A change that takes a live
	// backend away (a container stopping) never waits longer than Quiet:
	// it must leave the proxy before it dies.
	Quiet, MaxWait time.Duration
	// RetryMin and RetryMax bound the backoff after a failed apply.
	// Defaults 500ms and 30s.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
	// Observer, when set, is told about every apply attempt (for metrics).
	Observer Observer
	// SavedTable, when set, is the file of the last good table: written
	// after every apply that changed the table, and put live at start
	// until Docker answers (saved.go).
	SavedTable string
}

// Observer receives what the loop does. Its methods are called from the
// loop's goroutine and must not block.
type Observer interface {
	// Applied reports one attempt to put a table live: how long the
	// driver took and its error. converged is the time from the oldest
	// change the table covers to the end of a successful apply.
	Applied(driver string, took time.Duration, err error, converged time.Duration)
	// Built reports every table built, applied or not.
	Built(t routing.Table, problems []routing.Problem)
}

// Controller owns the loop. Create it with New, feed it with Update and
// run it with Run.
type Controller struct {
	driver    Driver
	discovery discovery.Options
	opts      Options
	log       *slog.Logger

	// mailbox holds the newest snapshot not yet taken by the loop: a
	// one-slot channel where a newer snapshot replaces an older one.
	mailbox chan pending
	// refresh holds a pending Refresh request (one slot: requests fold).
	refresh chan struct{}
	// primed is closed once Run has put the saved table live, or found
	// none to restore (Primed).
	primed     chan struct{}
	primedOnce sync.Once
	// saveKick wakes saveLoop; saved is the hash on disk (saved.go).
	saveKick chan struct{}
	saved    string

	mu     sync.Mutex
	status Status
	// liveIDs are the containers and tasks behind the live table's
	// backends.
	liveIDs map[string]bool
	// snap is the snapshot the status's problems were built from (and the
	// live table, when it applied), for Snapshot.
	snap docker.Snapshot
}

type pending struct {
	snap docker.Snapshot
	at   time.Time
	// built is snap's table, when the loop built it early (CheapApplier),
	// or the table itself when fed (UpdateTable).
	built *built
	// fed: the table came whole through UpdateTable; snap is empty.
	fed bool
}

type built struct {
	table    routing.Table
	problems []routing.Problem
}

// New returns a controller that applies tables to driver.
func New(driver Driver, disc discovery.Options, opts Options) *Controller {
	if opts.MaxWait <= 0 {
		opts.MaxWait = time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 500 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Controller{
		driver:    driver,
		discovery: disc,
		opts:      opts,
		log:       log,
		mailbox:   make(chan pending, 1),
		refresh:   make(chan struct{}, 1),
		primed:    make(chan struct{}),
		saveKick:  make(chan struct{}, 1),
		status:    Status{Driver: driver.Name()},
	}
}

// Update hands the loop a new snapshot. It never blocks: a snapshot the
// loop has not taken yet is replaced, since only the newest matters.
func (c *Controller) Update(snap docker.Snapshot) {
	c.put(pending{snap: snap, at: time.Now()})
}

// UpdateTable hands the loop a table that was built elsewhere: a socket-less
// edge's table from a controller's feed (internal/feed), normalized and
// checked against its hash. It is applied like a table built from a
// snapshot (same hash as the live table: nothing to do), with no problems
// and no snapshot of its own, at once (Quiet still applies). Like Update,
// it never blocks, and the newest wins.
func (c *Controller) UpdateTable(t routing.Table) {
	c.put(pending{at: time.Now(), built: &built{table: t}, fed: true})
}

// put stores p in the one-slot mailbox, replacing what the loop has not
// taken yet.
func (c *Controller) put(p pending) {
	for {
		select {
		case c.mailbox <- p:
			return
		default:
		}
		select {
		case old := <-c.mailbox:
			// Keep the first arrival time, so convergence is measured from
			// the oldest change this apply covers.
			p.at = old.at
		default:
		}
	}
}

// Refresh asks the loop to put the live configuration live again, for a
// Refresher driver whose files changed (a certificate renewed or rotated);
// other drivers ignore it. It never blocks, and requests that come while
// one waits fold into it. Before the first apply there is nothing to
// refresh: that apply reads the files anyway.
func (c *Controller) Refresh() {
	select {
	case c.refresh <- struct{}{}:
	default:
	}
}

// Primed is closed once Run has put the saved table (Options.SavedTable)
// live, or found none to restore: a proxy that starts serving before then
// would answer its first requests from an empty table.
func (c *Controller) Primed() <-chan struct{} { return c.primed }

// Run applies snapshots until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	var (
		next     *pending
		quiet    <-chan time.Time
		deadline time.Time
		retry    = c.opts.RetryMin
		// churn counts batches in a row that began soon after an apply.
		churn     int
		lastApply time.Time
		// buildCost is how long the last early build took.
		buildCost time.Duration
		// calm is whether the batch began at least two quiet periods
		// after the last apply: not in the middle of a burst.
		calm bool
	)
	if c.opts.SavedTable != "" {
		// Run returns only once the saver has: no write after the caller
		// is done with the state directory.
		saved := make(chan struct{})
		go func() { defer close(saved); c.saveLoop(ctx) }()
		defer func() { <-saved }()
		c.restoreSaved(ctx)
	}
	c.primedOnce.Do(func() { close(c.primed) })
	cheap, _ := c.driver.(CheapApplier)
	refresher, _ := c.driver.(Refresher)
	var (
		refreshRetry      <-chan time.Time
		refreshRetryAfter = c.opts.RetryMin
	)
	for {
		var fire <-chan time.Time
		if next != nil {
			fire = quiet
		}
		select {
		case <-ctx.Done():
			return nil
		case <-refreshRetry:
			c.Refresh()
			refreshRetry = nil
			continue
		case <-c.refresh:
			if refresher == nil || !c.Status().Applied {
				continue
			}
			if err := c.safeRefresh(ctx, refresher); err != nil {
				c.log.Error("refresh failed; the previous configuration keeps serving", "driver", c.driver.Name(), "error", err, "retry_in", refreshRetryAfter)
				refreshRetry = time.After(refreshRetryAfter)
				refreshRetryAfter = min(refreshRetryAfter*2, c.opts.RetryMax)
			} else {
				refreshRetry, refreshRetryAfter = nil, c.opts.RetryMin
				c.log.Debug("configuration refreshed", "driver", c.driver.Name())
			}
			continue
		case p := <-c.mailbox:
			if next == nil {
				calm = lastApply.IsZero() || time.Since(lastApply) >= 2*c.opts.Quiet
				deadline = time.Now().Add(c.opts.MaxWait)
				if !lastApply.IsZero() && time.Since(lastApply) < c.opts.MaxWait {
					churn++
				} else {
					churn = 0
				}
			} else {
				p.at = next.at
			}
			next = &p
			wait := c.quietFor(churn)
			if p.fed {
				// A fed table was debounced where it was built.
				wait = c.opts.Quiet
			} else if c.takesLiveBackend(p.snap) {
				wait = c.opts.Quiet
				deadline = minTime(deadline, time.Now().Add(c.opts.Quiet))
			}
			// Only a lone change: in a burst, folding still saves a
			// validation of the file per change.
			if cheap != nil && !p.fed && wait > 0 && calm && buildCost < cheapCheckBudget {
				start := time.Now()
				table, problems := discovery.Build(p.snap, c.discovery)
				buildCost = time.Since(start)
				next.built = &built{table: table, problems: problems}
				if cheap.Cheap(table) {
					wait = 0
				}
			}
			wait = min(wait, time.Until(deadline))
			quiet = time.After(max(wait, 0))
			continue
		case <-fire:
		}
		applied, err := c.reconcile(ctx, *next)
		if err != nil {
			// Keep the snapshot and try again after a backoff, unless a
			// newer one arrives first (it resets the timer above).
			c.log.Error("apply failed; the previous configuration keeps serving", "driver", c.driver.Name(), "error", err, "retry_in", retry)
			quiet = time.After(retry)
			deadline = time.Now().Add(retry)
			retry = min(retry*2, c.opts.RetryMax)
			continue
		}
		retry = c.opts.RetryMin
		next = nil
		if applied {
			lastApply = time.Now()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// takesLiveBackend reports whether snap no longer offers a container or
// task that backs the live table: it is stopping, unhealthy or gone.
func (c *Controller) takesLiveBackend(snap docker.Snapshot) bool {
	c.mu.Lock()
	live := c.liveIDs
	c.mu.Unlock()
	if len(live) == 0 {
		return false
	}
	routable := 0
	for _, ct := range snap.Containers {
		if live[ct.ID] {
			if !ct.Routable() {
				return true
			}
			routable++
		}
	}
	for _, svc := range snap.Services {
		for _, t := range svc.Tasks {
			if live[t.ID] {
				if !t.Routable() {
					return true
				}
				routable++
			}
		}
	}
	return routable < len(live)
}

// quietFor is the quiet period after churn busy applies in a row: Quiet
// doubled each time, at most MaxWait.
func (c *Controller) quietFor(churn int) time.Duration {
	q := c.opts.Quiet
	for range min(churn, 16) {
		if q >= c.opts.MaxWait {
			break
		}
		q *= 2
	}
	return min(q, c.opts.MaxWait)
}

// reconcile builds the table for p and applies it when it changed,
// reporting whether it called the driver.
func (c *Controller) reconcile(ctx context.Context, p pending) (bool, error) {
	var table routing.Table
	var problems []routing.Problem
	if p.built != nil {
		table, problems = p.built.table, p.built.problems
	} else {
		table, problems = discovery.Build(p.snap, c.discovery)
	}
	hash := table.Hash()

	c.mu.Lock()
	prev := c.status
	c.status.Problems = problems
	c.status.Restored = false // the table now comes from Docker, applied or equal
	c.snap = p.snap
	c.mu.Unlock()
	c.logProblems(prev.Problems, problems)
	if c.opts.Observer != nil {
		c.opts.Observer.Built(table, problems)
	}

	if prev.Applied && hash == prev.Hash {
		return false, nil
	}
	start := time.Now()
	err := c.safeApply(ctx, table)
	took := time.Since(start)

	if c.opts.Observer != nil {
		var converged time.Duration
		if err == nil {
			converged = time.Since(p.at)
		}
		c.opts.Observer.Applied(c.driver.Name(), took, err, converged)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.LastApply = Apply{At: start, Duration: took, Hash: hash}
	if err != nil {
		c.status.LastApply.Error = err.Error()
		c.status.Failures++
		return true, err
	}
	c.status.Applies++
	c.status.Applied = true
	c.liveIDs = backendIDs(table)
	c.status.Hash = hash
	c.status.Table = table
	c.status.LastConvergence = time.Since(p.at)
	if c.opts.SavedTable != "" {
		c.kickSave()
	}
	logChanges(c.log, prev.Table, table)
	c.log.Debug("table applied", "driver", c.driver.Name(), "hosts", len(table.Hosts),
		"backends", table.BackendCount(), "took", took, "since_change", c.status.LastConvergence)
	return true, nil
}

// safeApply turns a driver panic into an error, so one bad apply cannot
// take the process down.
func (c *Controller) safeApply(ctx context.Context, t routing.Table) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("driver %s panicked: %v\n%s", c.driver.Name(), r, debug.Stack())
		}
	}()
	return c.driver.Apply(ctx, t)
}

// safeRefresh is safeApply for Refresh.
func (c *Controller) safeRefresh(ctx context.Context, r Refresher) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("driver %s panicked: %v\n%s", c.driver.Name(), p, debug.Stack())
		}
	}()
	return r.Refresh(ctx)
}

func (c *Controller) logProblems(before, after []routing.Problem) {
	seen := make(map[routing.Problem]bool, len(before))
	for _, p := range before {
		seen[p] = true
	}
	for _, p := range after {
		if !seen[p] {
			c.log.Warn("left out of routing", "kind", p.Kind, "name", p.Name, "id", shortID(p.ID),
				"label", p.Label, "reason", p.Reason, "problem", p.Message)
		}
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// backendIDs collects the container and task IDs behind t's backends.
func backendIDs(t routing.Table) map[string]bool {
	ids := map[string]bool{}
	for _, h := range t.Hosts {
		for _, r := range h.Routes {
			for _, b := range r.Backends {
				switch {
				case b.Task != "":
					ids[b.Task] = true
				case b.Container != "":
					ids[b.Container] = true
				}
			}
		}
	}
	return ids
}
