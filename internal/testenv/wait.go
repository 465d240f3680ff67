package testenv

import (
	"net"
	"sync"
	"testing"
	"time"
)

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 50 * time.Millisecond

// WaitFor calls cond every 50ms until it returns nil. When timeout passes
// first (or the test's context ends while it waits), it fails the test with
// what and the last error cond returned.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	// The test's context ends just before its cleanups run: a WaitFor
	// called from one (removing a network a container still holds) waits
	// out its timeout instead of failing at the first try.
	ended := t.Context().Done()
	if t.Context().Err() != nil {
		ended = nil
	}
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		case <-ended:
			t.Fatalf("test ended while waiting for %s: %v", what, err)
		case <-tick.C:
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that the kernel just handed out
// and that is free again. Another process may still take it before the
// caller binds it; prefer listening on :0 directly where the code allows.
//
// The kernel may hand the same port out again once it is closed, so two
// calls in a row can agree: a port this process returned before is never
// returned again (a test taking --http-addr and --https-addr would
// otherwise, now and then, get one port for both).
func FreePort(t testing.TB) int {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !freePorts.given[port] {
			freePorts.given[port] = true
			return port
		}
	}
	t.Fatal("free port: the kernel keeps handing out ports this process used already")
	return 0
}

// freePorts are the ports FreePort returned.
var freePorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}
