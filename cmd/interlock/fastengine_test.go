package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestServeBuiltinHTTPFastDrains: with --builtin-engine fasthttp,
// Shutdown of the proxy's http.Server (what drain does at SIGTERM) waits
// for a request in flight on the fasthttp listener, which gets its answer,
// and serveBuiltinHTTP returns http.ErrServerClosed.
func TestServeBuiltinHTTPFastDrains(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "done")
	}))
	defer be.Close()
	p := builtin.New(builtin.Options{Logger: slog.New(slog.DiscardHandler)})
	defer p.Close()
	tbl := routing.Table{Hosts: []routing.Host{{Name: "app.example", Routes: []routing.Route{{Path: "/",
		Backends: []routing.Backend{{Address: be.Listener.Addr().String()}}}}}}}
	tbl.Normalize()
	if err := p.Apply(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.BuiltinEngine = config.EngineFastHTTP
	srv := serverLimits(cfg, &http.Server{Handler: p})
	served := make(chan error, 1)
	go func() { served <- serveBuiltinHTTP(cfg, p, srv, ln) }()

	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		req.Host = "app.example"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		got <- result{code: res.StatusCode, body: string(b), err: err}
	}()
	time.Sleep(100 * time.Millisecond) // the request is at the backend
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waited := time.Since(began)
	r := <-got
	if r.err != nil || r.code != http.StatusOK || r.body != "done" {
		t.Fatalf("in-flight request: %d %q %v, want 200 done", r.code, r.body, r.err)
	}
	if waited < 100*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before the request in flight was answered", waited)
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serveBuiltinHTTP returned %v, want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serveBuiltinHTTP did not return after Shutdown")
	}
}
