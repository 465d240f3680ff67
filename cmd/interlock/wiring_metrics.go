package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/metrics"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/proxy/haproxy"
	"github.com/interlock-proxy/interlock/internal/proxy/nginx"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// operatorView is what an operator sees of a running Interlock: Prometheus
// metrics at /metrics, the feed of changes at /api/events, and the
// dashboard at / that shows both. run.go creates it first, hands its hooks
// to the driver and the controller, and its options to the API.
type operatorView struct {
	metrics *metrics.Metrics
	feed    *api.Feed
	log     *slog.Logger
}

func newOperatorView(cfg config.Config, version string, log *slog.Logger) *operatorView {
	return &operatorView{
		metrics: metrics.New(metrics.Options{
			Version: version, Driver: cfg.Proxy, Reloads: cfg.Proxy != config.ProxyBuiltin, Logger: log,
		}),
		feed: api.NewFeed(),
		log:  log,
	}
}

// requests is the built-in proxy's request hook (builtin.Options.Requests).
func (v *operatorView) requests() builtin.RequestMetrics { return v.metrics.Requests() }

// observer is the controller's Observer: metrics and feed both watch it.
func (v *operatorView) observer() controller.Observer { return observers{v.metrics, v.feed} }

// observeReloads wraps a driver that reloads a side-loaded proxy so that
// each reload is counted and timed; other drivers are returned as they
// are.
func (v *operatorView) observeReloads(d controller.Driver) controller.Driver {
	switch n := d.(type) {
	case *nginx.Driver:
		return reloadObserved{Driver: d, m: v.metrics, log: v.log, counts: func() (int64, int64) {
			s := n.Stats()
			return s.Reloads, s.Failures
		}}
	case *haproxy.Driver:
		// Reloads only: an apply over the Runtime API (backends added,
		// drained, moved) changes HAProxy without one, and is no reload.
		// The first start counts, as nginx's first configuration does.
		return cheapReloadObserved{reloadObserved{Driver: d, m: v.metrics, log: v.log, counts: func() (int64, int64) {
			s := n.Stats()
			return s.Reloads + s.Starts, s.Failures
		}}, n}
	}
	return d
}

// cheapReloadObserved keeps a driver's controller.CheapApplier visible
// through the wrapper.
type cheapReloadObserved struct {
	reloadObserved
	controller.CheapApplier
}

// apiOptions starts reading the running parts at scrape time and returns
// the API's options: /metrics, the feed, reload counts and, for the
// built-in proxy, backend health. proxy is what serves --http-addr (nil
// for a side-loaded proxy).
func (v *operatorView) apiOptions(source metrics.DockerSource, ctl metrics.ControllerSource, proxy http.Handler, certs func() []builtin.CertProblem) []api.Option {
	if source != nil { // an edge has no Docker connection (WatchEdge)
		v.metrics.WatchDocker(source)
	}
	v.metrics.WatchController(ctl)
	opts := []api.Option{
		api.WithMetrics(v.metrics.Handler()),
		api.WithFeed(v.feed),
		api.WithReloads(v.metrics.Reloads),
	}
	if p, ok := proxy.(*builtin.Proxy); ok {
		certs = p.CertProblems
	}
	if certs != nil {
		v.metrics.WatchCertProblems(certs)
		opts = append(opts, api.WithCertProblems(func() []api.CertProblem {
			problems := certs()
			out := make([]api.CertProblem, len(problems))
			for i, c := range problems {
				out[i] = api.CertProblem{Host: c.Host, Path: c.Path, Reason: c.Reason, Message: c.Message}
			}
			return out
		}))
	}
	if p, ok := proxy.(*builtin.Proxy); ok {
		v.metrics.WatchBuiltin(p)
		opts = append(opts, api.WithBackendHealth(func() []api.BackendHealth {
			stats := p.Stats()
			out := make([]api.BackendHealth, len(stats))
			for i, s := range stats {
				out[i] = api.BackendHealth{Address: s.Address, Requests: s.Requests, Failures: s.Failures, InFlight: s.InFlight, Ejected: s.Ejected}
			}
			return out
		}))
	}
	return opts
}

// run follows the Docker connection for the feed until ctx ends.
func (v *operatorView) run(ctx context.Context, source api.DockerStatus) error {
	v.feed.WatchDocker(ctx, source, 250*time.Millisecond)
	return nil
}

// observers hands every observation to each of its members in turn.
type observers []controller.Observer

func (o observers) Applied(driver string, took time.Duration, err error, converged time.Duration) {
	for _, x := range o {
		x.Applied(driver, took, err, converged)
	}
}

func (o observers) Built(t routing.Table, problems []routing.Problem) {
	for _, x := range o {
		x.Built(t, problems)
	}
}

// reloadObserved is a driver whose applies that reload the proxy (or try
// to, and fail) are recorded as reloads. counts returns the driver's own
// reload and failure counters; an apply whose bytes were unchanged moves
// neither and is no reload.
type reloadObserved struct {
	controller.Driver
	m      *metrics.Metrics
	log    *slog.Logger
	counts func() (reloads, failures int64)
}

func (d reloadObserved) Apply(ctx context.Context, t routing.Table) error {
	return d.observe(func() error { return d.Driver.Apply(ctx, t) })
}

// Refresh keeps the driver's controller.Refresher visible through the
// wrapper (both template drivers have one), and records its reload.
func (d reloadObserved) Refresh(ctx context.Context) error {
	r, ok := d.Driver.(controller.Refresher)
	if !ok {
		return nil
	}
	return d.observe(func() error { return r.Refresh(ctx) })
}

// observe runs an apply or refresh and records the reload it made.
func (d reloadObserved) observe(run func() error) error {
	r0, f0 := d.counts()
	start := time.Now()
	err := run()
	took := time.Since(start)
	r1, f1 := d.counts()
	switch {
	case r1 > r0:
		d.m.Reloaded(d.Name(), took, nil)
		// The controller logs failures, and each host and backend change.
		d.log.Info("proxy reloaded", "driver", d.Name(), "took", took.Round(time.Microsecond), "reloads", r1)
	case f1 > f0:
		d.m.Reloaded(d.Name(), took, err)
	}
	return err
}
