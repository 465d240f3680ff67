package builtin

import (
	"sync/atomic"
	"time"
)

// backendState is what the proxy knows about one backend address. It is
// keyed by address, not by table, so that in-flight counts, ejections and
// counters survive table swaps (the habit of Caddy's reverseproxy/hosts.go):
// a container that stays in the table keeps its state across every Apply.
// Apply drops the state of addresses that left the table; requests still in
// flight on an older table keep their pointer and simply update an orphan.
//
// All fields are updated atomically; the zero value is a live, idle backend.
type backendState struct {
	addr string

	inFlight atomic.Int64  // requests (and upgraded tunnels) open right now
	requests atomic.Uint64 // attempts sent to this backend, retries included
	failures atomic.Uint64 // attempts that failed at the transport level

	// ejectedUntil is a clock reading (see clock) before which the backend
	// is not picked. Zero, or any reading in the past, means live.
	ejectedUntil atomic.Int64
}

// begin records the start of one attempt.
func (s *backendState) begin() {
	s.requests.Add(1)
	s.inFlight.Add(1)
}

// end records that an attempt (or the response body or tunnel it opened) is
// done.
func (s *backendState) end() {
	s.inFlight.Add(-1)
}

// live reports whether the backend may be picked at clock reading now.
func (s *backendState) live(now int64) bool {
	return now >= s.ejectedUntil.Load()
}

// eject takes the backend out of rotation for d from now. It reports whether
// this call turned a live backend into an ejected one, so the caller logs
// each ejection once rather than once per failed request. d <= 0 disables
// ejection.
func (s *backendState) eject(now int64, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	old := s.ejectedUntil.Swap(now + int64(d))
	return old <= now
}

// clock reads monotonic time as nanoseconds since the proxy was created, so
// ejection deadlines fit in an atomic int64 and wall-clock jumps neither
// extend nor cut an ejection. The zero value is not usable; see newClock.
type clock struct{ epoch time.Time }

func newClock() clock { return clock{epoch: time.Now()} }

func (c clock) now() int64 { return int64(time.Since(c.epoch)) }
