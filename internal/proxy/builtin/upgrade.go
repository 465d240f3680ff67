package builtin

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// tunnelSet tracks the backend side of upgraded connections (WebSocket and
// any other 101 Switching Protocols), the way Caddy's streaming.go tracks
// hijacked ones, so that Close (and a later drain) can end them. ReverseProxy
// copies bytes between client and backend until either side closes; closing
// the backend side here ends that copy and closes the client side too.
//
// A tunnel belongs to no table: Apply never waits for one, and a tunnel to a
// backend that left the table lives on until a side closes it. The zero
// value is an empty, open set.
type tunnelSet struct {
	mu     sync.Mutex
	closed bool
	open   map[*tunnel]struct{}
}

// track registers rwc, the body of a 101 response, and returns the tunnel to
// hand to ReverseProxy in its place. After closeAll, a new tunnel is closed
// at once: a proxy that is shutting down opens no new long-lived streams.
func (s *tunnelSet) track(rwc io.ReadWriteCloser, state *backendState) *tunnel {
	t := &tunnel{ReadWriteCloser: rwc, set: s, state: state}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		if s.open == nil {
			s.open = make(map[*tunnel]struct{})
		}
		s.open[t] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		t.Close()
	}
	return t
}

func (s *tunnelSet) remove(t *tunnel) {
	s.mu.Lock()
	delete(s.open, t)
	s.mu.Unlock()
}

// len is the number of open tunnels.
func (s *tunnelSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// closeAll closes every open tunnel and every later one. Closing happens
// outside the lock: Close removes the tunnel from the set.
func (s *tunnelSet) closeAll() error {
	s.mu.Lock()
	s.closed = true
	open := make([]*tunnel, 0, len(s.open))
	for t := range s.open {
		open = append(open, t)
	}
	s.mu.Unlock()
	var errs []error
	for _, t := range open {
		if err := t.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tunnel is the backend side of one upgraded connection. Close is safe to
// call more than once and from several goroutines (ReverseProxy closes it
// when the copy ends or the request is cancelled, closeAll on shutdown); only
// the first call closes the connection and ends the backend's in-flight
// count.
type tunnel struct {
	io.ReadWriteCloser
	set    *tunnelSet
	state  *backendState
	closed atomic.Bool
}

func (t *tunnel) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := t.ReadWriteCloser.Close()
	t.set.remove(t)
	t.state.end()
	return err
}
