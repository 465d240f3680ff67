package nginx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// supervisor runs nginx as Interlock's child: started on the first reload
// (once a live file exists), reloaded with SIGHUP, restarted with capped
// backoff when it dies, stopped with SIGQUIT (graceful) on close. Its
// stderr (error_log stderr) goes to Interlock's log, line by line.
type supervisor struct {
	bin, prefix, conf, pidFile string
	log                        *slog.Logger
	// sockets are the unix sockets the configuration may listen on (SNI
	// passthrough's): one that an nginx killed outright left behind is
	// removed before a start, or the bind would fail.
	sockets []string
	// stdout receives nginx's standard output (an access log on
	// /dev/stdout), through a pipe of its own: nginx opens /dev/stdout,
	// which a pipe always allows (a socket, journald's, would not). Nil
	// sends it to the log with stderr.
	stdout io.Writer

	mu       sync.Mutex
	proc     *os.Process
	exited   chan struct{} // closed when proc has exited
	stopping bool
	restarts int64

	tailMu sync.Mutex
	tail   []string // last lines of output, for error messages
	// wake cuts a restart backoff short (a reload wants nginx now).
	wake chan struct{}
	wg   sync.WaitGroup
}

const (
	startTimeout   = 10 * time.Second
	restartMin     = 100 * time.Millisecond
	restartMax     = 5 * time.Second
	stableAfter    = 10 * time.Second
	tailLines      = 20
	stopGracefully = 10 * time.Second
)

func newSupervisor(bin, prefix, conf, pidFile string, log *slog.Logger) *supervisor {
	return &supervisor{bin: bin, prefix: prefix, conf: conf, pidFile: pidFile, log: log, wake: make(chan struct{}, 1)}
}

// reload starts nginx when it is not running, else sends SIGHUP.
func (s *supervisor) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("nginx is being stopped")
	}
	if s.proc != nil && !isClosed(s.exited) {
		if err := s.proc.Signal(syscall.SIGHUP); err != nil {
			return fmt.Errorf("signal nginx %d: %w", s.proc.Pid, err)
		}
		return nil
	}
	if err := s.startLocked(ctx); err != nil {
		return err
	}
	return nil
}

// startLocked starts nginx and waits until its master has written its pid
// file (it binds its sockets first) or has died.
func (s *supervisor) startLocked(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start nginx: %w", err)
	}
	_ = os.Remove(s.pidFile)
	removeStaleSockets(s.sockets)
	cmd := exec.Command(s.bin, "-p", s.prefix+"/", "-e", "stderr", "-c", s.conf, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = w, w
	var outR, outW *os.File
	if s.stdout != nil {
		if outR, outW, err = os.Pipe(); err != nil {
			_ = r.Close()
			_ = w.Close()
			return fmt.Errorf("start nginx: %w", err)
		}
		cmd.Stdout = outW
	}
	// If Interlock dies without stopping it, nginx gets SIGQUIT and leaves
	// gracefully instead of holding the ports forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		if outR != nil {
			_ = outR.Close()
			_ = outW.Close()
		}
		return fmt.Errorf("start nginx %s: %w", s.bin, err)
	}
	_ = w.Close()
	if outR != nil {
		_ = outW.Close()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer outR.Close()
			// Until every nginx process has closed it; a write error (a
			// closed stdout) drains the pipe anyway, so nginx never blocks.
			if _, err := io.Copy(s.stdout, outR); err != nil {
				_, _ = io.Copy(io.Discard, outR)
			}
		}()
	}
	exited := make(chan struct{})
	s.proc, s.exited = cmd.Process, exited
	s.tailMu.Lock()
	s.tail = nil
	s.tailMu.Unlock()
	outputDone := make(chan struct{})
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer close(outputDone)
		s.readOutput(r)
	}()
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		close(exited)
		s.exitedUnexpectedly(cmd.Process.Pid, err)
	}()
	s.log.Info("nginx started", "pid", cmd.Process.Pid, "config", s.conf)

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if pid, err := readPid(s.pidFile); err == nil && pid == cmd.Process.Pid {
			return nil
		}
		select {
		case <-exited:
			select {
			case <-outputDone:
			case <-time.After(time.Second):
			}
			return fmt.Errorf("nginx exited at start: %s", s.tailText())
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			// A custom template may have moved the pid file; nginx is up.
			s.log.Warn("nginx wrote no pid file in time; assuming it is serving", "pid_file", s.pidFile, "waited", startTimeout)
			return nil
		case <-tick.C:
		}
	}
}

// exitedUnexpectedly restarts nginx with backoff unless it is being
// stopped. Runs on the goroutine that waited for the process.
func (s *supervisor) exitedUnexpectedly(pid int, err error) {
	s.mu.Lock()
	if s.stopping || s.proc == nil || s.proc.Pid != pid {
		s.mu.Unlock()
		return
	}
	s.log.Error("nginx exited; restarting it", "pid", pid, "error", err, "output", s.tailText())
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
		if err == nil {
			s.restarts++
			s.mu.Unlock()
			return
		}
		s.log.Error("nginx restart failed", "error", err, "retry_in", delay)
		s.mu.Unlock()
		if time.Since(started) > stableAfter {
			delay = restartMin
		}
		delay = min(delay*2, restartMax)
	}
}

// errorLogLine matches nginx's error log prefix: date, time, [level].
var errorLogLine = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (?:\d+#\d+: )?(.*)$`)

// readOutput logs nginx's output and keeps its last lines.
func (s *supervisor) readOutput(r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		level, msg := slog.LevelInfo, line
		if m := errorLogLine.FindStringSubmatch(line); m != nil {
			msg = m[2]
			switch m[1] {
			case "emerg", "alert", "crit", "error":
				level = slog.LevelError
			case "warn":
				level = slog.LevelWarn
			case "debug":
				level = slog.LevelDebug
			}
		}
		s.log.Log(context.Background(), level, "nginx: "+msg)
		s.tailMu.Lock()
		s.tail = append(s.tail, line)
		if len(s.tail) > tailLines {
			s.tail = s.tail[1:]
		}
		s.tailMu.Unlock()
	}
}

func (s *supervisor) tailText() string {
	s.tailMu.Lock()
	defer s.tailMu.Unlock()
	if len(s.tail) == 0 {
		return "no output"
	}
	return strings.Join(s.tail, "; ")
}

// close stops nginx: SIGQUIT (finish in-flight requests), then SIGKILL
// when ctx ends or stopGracefully passes first.
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
		_ = proc.Signal(syscall.SIGQUIT)
		timer := time.NewTimer(stopGracefully)
		defer timer.Stop()
		select {
		case <-exited:
		case <-ctx.Done():
			_ = proc.Kill()
			<-exited
		case <-timer.C:
			_ = proc.Kill()
			<-exited
		}
		s.log.Info("nginx stopped", "pid", proc.Pid)
	}
	s.wg.Wait()
	return nil
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

// removeStaleSockets removes each unix socket in paths that nothing
// listens on any more (nginx removes its sockets when it stops, but not
// when it is killed): a socket someone still accepts on stays.
func removeStaleSockets(paths []string) {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode().Type() != os.ModeSocket {
			continue
		}
		c, err := net.DialTimeout("unix", p, time.Second)
		if err == nil {
			_ = c.Close()
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			_ = os.Remove(p)
		}
	}
}
