package haproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// supervisor runs HAProxy in master-worker mode as Interlock's child:
//
//	haproxy -W -db -f haproxy.cfg -S master.sock,mode,600
//
// The master (-W, in the foreground with -db) forks the worker that
// serves. A reload is the master CLI's "reload" (the same as SIGUSR2): the
// master re-executes itself on the file, the new worker takes the
// listening sockets from the old one over a socket pair (the master passes
// -x sockpair@ itself; the stats socket also has expose-fd listeners, for
// a -x by hand), and the old worker stops accepting and finishes its
// connections. No connection is refused. The supervisor restarts a master
// that dies, with capped backoff, and stops it gracefully on close.
type supervisor struct {
	bin, conf string
	master    master
	admin     runtimeAPI
	log       *slog.Logger
	// restarted is called (without the supervisor's lock) after a restart
	// the supervisor did on its own: the new process knows only the file.
	restarted func()
	// stdout receives HAProxy's standard output (an access log, log
	// stdout) through a pipe of its own; nil sends it to the log with
	// stderr.
	stdout io.Writer

	mu       sync.Mutex
	proc     *os.Process
	exited   chan struct{} // closed when proc has exited
	stopping bool
	starts   int64

	tailMu sync.Mutex
	tail   []string // last lines of output, for error messages
	wake   chan struct{}
	wg     sync.WaitGroup
}

const (
	startTimeout   = 15 * time.Second
	reloadTimeout  = 30 * time.Second
	restartMin     = 100 * time.Millisecond
	restartMax     = 5 * time.Second
	stableAfter    = 10 * time.Second
	tailLines      = 20
	stopGracefully = 10 * time.Second
	pollEvery      = 5 * time.Millisecond
)

func newSupervisor(bin, conf, masterSock, adminSock string, log *slog.Logger) *supervisor {
	return &supervisor{
		bin: bin, conf: conf, log: log,
		master: master{socket{masterSock}}, admin: runtimeAPI{socket{adminSock}},
		wake: make(chan struct{}, 1),
	}
}

// running reports whether the master is up.
func (s *supervisor) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !isClosed(s.exited)
}

// start starts HAProxy unless it runs, and waits until a worker serves.
func (s *supervisor) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("haproxy is being stopped")
	}
	if s.proc != nil && !isClosed(s.exited) {
		return nil
	}
	return s.startLocked(ctx)
}

func (s *supervisor) startLocked(ctx context.Context) error {
	_ = os.Remove(s.master.sock.path)
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	cmd := exec.Command(s.bin, "-W", "-db", "-f", s.conf, "-S", s.master.sock.path+",mode,600")
	cmd.Stdout, cmd.Stderr = w, w
	var outR, outW *os.File
	if s.stdout != nil {
		if outR, outW, err = os.Pipe(); err != nil {
			_ = r.Close()
			_ = w.Close()
			return fmt.Errorf("start haproxy: %w", err)
		}
		cmd.Stdout = outW
	}
	// If Interlock dies without stopping it, the master gets SIGUSR1 (soft
	// stop) and leaves gracefully instead of holding the ports forever.
	// Its own process group, so a forced stop reaches the workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGUSR1, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		if outR != nil {
			_ = outR.Close()
			_ = outW.Close()
		}
		return fmt.Errorf("start haproxy %s: %w", s.bin, err)
	}
	_ = w.Close()
	if outR != nil {
		_ = outW.Close()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer outR.Close()
			// Until every HAProxy process has closed it; after a write
			// error the pipe is drained anyway (HAProxy drops log lines
			// on a full pipe rather than block, but keep it moving).
			if _, err := io.Copy(s.stdout, outR); err != nil {
				_, _ = io.Copy(io.Discard, outR)
			}
		}()
	}
	exited := make(chan struct{})
	s.proc, s.exited = cmd.Process, exited
	s.starts++
	s.tailMu.Lock()
	s.tail = nil
	s.tailMu.Unlock()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.readOutput(r)
	}()
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		close(exited)
		s.exitedUnexpectedly(cmd.Process.Pid, err)
	}()
	s.log.Info("haproxy started", "pid", cmd.Process.Pid, "config", s.conf)

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		p, err := s.master.showProc(ctx)
		if err == nil && len(p.Workers) > 0 {
			if pid, err := s.admin.pid(ctx); err == nil && pid == p.Workers[0] {
				return nil
			}
		}
		select {
		case <-exited:
			time.Sleep(50 * time.Millisecond) // let the last output arrive
			s.proc = nil                      // a failed start is not restarted
			return fmt.Errorf("haproxy exited at start: %s", s.tailText())
		case <-ctx.Done():
			killGroup(cmd.Process)
			<-exited
			s.proc = nil
			return waitError(ctx, "haproxy start", startTimeout, s.tailText())
		case <-time.After(pollEvery):
		}
	}
}

// reload makes the master load the file again and returns once the new
// worker answers on the admin socket. A failed load leaves the old worker
// serving, and the error carries HAProxy's messages.
func (s *supervisor) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("haproxy is being stopped")
	}
	if s.proc == nil || isClosed(s.exited) {
		return s.startLocked(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	before, err := s.master.showProc(ctx)
	if err != nil {
		return err
	}
	s.tailMu.Lock()
	s.tail = nil
	s.tailMu.Unlock()
	if err := s.master.reload(ctx); err != nil {
		return err
	}
	for {
		// The master re-executes itself: its CLI is gone for a moment.
		p, err := s.master.showProc(ctx)
		if err == nil {
			if p.Failed > before.Failed {
				return fmt.Errorf("haproxy reload failed; the previous worker keeps serving: %s", s.tailText())
			}
			if fresh := newWorker(before.Workers, p.Workers); fresh != 0 && p.Reloads > before.Reloads {
				if pid, err := s.admin.pid(ctx); err == nil && pid == fresh {
					return nil
				}
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("haproxy exited during a reload: %s", s.tailText())
		case <-ctx.Done():
			return waitError(ctx, "haproxy reload", reloadTimeout, s.tailText())
		case <-time.After(pollEvery):
		}
	}
}

// waitError says why a wait for a new worker ended early: the time limit
// passed (HAProxy's output then says why it did not serve), or Interlock
// gave up on it (stopping), which says nothing about HAProxy.
func waitError(ctx context.Context, what string, limit time.Duration, output string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: no new worker served within %v (output: %s)", what, limit, output)
	}
	return fmt.Errorf("%s: interrupted before a new worker served: %w", what, context.Cause(ctx))
}

// newWorker returns a pid of now that is not in before, or 0.
func newWorker(before, now []int) int {
	for _, p := range now {
		if !slices.Contains(before, p) {
			return p
		}
	}
	return 0
}

// exitedUnexpectedly restarts HAProxy with backoff unless it is being
// stopped. Runs on the goroutine that waited for the process.
func (s *supervisor) exitedUnexpectedly(pid int, err error) {
	s.mu.Lock()
	if s.stopping || s.proc == nil || s.proc.Pid != pid {
		s.mu.Unlock()
		return
	}
	s.log.Error("haproxy exited; restarting it", "pid", pid, "error", err, "output", s.tailText())
	s.mu.Unlock()

	delay := restartMin
	for {
		select {
		case <-time.After(delay):
		case <-s.wake:
		}
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return
		}
		if s.proc != nil && s.proc.Pid != pid && !isClosed(s.exited) {
			s.mu.Unlock() // a reload started it meanwhile
			return
		}
		started := time.Now()
		err := s.startLocked(context.Background())
		s.mu.Unlock()
		if err == nil {
			if s.restarted != nil {
				s.restarted()
			}
			return
		}
		s.log.Error("haproxy restart failed", "error", err, "retry_in", delay)
		if time.Since(started) > stableAfter {
			delay = restartMin
		}
		delay = min(delay*2, restartMax)
	}
}

// readOutput logs HAProxy's output and keeps its last lines.
func (s *supervisor) readOutput(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		level, msg := slog.LevelInfo, line
		if m := logLine.FindStringSubmatch(line); m != nil {
			msg = m[2]
			switch m[1] {
			case "EMERG", "ALERT", "CRIT", "ERR":
				level = slog.LevelError
			case "WARNING":
				level = slog.LevelWarn
				if routine(msg) {
					level = slog.LevelInfo
				}
			case "NOTICE":
				level = slog.LevelInfo
			case "DEBUG":
				level = slog.LevelDebug
			}
		}
		s.log.Log(context.Background(), level, "haproxy: "+msg)
		s.tailMu.Lock()
		s.tail = append(s.tail, line)
		if len(s.tail) > tailLines {
			s.tail = s.tail[1:]
		}
		s.tailMu.Unlock()
	}
}

// routine reports whether a WARNING is HAProxy's normal account of a
// reload or stop rather than a problem.
func routine(msg string) bool {
	for _, s := range []string{"stopped (cumulated conns", "exited with code 0", "Exiting Master process", "All workers exited",
		"Reexecuting Master process", "Stopping frontend", "Stopping backend", "Stopping proxy",
		// Interlock's own Runtime API commands, and the state they restore.
		"CLI : ", "leaving forced maintenance", "is going DOWN for maintenance", "enters drain state", "changed from server-state after a reload"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// tailText is the last lines of output, alerts first.
func (s *supervisor) tailText() string {
	s.tailMu.Lock()
	defer s.tailMu.Unlock()
	if len(s.tail) == 0 {
		return "no output"
	}
	var alerts []string
	for _, l := range s.tail {
		if strings.HasPrefix(l, "[ALERT]") {
			alerts = append(alerts, l)
		}
	}
	if len(alerts) > 0 {
		return cleanOutput(strings.Join(alerts, "\n"))
	}
	return strings.Join(s.tail, "; ")
}

// startCount is how many times HAProxy was started (the first start and
// every restart).
func (s *supervisor) startCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// close stops HAProxy: SIGUSR1 (soft stop: the worker finishes its
// connections), then SIGTERM and SIGKILL when ctx ends or stopGracefully
// passes first.
func (s *supervisor) close(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if proc != nil && !isClosed(exited) {
		_ = proc.Signal(syscall.SIGUSR1)
		timer := time.NewTimer(stopGracefully)
		defer timer.Stop()
		// A master that is re-executing itself for a reload loses the
		// signal; ask again until it goes, rather than wait out the grace
		// period and cut its connections.
		again := time.NewTicker(250 * time.Millisecond)
		defer again.Stop()
	wait:
		for {
			select {
			case <-exited:
				break wait
			case <-again.C:
				_ = proc.Signal(syscall.SIGUSR1)
			case <-ctx.Done():
				_ = proc.Signal(syscall.SIGTERM)
				break wait
			case <-timer.C:
				_ = proc.Signal(syscall.SIGTERM)
				break wait
			}
		}
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			killGroup(proc)
			<-exited
		}
		s.log.Info("haproxy stopped", "pid", proc.Pid)
	}
	s.wg.Wait()
	return nil
}

// killGroup SIGKILLs the master and its workers (the master's process
// group).
func killGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
