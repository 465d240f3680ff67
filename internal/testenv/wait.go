package testenv

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 50 * time.Millisecond

// WaitFor calls cond every 50ms until it returns nil. When timeout passes
// first (or the test's context ends), it fails the test with what and the
// last error cond returned.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s: %v", what, err)
		case <-tick.C:
		}
	}
}

// FreePort returns a TCP port that is free on 127.0.0.1 now. Another
// process may still take it before the caller binds it; prefer listening
// on :0 directly where the code allows.
//
// It is drawn at random below the kernel's ephemeral range (32768-60999
// here), where ports for :0 listeners and the local ends of outgoing
// connections come from: a port the kernel just handed out, closed, is
// soon handed out again, to the many connections and :0 listeners of the
// test packages running in parallel (seen as nginx's "bind() ... Address
// already in use"). A port this process returned before is never returned
// again.
func FreePort(t testing.TB) int {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	for range 1000 {
		port := freePortMin + rand.IntN(freePortMax-freePortMin+1)
		if freePorts.given[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // taken
		}
		ln.Close()
		freePorts.given[port] = true
		return port
	}
	t.Fatal("free port: no free port found below the ephemeral range")
	return 0
}

// The range FreePort draws from: above the well-known and most registered
// services' ports, below the ephemeral range.
const freePortMin, freePortMax = 20000, 32000

// freePorts are the ports FreePort returned.
var freePorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}
