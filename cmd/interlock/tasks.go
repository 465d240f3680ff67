package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
)

// tasks are the goroutines of one run: the first that fails (other than
// by its server closing) cancels the run, and its error is the run's.
type tasks struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	first  error
}

// run starts f under name.
func (g *tasks) run(name string, f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.mu.Lock()
			if g.first == nil {
				g.first = fmt.Errorf("%s: %w", name, err)
			}
			g.mu.Unlock()
			g.cancel()
		}
	}()
}

// wait waits for every task and returns the first failure.
func (g *tasks) wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}

// tlsServer is the HTTPS side of the built-in proxy p: the same handler
// and the same client timeouts and header limit as plain, certificates
// by SNI from the live table; handshake failures go to plain's log, at
// Debug.
func tlsServer(p *builtin.Proxy, plain *http.Server) *http.Server {
	return &http.Server{
		Handler:           p,
		TLSConfig:         p.TLSConfig(),
		ReadHeaderTimeout: plain.ReadHeaderTimeout,
		ReadTimeout:       plain.ReadTimeout,
		IdleTimeout:       plain.IdleTimeout,
		MaxHeaderBytes:    plain.MaxHeaderBytes,
		ErrorLog:          plain.ErrorLog,
	}
}

// whenPrimed runs serve once ctl has put its saved table live, or found
// none: the listener is bound from the start, so the first connections
// wait in its backlog for a few milliseconds instead of being answered
// from an empty table. If ctx ends first, ln is closed unserved.
func whenPrimed(ctx context.Context, ctl *controller.Controller, ln net.Listener, serve func() error) error {
	select {
	case <-ctl.Primed():
		return serve()
	case <-ctx.Done():
		ln.Close()
		return nil
	}
}
