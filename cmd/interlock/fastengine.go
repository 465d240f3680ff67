package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
)

// serveBuiltinHTTP serves the built-in proxy p on the plain HTTP listener ln
// with the engine --builtin-engine names, until srv is shut down; it returns
// http.ErrServerClosed then. nethttp: p.Serve(srv, ln), as always.
// fasthttp: a FastServer with srv's client timeouts and header limit
// (serverLimits), and srv serves only a gate listener, so that drain's
// srv.Shutdown(ctx) still stops the listener and waits for the requests in
// flight: Shutdown closes the gate, and the gate's Accept returns only once
// the FastServer has drained, within drainGrace, or sooner when a second
// signal cuts the drain short (cutFastDrain).
func serveBuiltinHTTP(cfg config.Config, p *builtin.Proxy, srv *http.Server, ln net.Listener) error {
	if cfg.BuiltinEngine != config.EngineFastHTTP {
		return p.Serve(srv, ln)
	}
	fs := p.NewFastServer(builtin.FastOptions{
		ReadHeaderTimeout: srv.ReadHeaderTimeout,
		ReadTimeout:       srv.ReadTimeout,
		IdleTimeout:       srv.IdleTimeout,
		MaxHeaderBytes:    srv.MaxHeaderBytes,
	})
	cut, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	fastDrains.Store(srv, cancelDrain)
	defer fastDrains.Delete(srv)
	gate := &drainGate{addr: ln.Addr(), closed: make(chan struct{}), shutdown: fs.Shutdown, cut: cut}
	fastErr := make(chan error, 1)
	go func() { fastErr <- fs.Serve(ln) }()
	gateErr := make(chan error, 1)
	go func() { gateErr <- srv.Serve(gate) }()
	select {
	case err := <-fastErr:
		if !errors.Is(err, http.ErrServerClosed) {
			// The listener failed: the caller cancels the run, whose
			// drain closes the gate.
			go func() { <-gateErr }()
			return err
		}
		return <-gateErr // drained
	case err := <-gateErr:
		<-fastErr
		return err
	}
}

// drainGate is a listener that never yields a connection. Closing it (what
// http.Server.Shutdown does with its listeners) shuts the FastServer down,
// and Accept returns only once that is done: Shutdown waits for Serve to
// return before it does.
type drainGate struct {
	addr     net.Addr
	closed   chan struct{}
	once     sync.Once
	shutdown func(context.Context) error
	cut      context.Context // done when the drain is cut short
}

// fastDrains holds, by the http.Server of each plain HTTP listener served
// by fasthttp, the cancel that cuts its drain short (cutFastDrain). The
// gate cannot hear it from http.Server.Close: Serve closes a listener
// once.
var fastDrains sync.Map // *http.Server -> context.CancelFunc

// cutFastDrain stops waiting for srv's fasthttp requests in flight, when
// fasthttp serves it: drain's answer to a second signal.
func cutFastDrain(srv *http.Server) {
	if cancel, ok := fastDrains.Load(srv); ok {
		cancel.(context.CancelFunc)()
	}
}

func (g *drainGate) Accept() (net.Conn, error) {
	<-g.closed
	ctx, cancel := context.WithTimeout(g.cut, drainGrace)
	defer cancel()
	_ = g.shutdown(ctx)
	return nil, net.ErrClosed
}

func (g *drainGate) Close() error {
	g.once.Do(func() { close(g.closed) })
	return nil
}

func (g *drainGate) Addr() net.Addr { return g.addr }
