package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// SourceOptions tune a Source. Zero values take the documented defaults.
type SourceOptions struct {
	// Resync is how often everything is listed again even when events
	// flow, because the event stream is never trusted to be complete.
	// Default 30s.
	Resync time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay, which doubles
	// after each failed attempt. Defaults 100ms and 5s.
	BackoffMin, BackoffMax time.Duration
	// TaskPoll is how often a Swarm manager's tasks are listed when
	// nothing suggests they are changing (tasks have no events). Default 1s;
	// after a service event or a task container's event they are polled
	// every 100ms for a while.
	TaskPoll time.Duration
	// Failover are more endpoints of the same cluster (other Swarm
	// managers), tried in order when the one in use fails; every switch
	// starts with a full list, like any reconnect.
	Failover []*client.Client
	// ContainersOnly watches containers alone, even on a Swarm manager:
	// no services, tasks or nodes are listed (Snapshot.Swarm stays
	// false). For an engine watched only for its proxy containers.
	ContainersOnly bool
	Logger         *slog.Logger
}

// Status describes the connection to the engine.
type Status struct {
	Connected bool `json:"connected"`
	// Since is when the connection last changed state.
	Since      time.Time `json:"since"`
	LastError  string    `json:"last_error,omitempty"`
	APIVersion string    `json:"api_version,omitempty"`
	// Host is the endpoint in use (or tried next, while disconnected).
	Host string `json:"host"`
	// Connects counts successful (re)connections, Disconnects lost ones.
	Connects    int64 `json:"connects"`
	Disconnects int64 `json:"disconnects"`
	Resyncs     int64 `json:"resyncs"`
	Events      int64 `json:"events"`
	// EventsByKind counts events by "type/action", e.g. "container/start"
	// (health_status events count as "container/health_status").
	EventsByKind map[string]int64 `json:"events_by_kind"`
}

// Source watches one engine and publishes a Snapshot after every change.
type Source struct {
	// clients are the endpoints: the one NewSource was given, then
	// SourceOptions.Failover. cur, guarded by mu, is the one in use.
	clients []*client.Client
	opts    SourceOptions
	log     *slog.Logger

	mu     sync.Mutex
	cur    int
	status Status
}

// client is the endpoint in use.
func (s *Source) client() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[s.cur]
}

// failOver moves to the next endpoint and reports whether it went back
// to the first (a whole round failed).
func (s *Source) failOver() (wrapped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = (s.cur + 1) % len(s.clients)
	s.status.Host = s.clients[s.cur].DaemonHost()
	return s.cur == 0
}

// NewSource watches the engine behind cli.
func NewSource(cli *client.Client, opts SourceOptions) *Source {
	if opts.Resync <= 0 {
		opts.Resync = 30 * time.Second
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 100 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Second
	}
	if opts.TaskPoll <= 0 {
		opts.TaskPoll = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	clients := append([]*client.Client{cli}, opts.Failover...)
	return &Source{clients: clients, opts: opts, log: log, status: Status{Since: time.Now(), Host: cli.DaemonHost()}}
}

// Status returns the current connection state.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.EventsByKind = maps.Clone(s.status.EventsByKind)
	return st
}

// Snapshot lists the engine once.
func (s *Source) Snapshot(ctx context.Context) (Snapshot, error) {
	cli := s.client()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return Snapshot{}, fmt.Errorf("connect to docker at %s: %w", cli.DaemonHost(), explainTLS(err))
	}
	st := newState()
	manager := false
	if !s.opts.ContainersOnly {
		var err error
		if manager, err = isManager(ctx, cli); err != nil {
			return Snapshot{}, err
		}
	}
	if manager {
		st.swarm = newSwarmState()
	}
	if err := st.listAll(ctx, cli); err != nil {
		return Snapshot{}, err
	}
	return st.snapshot(), nil
}

// Run watches the engine until ctx ends, calling publish with a complete
// Snapshot after the first list, after every relevant event and after
// every resync. publish must not block. A lost connection is retried
// forever with capped exponential backoff; every reconnect starts with a
// full list, so nothing that happened while disconnected is lost.
func (s *Source) Run(ctx context.Context, publish func(Snapshot)) error {
	delay := s.opts.BackoffMin
	failures := 0
	var lostAt time.Time
	st := newState()
	for {
		err := s.session(ctx, st, publish, func() {
			if failures > 0 {
				s.log.Info("docker connection restored", "host", s.client().DaemonHost(),
					"down_for", time.Since(lostAt).Round(time.Millisecond), "attempts", failures)
			}
			failures = 0
			delay = s.opts.BackoffMin
		})
		if ctx.Err() != nil {
			return nil
		}
		if failures == 0 {
			lostAt = time.Now()
			s.log.Warn("docker connection lost; retrying with backoff", "host", s.client().DaemonHost(), "error", err)
		} else {
			s.log.Debug("docker reconnect failed", "host", s.client().DaemonHost(), "attempt", failures, "error", err)
		}
		failures++
		s.setDisconnected(err)
		// Full jitter keeps several Interlocks from reconnecting in step.
		wait := delay/2 + rand.N(delay/2+1)
		if len(s.clients) > 1 {
			// Several managers: the next one at once, and the backoff
			// only once every one of them failed in a row.
			if wrapped := s.failOver(); !wrapped {
				wait = 0
			}
			s.log.Info("trying the next docker endpoint", "host", s.client().DaemonHost())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if wait > 0 {
			delay = min(delay*2, s.opts.BackoffMax)
		}
	}
}

// Every call to the engine but the event stream has a time limit, and a
// ping checks the engine every heartbeat: a manager that went silent (its
// machine lost, its network cut) answers nothing and resets nothing, and
// without them the session would wait on it, claiming to be connected,
// for as long as the kernel keeps the connection.
const (
	callTimeout = 10 * time.Second
	// infoTimeout is shorter: on a manager without a Raft leader, Info
	// waits out dockerd's 20 s swarm timeout; another manager (or this
	// one again later) is the better bet.
	infoTimeout = 4 * time.Second
	heartbeat   = 3 * time.Second
)

// call runs f with a context limited to d.
func call[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// session is one connection: subscribe, list, then follow events. It
// returns when the stream breaks, a call times out or the heartbeat
// fails.
func (s *Source) session(ctx context.Context, st *state, publish func(Snapshot), connected func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cli := s.client()
	ping, err := call(ctx, callTimeout, func(ctx context.Context) (client.PingResult, error) {
		return cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	})
	if err != nil {
		return fmt.Errorf("ping: %w", explainTLS(err))
	}
	manager := false
	if !s.opts.ContainersOnly {
		if manager, err = call(ctx, infoTimeout, func(ctx context.Context) (bool, error) { return isManager(ctx, cli) }); err != nil {
			return err
		}
	}
	types := []string{string(events.ContainerEventType), string(events.NetworkEventType)}
	if manager {
		types = append(types, string(events.ServiceEventType), string(events.NodeEventType))
		if st.swarm == nil {
			st.swarm = newSwarmState()
		}
	} else {
		st.swarm = nil
	}
	// Subscribe before listing: whatever happens between the two is then
	// both in the list and in the stream, never in neither.
	stream := cli.Events(ctx, client.EventsListOptions{
		Filters: make(client.Filters).Add("type", types...),
	})
	if err := st.listAllWithin(ctx, cli); err != nil {
		return err
	}
	s.setConnected(ping.APIVersion)
	connected()
	publish(st.snapshot())

	resync := time.NewTicker(s.opts.Resync)
	defer resync.Stop()
	// Tasks are polled on a timer that runs only on a manager, fast for a
	// while after a hint that tasks change, slow otherwise.
	var burstUntil time.Time
	var taskPoll <-chan time.Time
	nextPoll := func() {
		if st.swarm == nil {
			return
		}
		d := s.opts.TaskPoll
		if time.Now().Before(burstUntil) {
			d = min(d, burstPoll)
		}
		taskPoll = time.After(d)
	}
	nextPoll()
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-beat.C:
			if _, err := call(ctx, heartbeat, func(ctx context.Context) (client.PingResult, error) {
				return cli.Ping(ctx, client.PingOptions{})
			}); err != nil {
				return fmt.Errorf("heartbeat: %w", err)
			}
		case <-taskPoll:
			changed, err := call(ctx, callTimeout, func(ctx context.Context) (bool, error) { return st.swarm.pollTasks(ctx, cli) })
			if err != nil {
				return err
			}
			if changed {
				publish(st.snapshot())
			}
			nextPoll()
		case <-ctx.Done():
			return ctx.Err()
		case err := <-stream.Err:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return fmt.Errorf("event stream: %w", err)
		case msg := <-stream.Messages:
			kind := string(msg.Type) + "/" + eventAction(msg.Action)
			s.count(func(st *Status) {
				st.Events++
				if st.EventsByKind == nil {
					st.EventsByKind = map[string]int64{}
				}
				st.EventsByKind[kind]++
			})
			s.log.Debug("docker event", "type", msg.Type, "action", msg.Action, "id", shortID(msg.Actor.ID))
			cctx, ccancel := context.WithTimeout(ctx, callTimeout)
			changed, burst, err := st.apply(cctx, cli, msg)
			ccancel()
			if err != nil {
				return err
			}
			if changed {
				publish(st.snapshot())
			}
			if burst && st.swarm != nil {
				burstUntil = time.Now().Add(burstFor)
				nextPoll()
			}
		case <-resync.C:
			if err := st.listAllWithin(ctx, cli); err != nil {
				return err
			}
			s.count(func(st *Status) { st.Resyncs++ })
			publish(st.snapshot())
		}
	}
}

// listAllWithin is listAll limited to callTimeout.
func (st *state) listAllWithin(ctx context.Context, cli *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return st.listAll(ctx, cli)
}

func (s *Source) setConnected(apiVersion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Connected = true
	s.status.Since = time.Now()
	s.status.LastError = ""
	s.status.APIVersion = apiVersion
	s.status.Connects++
}

func (s *Source) setDisconnected(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.Connected {
		s.status.Disconnects++
		s.status.Since = time.Now()
	}
	s.status.Connected = false
	s.status.LastError = err.Error()
}

func (s *Source) count(f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status)
}

// state is what the source knows of the engine between events. It is
// owned by the goroutine running Run.
type state struct {
	// swarm is nil unless the engine is a Swarm manager.
	swarm      *swarmState
	containers map[string]Container
	// draining holds containers the engine was asked to stop: they stay
	// out of the table even when a list still shows them running.
	draining map[string]bool
}

func newState() *state {
	return &state{containers: map[string]Container{}, draining: map[string]bool{}}
}

func (st *state) listAll(ctx context.Context, cli *client.Client) error {
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	next := make(map[string]Container, len(res.Items))
	var unknown []string
	for _, item := range res.Items {
		c := project(item)
		if old, ok := st.containers[item.ID]; ok && old.Created.Truncate(time.Second).Equal(c.Created) {
			c.Created = old.Created
		} else {
			unknown = append(unknown, item.ID)
		}
		next[item.ID] = c
	}
	if err := exactCreated(ctx, cli, next, unknown); err != nil {
		return err
	}
	st.containers = next
	for id := range st.draining {
		if _, ok := next[id]; !ok {
			delete(st.draining, id)
		}
	}
	if st.swarm != nil {
		if _, err := st.swarm.listAll(ctx, cli); err != nil {
			return err
		}
	}
	return nil
}

// exactCreated replaces the whole seconds a list gives as creation times
// of the containers ids with the engine's exact times, read by inspect. The
// first container of a host defines its settings (discovery.Build), and
// "docker compose up --scale" creates several in one second: at a second's
// precision their ID, which is random, would decide. A creation time never
// changes, so each container is inspected once in its life; one that is
// gone meanwhile leaves next.
func exactCreated(ctx context.Context, cli *client.Client, next map[string]Container, ids []string) error {
	type result struct {
		id      string
		created time.Time
		gone    bool
		err     error
	}
	const parallel = 8
	results := make(chan result, len(ids))
	sem := make(chan struct{}, parallel)
	for _, id := range ids {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			switch {
			case cerrdefs.IsNotFound(err):
				results <- result{id: id, gone: true}
			case err != nil:
				results <- result{id: id, err: fmt.Errorf("inspect container %.12s: %w", id, err)}
			default:
				created, err := time.Parse(time.RFC3339Nano, res.Container.Created)
				if err != nil {
					err = fmt.Errorf("container %.12s: creation time %q: %w", id, res.Container.Created, err)
				}
				results <- result{id: id, created: created.UTC(), err: err}
			}
		}()
	}
	var errs []error
	for range ids {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.gone:
			delete(next, r.id)
		default:
			c := next[r.id]
			c.Created = r.created
			next[r.id] = c
		}
	}
	return errors.Join(errs...)
}

// refresh re-reads one container; gone means it no longer runs.
func (st *state) refresh(ctx context.Context, cli *client.Client, id string) error {
	res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		delete(st.containers, id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect container %.12s: %w", id, err)
	}
	st.containers[id] = projectInspect(res.Container)
	return nil
}

// terminating lists the signals after which a container must get no new
// requests: what docker stop and docker kill send.
var terminating = map[string]bool{
	"15": true, "SIGTERM": true, "TERM": true,
	"9": true, "SIGKILL": true, "KILL": true,
	"2": true, "SIGINT": true, "INT": true,
	"3": true, "SIGQUIT": true, "QUIT": true,
}

// apply updates the state for one event. It reports whether the event may
// have changed anything routable, and whether Swarm tasks are likely to be
// changing (poll them fast for a while).
func (st *state) apply(ctx context.Context, cli *client.Client, msg events.Message) (changed, burst bool, err error) {
	switch msg.Type {
	case events.NetworkEventType:
		id := msg.Actor.Attributes["container"]
		if id == "" || (msg.Action != events.ActionConnect && msg.Action != events.ActionDisconnect) {
			return false, false, nil
		}
		return true, false, st.refresh(ctx, cli, id)
	case events.ServiceEventType, events.NodeEventType:
		if st.swarm == nil {
			return false, false, nil
		}
		changed, err := st.swarm.listAll(ctx, cli)
		return changed, true, err
	}
	id := msg.Actor.ID
	// A task's container carries its task ID: on this node its events tell
	// of task changes before any poll would.
	task := msg.Actor.Attributes[swarmTaskLabel]
	switch action := msg.Action; {
	case action == events.ActionKill:
		if !terminating[msg.Actor.Attributes["signal"]] || st.draining[id] {
			return false, task != "", nil
		}
		// Take it out now, without another API call: the process is about
		// to get the signal, and every millisecond counts.
		st.draining[id] = true
		if task != "" && st.swarm != nil {
			st.swarm.drainTask(task)
		}
		return true, task != "", nil
	case action == events.ActionStop || action == events.ActionDie:
		st.draining[id] = true
		if task != "" && st.swarm != nil {
			st.swarm.drainTask(task)
		}
		return true, task != "", st.refresh(ctx, cli, id)
	case action == events.ActionDestroy:
		delete(st.draining, id)
		_, had := st.containers[id]
		delete(st.containers, id)
		return had, task != "", nil
	case action == events.ActionStart || action == events.ActionRestart || action == events.ActionUnPause:
		delete(st.draining, id)
		return true, task != "", st.refresh(ctx, cli, id)
	case action == events.ActionPause || action == events.ActionRename || action == events.ActionUpdate ||
		eventAction(action) == string(events.ActionHealthStatus):
		return true, task != "", st.refresh(ctx, cli, id)
	}
	return false, false, nil
}

// swarmTaskLabel is the label Swarm puts on a task's container.
const swarmTaskLabel = "com.docker.swarm.task.id"

func (st *state) snapshot() Snapshot {
	out := Snapshot{Containers: make([]Container, 0, len(st.containers))}
	for id, c := range st.containers {
		c.Draining = st.draining[id]
		out.Containers = append(out.Containers, c)
	}
	slices.SortFunc(out.Containers, func(a, b Container) int { return cmp.Compare(a.ID, b.ID) })
	if st.swarm != nil {
		out.Swarm = true
		out.Services = st.swarm.snapshotServices()
	}
	return out
}

// eventAction folds "health_status: healthy" and its kin into
// "health_status", so that actions form a small fixed set.
func eventAction(a events.Action) string {
	if strings.HasPrefix(string(a), string(events.ActionHealthStatus)) {
		return string(events.ActionHealthStatus)
	}
	return string(a)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
