package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// SideloadOptions configure a Sideload. Zero values take the documented
// defaults.
type SideloadOptions struct {
	// Label and Value select the proxy containers: running containers with
	// the label Label=Value. Defaults "interlock.ext.name" and "nginx".
	Label, Value string
	// Copy delivers files with the Docker API (CopyToContainer). Without
	// it, a shared volume already holds them and Reload only signals.
	Copy bool
	// Stage is the path, inside the containers, of the file that is checked
	// before it goes live (the proxy configuration). It is first copied to
	// Stage+".candidate"; the other files are copied to their own paths
	// first, since the candidate refers to them.
	Stage string
	// Check is the command run inside each container against the staged
	// file, "{}" standing for its path (nginx -t -q -c {}). A non-zero exit
	// rejects the files everywhere; its output is the error. Empty: no
	// check.
	Check []string
	// Signal reloads the proxy. Default "HUP".
	Signal string
	// Ready is text in a process command line that shows the proxy in a new
	// container has started ("nginx: worker process"). A newcomer gets its
	// files and signal only once it shows, so the signal cannot arrive
	// before the proxy handles it (a signal without a handler is ignored
	// by a container's PID 1). Empty: no wait.
	Ready string
	// ReadyTimeout bounds that wait. Default 10s.
	ReadyTimeout time.Duration
	Logger       *slog.Logger
}

// SideloadStats are a Sideload's counters.
type SideloadStats struct {
	// Label is the selector, "interlock.ext.name=nginx"; Host is the
	// engine the proxy containers are looked for on (its DaemonHost).
	Label, Host string
	// Targets is the number of running proxy containers.
	Targets int
	// Pushes counts files delivered to a container (Reload or newcomer);
	// Signals counts reload signals sent.
	Pushes, Signals int64
	// LastError is the last failure, "" after a success.
	LastError string
}

// Sideload reaches side-loaded proxy containers: the running containers
// labelled Label=Value. It delivers files to them (copied over the Docker
// API, or left to a shared volume), validates them inside the container,
// and reloads the proxy with a signal. Observe, fed with every snapshot,
// keeps the set of containers; Run pushes the current files to a proxy
// container that appears later. It knows nothing of routing or drivers:
// files are paths and bytes.
type Sideload struct {
	cli  *client.Client
	opts SideloadOptions
	log  *slog.Logger
	// label is Label=Value, host the engine's address: for Stats and logs.
	label, host string

	// op serializes work on the containers: a Reload and a newcomer push
	// never interleave.
	op sync.Mutex

	mu sync.Mutex
	// targets are the running proxy containers of the last snapshot: ID
	// to name.
	targets map[string]string
	// current holds the containers that have the current files.
	current map[string]bool
	// files are the last files Reload delivered (or, with no container
	// running then, was given); reloaded is whether Reload ever ran.
	files    map[string][]byte
	reloaded bool
	stats    SideloadStats
	kick     chan struct{}
	// hostnames caches each target's host name (Targets), by ID.
	hostnames map[string]string
}

// SideloadTarget is a running proxy container.
type SideloadTarget struct {
	ID, Name string
	// Hostname is the container's host name (its HOSTNAME variable).
	Hostname string
}

// NewSideload returns a Sideload that talks to the engine through cli.
func NewSideload(cli *client.Client, opts SideloadOptions) *Sideload {
	if opts.Label == "" {
		opts.Label = "interlock.ext.name"
	}
	if opts.Value == "" {
		opts.Value = "nginx"
	}
	if opts.Signal == "" {
		opts.Signal = "HUP"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Sideload{cli: cli, opts: opts, log: log, label: opts.Label + "=" + opts.Value,
		targets: map[string]string{}, current: map[string]bool{}, kick: make(chan struct{}, 1), hostnames: map[string]string{}}
	if cli != nil {
		s.host = cli.DaemonHost()
	}
	return s
}

// Observe records the proxy containers running in snap and schedules a
// push to those that do not have the current files yet. It never blocks.
func (s *Sideload) Observe(snap Snapshot) {
	next := map[string]string{}
	for _, c := range snap.Containers {
		if c.Labels[s.opts.Label] == s.opts.Value && c.State == "running" && !c.Draining {
			next[c.ID] = c.Name
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.current {
		if _, ok := next[id]; !ok {
			delete(s.current, id) // stopped: a restart reads its files anew, and gets them again
		}
	}
	s.targets = next
	s.stats.Targets = len(next)
	for id := range s.hostnames {
		if _, ok := next[id]; !ok {
			delete(s.hostnames, id)
		}
	}
	if s.reloaded && len(s.newcomersLocked()) > 0 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *Sideload) newcomersLocked() []string {
	var ids []string
	for id := range s.targets {
		if !s.current[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Run pushes the current files to proxy containers that appear, until ctx
// ends. A push that fails is retried at the next snapshot.
func (s *Sideload) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
		s.mu.Lock()
		ids := s.newcomersLocked()
		s.mu.Unlock()
		for _, id := range ids {
			if err := s.waitReady(ctx, id); err != nil {
				s.fail("proxy container not ready", id, err)
				continue
			}
			s.op.Lock()
			err := s.pushNewcomer(ctx, id)
			s.op.Unlock()
			if err != nil {
				s.fail("push to new proxy container failed", id, err)
			}
		}
	}
}

func (s *Sideload) pushNewcomer(ctx context.Context, id string) error {
	s.mu.Lock()
	files, have := s.files, s.current[id]
	_, running := s.targets[id]
	s.mu.Unlock()
	if have || !running {
		return nil // a Reload got there first, or it is gone
	}
	if s.opts.Copy && files != nil {
		if err := s.stage(ctx, id, files); err != nil {
			return err
		}
		if err := s.check(ctx, id); err != nil {
			return err
		}
		if err := s.commit(ctx, id, files); err != nil {
			return err
		}
	}
	if err := s.signal(ctx, id); err != nil {
		return err
	}
	s.mu.Lock()
	s.current[id] = true
	s.stats.LastError = ""
	s.mu.Unlock()
	s.log.Info("new proxy container configured", "container", s.name(id), "id", sideloadID(id))
	return nil
}

// Reload puts files (path inside the containers -> content) live in every
// running proxy container and reloads them: with Copy, the files go in
// first, the staged one is checked in every container, and only when all
// accept it does it go live anywhere; then each gets Signal. Without Copy,
// files must be nil: the shared volume holds them, and Reload only signals.
// With no container running, the files are kept for the first one that
// appears (which checks them before they go live) and Reload returns nil.
func (s *Sideload) Reload(ctx context.Context, files map[string][]byte) error {
	if !s.opts.Copy && files != nil {
		return errors.New("sideload: files given, but delivery is by shared volume")
	}
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	ids := slices.Sorted(maps.Keys(s.targets))
	s.mu.Unlock()
	if len(ids) == 0 {
		s.mu.Lock()
		s.files, s.reloaded = maps.Clone(files), true
		s.mu.Unlock()
		// Warn: nothing serves this configuration yet. On a Swarm manager
		// that lists only its own node's containers, this is how a proxy
		// container on another node goes unfound (--proxy-docker-host).
		s.log.Warn("no proxy container is running; the configuration goes to the first one that starts",
			"label", s.label, "docker_host", s.host)
		return nil
	}
	if s.opts.Copy {
		for _, id := range ids {
			if err := s.stage(ctx, id, files); err != nil {
				return s.fail("deliver", id, err)
			}
		}
		for _, id := range ids {
			if err := s.check(ctx, id); err != nil {
				return s.fail("check", id, err)
			}
		}
		for _, id := range ids {
			if err := s.commit(ctx, id, files); err != nil {
				return s.fail("put live", id, err)
			}
		}
	}
	s.mu.Lock()
	s.files, s.reloaded = maps.Clone(files), true
	for _, id := range ids {
		delete(s.current, id)
	}
	s.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := s.signal(ctx, id); err != nil {
			errs = append(errs, s.fail("reload", id, err))
			continue
		}
		s.mu.Lock()
		s.current[id] = true
		s.mu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.LastError = ""
	s.mu.Unlock()
	return nil
}

// Targets returns the running proxy containers of the last snapshot,
// sorted by ID, with their host names (inspected once per container).
func (s *Sideload) Targets(ctx context.Context) ([]SideloadTarget, error) {
	s.mu.Lock()
	out := make([]SideloadTarget, 0, len(s.targets))
	for _, id := range slices.Sorted(maps.Keys(s.targets)) {
		out = append(out, SideloadTarget{ID: id, Name: s.targets[id], Hostname: s.hostnames[id]})
	}
	s.mu.Unlock()
	for i, t := range out {
		if t.Hostname != "" {
			continue
		}
		res, err := s.cli.ContainerInspect(ctx, t.ID, client.ContainerInspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("proxy container %s: inspect: %w", t.Name, err)
		}
		if res.Container.Config == nil || res.Container.Config.Hostname == "" {
			return nil, fmt.Errorf("proxy container %s: no host name", t.Name)
		}
		out[i].Hostname = res.Container.Config.Hostname
		s.mu.Lock()
		if _, ok := s.targets[t.ID]; ok {
			s.hostnames[t.ID] = out[i].Hostname
		}
		s.mu.Unlock()
	}
	return out, nil
}

// Signal sends sig to the proxy container id: a reload the caller manages
// itself (haproxy's SIGUSR2). It does not wait for others' Reload.
func (s *Sideload) Signal(ctx context.Context, id, sig string) error {
	if _, err := s.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: sig}); err != nil {
		return fmt.Errorf("send %s: %w", sig, err)
	}
	s.mu.Lock()
	s.stats.Signals++
	s.mu.Unlock()
	return nil
}

// Stats returns a copy of the counters.
func (s *Sideload) Stats() SideloadStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Label, st.Host = s.label, s.host
	return st
}

func (s *Sideload) name(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.targets[id]; n != "" {
		return n
	}
	return sideloadID(id)
}

// fail records err and returns it wrapped with the container's name.
func (s *Sideload) fail(what, id string, err error) error {
	err = fmt.Errorf("proxy container %s: %s: %w", s.name(id), what, err)
	s.mu.Lock()
	s.stats.LastError = err.Error()
	s.mu.Unlock()
	s.log.Warn("sideload", "error", err)
	return err
}

func (s *Sideload) staged() string { return s.opts.Stage + ".candidate" }

// stage copies every file but the staged one to its path, and the staged
// one to its candidate path.
func (s *Sideload) stage(ctx context.Context, id string, files map[string][]byte) error {
	out := map[string][]byte{}
	for p, b := range files {
		if p == s.opts.Stage {
			p = s.staged()
		}
		out[p] = b
	}
	return s.copyFiles(ctx, id, out)
}

// commit copies the staged file to its live path.
func (s *Sideload) commit(ctx context.Context, id string, files map[string][]byte) error {
	b, ok := files[s.opts.Stage]
	if !ok {
		return nil
	}
	return s.copyFiles(ctx, id, map[string][]byte{s.opts.Stage: b})
}

// copyFiles copies files into the container, one tar per directory.
// Directories must exist in the container.
func (s *Sideload) copyFiles(ctx context.Context, id string, files map[string][]byte) error {
	byDir := map[string][]string{}
	for p := range files {
		if !path.IsAbs(p) {
			return fmt.Errorf("file path %q is not absolute", p)
		}
		byDir[path.Dir(p)] = append(byDir[path.Dir(p)], p)
	}
	for _, dir := range slices.Sorted(maps.Keys(byDir)) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		paths := byDir[dir]
		slices.Sort(paths)
		for _, p := range paths {
			mode := int64(0o644)
			if strings.HasSuffix(p, ".key") {
				mode = 0o600
			}
			hdr := &tar.Header{Name: path.Base(p), Mode: mode, Size: int64(len(files[p])), ModTime: time.Now(), Typeflag: tar.TypeReg}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(files[p]); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if _, err := s.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: &buf}); err != nil {
			return fmt.Errorf("copy to %s: %w", dir, err)
		}
	}
	s.mu.Lock()
	s.stats.Pushes++
	s.mu.Unlock()
	return nil
}

// check runs the Check command in the container.
func (s *Sideload) check(ctx context.Context, id string) error {
	if len(s.opts.Check) == 0 {
		return nil
	}
	cmd := make([]string, len(s.opts.Check))
	for i, a := range s.opts.Check {
		cmd[i] = strings.ReplaceAll(a, "{}", s.staged())
	}
	code, out, err := s.exec(ctx, id, cmd)
	if err != nil {
		return fmt.Errorf("run %s: %w", strings.Join(cmd, " "), err)
	}
	if code != 0 {
		return &CheckError{Command: cmd, Code: code, Output: cleanCheckOutput(out)}
	}
	return nil
}

// CheckError is a Check that rejected the files; Output is the command's
// own message (nginx -t's).
type CheckError struct {
	Command []string
	Code    int
	Output  string
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("%s exited with %d, nothing was put live: %s", strings.Join(e.Command, " "), e.Code, e.Output)
}

// logPrefix is the date, time and pid#tid an nginx-style log line starts
// with; the level in brackets is kept.
var logPrefix = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) (?:\d+#\d+: )?`)

// cleanCheckOutput keeps the check's messages, one line each, without
// timestamps and without nginx's redundant "test failed" trailer.
func cleanCheckOutput(s string) string {
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasSuffix(line, "test failed") {
			continue
		}
		lines = append(lines, logPrefix.ReplaceAllString(line, "$1 "))
	}
	return strings.Join(lines, "; ")
}

// exec runs cmd in the container and returns its exit code and output.
func (s *Sideload) exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created, err := s.cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, "", err
	}
	att, err := s.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, "", err
	}
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, att.Reader)
	att.Close()
	if err != nil {
		return 0, "", fmt.Errorf("read output: %w", err)
	}
	for {
		res, err := s.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return 0, "", err
		}
		if !res.Running {
			return res.ExitCode, out.String(), nil
		}
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *Sideload) signal(ctx context.Context, id string) error {
	return s.Signal(ctx, id, s.opts.Signal)
}

// waitReady polls the container's processes until one shows Ready.
func (s *Sideload) waitReady(ctx context.Context, id string) error {
	if s.opts.Ready == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for {
		top, err := s.cli.ContainerTop(ctx, id, client.ContainerTopOptions{})
		if err == nil {
			for _, p := range top.Processes {
				if strings.Contains(strings.Join(p, " "), s.opts.Ready) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("no process %q", s.opts.Ready)
			}
			return fmt.Errorf("waited %s: %w", s.opts.ReadyTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func sideloadID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
