package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
)

// localTarget writes the live file on this machine after validating the
// candidate with the local nginx, then reloads through its reloader.
type localTarget struct {
	bin      string
	live     string
	scratch  string
	reloader reloader
	log      *slog.Logger
}

// reloader tells nginx to read the live file again.
type reloader interface {
	reload(ctx context.Context) error
	close(ctx context.Context) error
}

// candidateSuffix names the candidate beside the live file: same directory,
// so relative includes resolve alike and the rename is atomic. A rejected
// candidate stays there for inspection until the next attempt.
const candidateSuffix = ".candidate"

func (l *localTarget) put(ctx context.Context, conf []byte) error {
	cand := l.live + candidateSuffix
	if err := atomicfile.WriteSynced(cand, conf, 0o644); err != nil {
		return fmt.Errorf("nginx: write candidate: %w", err)
	}
	if err := Validate(ctx, l.bin, cand, l.scratch); err != nil {
		return err
	}
	if err := atomicfile.Promote(cand, l.live); err != nil {
		return fmt.Errorf("nginx: put %s live: %w", l.live, err)
	}
	if err := l.reloader.reload(ctx); err != nil {
		return fmt.Errorf("nginx: %s is live but nginx was not reloaded: %w", l.live, err)
	}
	return nil
}

func (l *localTarget) close(ctx context.Context) error { return l.reloader.close(ctx) }

// ValidationError is a candidate nginx -t rejected. Output is nginx's own
// message.
type ValidationError struct {
	File   string
	Output string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("nginx -t rejected the candidate %s, nothing was put live: %s", e.File, e.Output)
}

// Validate runs bin -t on file: -q (errors only), -p scratch (a prefix for
// anything relative, so no live path is touched), -e stderr (the start-up
// log, before the file's own error_log). A rejection is a
// *ValidationError carrying nginx's stderr.
func Validate(ctx context.Context, bin, file, scratch string) error {
	if scratch != "" {
		if err := os.MkdirAll(scratch, 0o755); err != nil {
			return fmt.Errorf("nginx -t: scratch prefix: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := []string{"-t", "-q", "-e", "stderr", "-c", file}
	if scratch != "" {
		args = append([]string{"-p", scratch + "/"}, args...)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("nginx -t: run %s: %w", bin, err)
	}
	return &ValidationError{File: file, Output: cleanOutput(out.String())}
}

// cleanOutput keeps nginx's messages, one line each, without the
// redundant "test failed" trailer.
func cleanOutput(s string) string {
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasSuffix(line, "test failed") {
			continue
		}
		if m := errorLogLine.FindStringSubmatch(line); m != nil {
			line = "[" + m[1] + "] " + m[2]
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return "nginx -t failed without a message"
	}
	return strings.Join(lines, "; ")
}

// pidFileReloader sends SIGHUP to the master whose pid is in the file.
type pidFileReloader string

func (p pidFileReloader) reload(context.Context) error {
	pid, err := readPid(string(p))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal nginx master %d (from %s): %w; is nginx running?", pid, string(p), err)
	}
	return nil
}

func (pidFileReloader) close(context.Context) error { return nil }

// readPid reads a pid file.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("nginx pid file: %w; is nginx running?", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("nginx pid file %s holds %q, not a pid; is nginx running?", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// containerReloader reloads the proxy containers (mode volume: the file
// is already in their shared directory).
type containerReloader struct{ c Containers }

func (r containerReloader) reload(ctx context.Context) error { return r.c.Reload(ctx, nil) }
func (containerReloader) close(context.Context) error        { return nil }

// copyTarget hands the file, with the default certificate, to the proxy
// containers, which validate it inside themselves before it goes live.
type copyTarget struct {
	containers        Containers
	path              string
	certPath, keyPath string
	stateDir          string
}

func (c *copyTarget) put(ctx context.Context, conf []byte) error {
	cert, err := os.ReadFile(filepath.Join(c.stateDir, defaultCertName))
	if err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	key, err := os.ReadFile(filepath.Join(c.stateDir, defaultKeyName))
	if err != nil {
		return fmt.Errorf("nginx: default certificate: %w", err)
	}
	return c.containers.Reload(ctx, map[string][]byte{c.path: conf, c.certPath: cert, c.keyPath: key})
}

func (c *copyTarget) close(context.Context) error { return nil }
