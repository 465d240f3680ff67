package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Relay forwards TCP connections from a loopback listener to the Docker
// socket (unix), so a test can cut the engine connection of the code under
// test and restore it. Addr stays the same across Cut and Restore.
//
// A Relay is safe for concurrent use.
type Relay struct {
	target string // unix socket path
	addr   string // host:port, fixed at NewRelay

	mu     sync.Mutex
	ln     net.Listener          // nil while cut
	gen    uint64                // incremented by every Cut
	conns  map[net.Conn]struct{} // both ends of every live relayed connection
	closed bool
	wg     sync.WaitGroup // accept loops and connection handlers
}

// NewRelay listens on 127.0.0.1:0 and forwards every connection to the
// unix socket at target.
func NewRelay(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("relay to %s: listen: %w", target, err)
	}
	r := &Relay{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	r.mu.Lock()
	r.serveLocked(ln)
	r.mu.Unlock()
	return r, nil
}

// Addr returns "tcp://127.0.0.1:PORT", usable as DOCKER_HOST or
// --docker-host.
func (r *Relay) Addr() string {
	return "tcp://" + r.addr
}

// Cut closes the listener and every live relayed connection: new
// connections are refused and open ones (an event stream) break. Cutting a
// cut relay does nothing.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutLocked()
}

func (r *Relay) cutLocked() {
	r.gen++
	if r.ln != nil {
		_ = r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		_ = c.Close()
	}
	clear(r.conns)
}

// Restore listens again on the same address. Restoring a relay that is not
// cut does nothing.
func (r *Relay) Restore() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("relay restore: relay is closed")
	}
	if r.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("relay restore: listen on %s again: %w", r.addr, err)
	}
	r.serveLocked(ln)
	return nil
}

// Close cuts the relay for good and waits for its goroutines to end.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	r.cutLocked()
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Relay) serveLocked(ln net.Listener) {
	r.ln = ln
	gen := r.gen
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cut or Close
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.relay(c, gen)
			}()
		}
	}()
}

// track registers both ends of a connection accepted in generation gen. It
// reports false when a Cut came in between: the caller then drops them.
func (r *Relay) track(gen uint64, cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *Relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

// relay copies bytes both ways between down (the client) and the socket,
// passing on half-closes, until both directions are done.
func (r *Relay) relay(down net.Conn, gen uint64) {
	defer down.Close()
	up, err := net.Dial("unix", r.target)
	if err != nil {
		return // the client sees its connection close
	}
	defer up.Close()
	if !r.track(gen, down, up) {
		return
	}
	defer r.untrack(down, up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, down)
		closeWrite(up)
	}()
	_, _ = io.Copy(down, up)
	closeWrite(down)
	<-done
}

// closeWrite half-closes c when it supports that, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
