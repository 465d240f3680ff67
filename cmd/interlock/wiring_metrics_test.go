package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/interlock-proxy/interlock/internal/metrics"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// fakeReloader is a driver that reloads when told to, like nginx does when
// the rendered bytes changed.
type fakeReloader struct {
	reloads, failures int64
	next              string // "reload", "same" or "fail"
}

func (f *fakeReloader) Name() string { return "nginx" }

func (f *fakeReloader) Apply(context.Context, routing.Table) error {
	switch f.next {
	case "reload":
		f.reloads++
	case "fail":
		f.failures++
		return errors.New("nginx -t failed")
	}
	return nil
}

func TestReloadObserved(t *testing.T) {
	m := metrics.New(metrics.Options{Driver: "nginx", Reloads: true, Logger: slog.New(slog.DiscardHandler)})
	f := &fakeReloader{}
	d := reloadObserved{Driver: f, m: m, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		counts: func() (int64, int64) { return f.reloads, f.failures }}
	for _, next := range []string{"reload", "same", "reload", "fail"} {
		f.next = next
		_ = d.Apply(context.Background(), routing.Table{})
	}
	want := `
# HELP interlock_proxy_reloads_total Reloads of a side-loaded proxy (nginx, haproxy), by driver and result. The built-in proxy never reloads.
# TYPE interlock_proxy_reloads_total counter
interlock_proxy_reloads_total{driver="nginx",result="error"} 1
interlock_proxy_reloads_total{driver="nginx",result="success"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "interlock_proxy_reloads_total"); err != nil {
		t.Error(err)
	}
	if m.Reloads() != 2 {
		t.Errorf("Reloads() = %d, want 2", m.Reloads())
	}
	if d.Name() != "nginx" {
		t.Errorf("Name() = %q through the wrapper", d.Name())
	}
}
