// Package testenv is the integration-test harness: a Docker connection per
// test binary, the backend fixture image, containers and networks that clean
// up after themselves, a relay to cut the Docker connection on demand, and
// polling helpers.
//
// Every object the harness creates carries three labels:
//
//	interlock-test=1                 it belongs to a test
//	interlock-test.run=<RunID>       which Env made it
//	interlock-test.pid=<pid>         which process owns it
//
// Tests remove their objects in t.Cleanup; New sweeps whatever a crashed
// run left behind (objects whose owning process is gone), and Sweep removes
// everything of the current run. Objects of other live processes, such as
// the test binaries of other packages running in parallel, are never touched.
//
// Images are the exception: the backend image is labelled interlock-test=1
// but kept across runs, keyed by the hash of its content; see
// Env.RemoveStaleImages.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/client"
)

// Label keys put on every object the harness creates.
const (
	LabelTest = "interlock-test"
	LabelRun  = "interlock-test.run"
	LabelPID  = "interlock-test.pid"
	// LabelImage marks the fixture images (value "backend"); images are not
	// swept by runs.
	LabelImage = "interlock-test.image"
)

// ErrUnavailable is returned by New when the Docker engine cannot be reached.
// Callers outside CI may skip on it; see Require.
var ErrUnavailable = errors.New("docker engine unavailable")

// Env is a Docker connection for one test binary run. Every object it
// creates carries the labels interlock-test=1, interlock-test.run=RunID and
// interlock-test.pid=<this process> and is removed on cleanup.
//
// An Env is safe for concurrent use by parallel tests.
type Env struct {
	// Client is connected to the engine with the API version negotiated.
	Client *client.Client
	// RunID is a random identifier, unique to this Env, used in labels and in
	// the names of the objects it creates.
	RunID string

	pid     int
	counter atomic.Uint64 // numbers generated object names

	imageMu sync.Mutex
	image   string // backend image tag, once built or found
	// interlockImage is the Interlock image tag, once built (imageMu).
	interlockImage string
}

// New connects to the engine (DOCKER_HOST and the other DOCKER_* variables,
// else the default socket), negotiates the API version, and sweeps stale
// objects: containers, networks and volumes labelled interlock-test=1 whose
// interlock-test.pid is not a live process on this machine.
//
// When the engine cannot be reached the error wraps ErrUnavailable. The
// caller decides what that means: Require skips, or fails when CI=true.
func New(ctx context.Context) (*Env, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("%w: configure client: %w", ErrUnavailable, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w at %s: %w (is dockerd running? set DOCKER_HOST to reach another engine)",
			ErrUnavailable, c.DaemonHost(), err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("make run id: %w", err)
	}
	e := &Env{Client: c, RunID: hex.EncodeToString(b[:]), pid: os.Getpid()}
	if err := e.sweepStale(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return e, nil
}

// Close closes the engine connection. It removes nothing; see Sweep.
func (e *Env) Close() error {
	return e.Client.Close()
}

// Labels returns a fresh map of this run's labels, for objects that other
// harness code creates (services, volumes) so that cleanup finds them too.
func (e *Env) Labels() map[string]string {
	return map[string]string{
		LabelTest: "1",
		LabelRun:  e.RunID,
		LabelPID:  strconv.Itoa(e.pid),
	}
}

// withLabels returns extra merged with the run labels; the run labels win.
func (e *Env) withLabels(extra map[string]string) map[string]string {
	l := maps.Clone(extra)
	if l == nil {
		l = map[string]string{}
	}
	maps.Copy(l, e.Labels())
	return l
}

// name returns "itest-<runid>-<base>", inventing a unique base when base is
// empty.
func (e *Env) name(base, kind string) string {
	if base == "" {
		base = kind + strconv.FormatUint(e.counter.Add(1), 10)
	}
	return "itest-" + e.RunID + "-" + base
}
