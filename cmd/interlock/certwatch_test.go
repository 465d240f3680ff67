package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// A rewritten certificate refreshes the driver once it holds still; an
// unchanged directory never does.
func TestWatchLabelCerts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.crt", "cert one")
	write("a.key", "key one")
	time.Sleep(10 * time.Millisecond)
	tb := routing.Table{Hosts: []routing.Host{{Name: "a.example", TLS: &routing.TLS{CertFile: "a.crt", KeyFile: "a.key"}}}}
	applied := time.Now() // the files above are older than the live configuration
	var refreshes atomic.Int32
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		watchLabelCerts(ctx, dir, func() (routing.Table, time.Time) { return tb, applied }, func() { refreshes.Add(1) })
		close(done)
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(3 * certPollInterval)
	if n := refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes without a change", n)
	}
	write("a.crt", "cert two, renewed")
	write("a.key", "key two, renewed")
	testenv.WaitFor(t, 4*certPollInterval+time.Second, "a refresh after the renewal", func() error {
		if refreshes.Load() == 0 {
			return os.ErrNotExist
		}
		return nil
	})
	time.Sleep(3 * certPollInterval)
	if n := refreshes.Load(); n != 1 {
		t.Errorf("%d refreshes for one renewal, want 1", n)
	}
}
