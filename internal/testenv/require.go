package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// shared is the process-wide Env behind Require and Main. It is package
// state on purpose: one engine connection, one stale sweep and one image
// build per test binary, however many tests ask for it.
var shared struct {
	once sync.Once
	env  *Env
	err  error
}

// Require returns the test binary's shared Env, connecting on first use.
// When Docker is unreachable it skips the test, or fails it when CI=true
// (CI must never pass by skipping). Any other setup error fails the test.
func Require(tb testing.TB) *Env {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.env, shared.err = New(ctx)
	})
	if shared.err != nil {
		if errors.Is(shared.err, ErrUnavailable) && os.Getenv("CI") != "true" {
			tb.Skipf("skipping: %v", shared.err)
		}
		tb.Fatal(shared.err)
	}
	return shared.env
}

// Main runs the tests, then sweeps every object of the shared Env's run, so
// nothing a test forgot outlives the binary. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// It returns m.Run's exit code, or 1 when the sweep fails.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.env == nil { // Require never connected, or ran in no test
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := shared.env.Sweep(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		if code == 0 {
			code = 1
		}
	}
	_ = shared.env.Close()
	return code
}
