package haproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// runner is where the HAProxy that serves the file runs: Interlock's
// supervised child, or side-loaded containers that share the state
// directory. The driver renders, validates and writes the file the same
// way for both; only starting, reloading and reaching the Runtime API
// differ.
type runner interface {
	// running reports whether HAProxy serves already, so that a change
	// can go over the Runtime API or a reload rather than a start.
	running() bool
	// start starts HAProxy on the file and returns once it serves.
	start(ctx context.Context) error
	// reload makes every instance load the file again, seamlessly, and
	// returns once each serves it.
	reload(ctx context.Context) error
	// instances returns every HAProxy serving the file now: its Runtime
	// API and its server-state file.
	instances(ctx context.Context) ([]instance, error)
	startCount() int64
	close(ctx context.Context) error
}

// instance is one running HAProxy.
type instance struct {
	// id tells instances apart across calls (a container's ID); name says
	// which one, in errors and logs.
	id, name string
	api      runtimeAPI
	state    string
}

// supervised is the supervisor as a runner: one instance, whose admin
// socket and state file are the state directory's.
type supervised struct {
	*supervisor
	state string
}

func (s supervised) instances(context.Context) ([]instance, error) {
	return []instance{{id: "supervised", name: "haproxy", api: s.admin, state: s.state}}, nil
}

// Mode Volume: side-loaded HAProxy containers.

// Target is a running proxy container.
type Target struct {
	ID, Name string
	// Hostname is the container's host name, which its HAProxy reads as
	// the HOSTNAME environment variable (InstanceVar).
	Hostname string
}

// Containers is the Docker side of Mode Volume (docker.Sideload behind
// an adapter): which proxy containers run, and a signal to one. It is
// declared here, in plain types, so this driver never imports Docker code.
type Containers interface {
	Targets(ctx context.Context) ([]Target, error)
	Signal(ctx context.Context, id, signal string) error
}

// containerRunner drives side-loaded containers that mount the state
// directory at the same path and run "haproxy -W -db -f CONFIG" (master-
// worker in the foreground). Each one has its own admin socket and
// server-state file there, named by its host name; a reload is SIGUSR2 to
// its master, which re-executes itself on the file and hands the listening
// sockets to the new worker, as the supervised master does.
type containerRunner struct {
	c   Containers
	dir string
	log *slog.Logger
}

// hostnamePattern is what Docker accepts as a container host name; it is
// checked again here because it becomes part of a socket path.
var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$`)

func adminSocketFor(dir, hostname string) string {
	return filepath.Join(dir, "admin-"+hostname+".sock")
}

func stateFileFor(dir, hostname string) string {
	return filepath.Join(dir, "servers-"+hostname+".state")
}

// running is true: the containers' lifecycle is Docker's. Without any
// container the driver still writes the file, which the first one to start
// reads.
func (r *containerRunner) running() bool { return true }

func (r *containerRunner) start(ctx context.Context) error { return r.reload(ctx) }

func (r *containerRunner) startCount() int64 { return 0 }

func (r *containerRunner) close(context.Context) error { return nil }

func (r *containerRunner) instances(ctx context.Context) ([]instance, error) {
	targets, err := r.c.Targets(ctx)
	if err != nil {
		return nil, fmt.Errorf("proxy containers: %w", err)
	}
	out := make([]instance, 0, len(targets))
	for _, t := range targets {
		if !hostnamePattern.MatchString(t.Hostname) {
			return nil, fmt.Errorf("proxy container %s: host name %q cannot name its admin socket; give it a plain host name (docker run --hostname)", t.Name, t.Hostname)
		}
		sock := adminSocketFor(r.dir, t.Hostname)
		if len(sock) >= 104 {
			return nil, fmt.Errorf("proxy container %s: admin socket path %s is %d bytes, over the 103 a unix socket takes; shorten --state-dir or the container's host name", t.Name, sock, len(sock))
		}
		out = append(out, instance{id: t.ID, name: "proxy container " + t.Name, api: runtimeAPI{socket{sock}}, state: stateFileFor(r.dir, t.Hostname)})
	}
	return out, nil
}

// reload signals every container at once and waits until each answers on
// its admin socket from a new worker.
func (r *containerRunner) reload(ctx context.Context) error {
	targets, err := r.c.Targets(ctx)
	if err != nil {
		return fmt.Errorf("proxy containers: %w", err)
	}
	if len(targets) == 0 {
		r.log.Info("no haproxy container is running; the first one to start reads the file")
		return nil
	}
	ins, err := r.instances(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { errs[i] = r.reloadOne(ctx, t, ins[i].api) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *containerRunner) reloadOne(ctx context.Context, t Target, api runtimeAPI) error {
	// A container that has just started may not serve yet: any pid it
	// answers with after the signal is then a worker on the file.
	before, _ := api.pid(ctx)
	if err := r.c.Signal(ctx, t.ID, "USR2"); err != nil {
		return fmt.Errorf("proxy container %s: reload: %w", t.Name, err)
	}
	var lastErr error
	for {
		pid, err := api.pid(ctx)
		if err == nil && pid != before {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			why := "it still answers from the previous worker (pid " + fmt.Sprint(before) + ")"
			if lastErr != nil {
				why = "its admin socket does not answer: " + lastErr.Error()
			}
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("proxy container %s: reload interrupted: %w", t.Name, context.Cause(ctx))
			}
			return fmt.Errorf("proxy container %s: no new haproxy worker within %v of SIGUSR2: %s; docker logs %s says why (it must run haproxy -W -db -f on the shared file)",
				t.Name, reloadTimeout, strings.TrimSpace(why), t.Name)
		case <-time.After(pollEvery):
		}
	}
}
