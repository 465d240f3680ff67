// Package metrics exports Interlock's Prometheus metrics: what the Docker
// source, the controller and the built-in proxy know, named
// interlock_<subsystem>_<name>_<unit>, counters ending in _total, durations
// in seconds. See README.md for the list.
//
// Most series are read from the status the parts already keep, at scrape
// time (collectors.go): nothing is counted twice and nothing can drift. The
// rest is fed by hooks: Metrics is a controller.Observer (applies,
// convergence), a builtin.RequestMetrics (requests by host and status, see
// requests.go), and Reloaded is there for drivers that reload a side-loaded
// proxy.
package metrics

import (
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/feed"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

const namespace = "interlock"

// Label values of "result".
const (
	resultSuccess = "success"
	resultError   = "error"
)

// Bucket bounds, in seconds. An apply of the built-in proxy is a pointer
// swap (microseconds); a reload of a side-loaded proxy takes tenths of a
// second; convergence adds the debounce; a proxied request on a LAN takes
// about a millisecond.
var (
	applyBuckets       = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	convergenceBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	requestBuckets     = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
)

// Options configure Metrics. The zero value is usable.
type Options struct {
	// Version is the build's version, exported as interlock_build_info.
	Version string
	// Driver is the name of the running driver; its apply series exist
	// from the start (at zero), so that rate() and alerts work before the
	// first failure.
	Driver string
	// Reloads says the driver reloads a side-loaded proxy (nginx,
	// haproxy): its reload series then exist from the start too.
	Reloads bool
	// RetainHosts is how long the request series of a host that left the
	// table are kept, so that a host whose only container restarts keeps
	// its counters. Zero means 5 minutes.
	RetainHosts time.Duration
	// Logger receives errors of the /metrics handler. Nil: slog.Default().
	Logger *slog.Logger
}

// Metrics owns a Prometheus registry with every Interlock metric. Create it
// with New; it is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	applies        *prometheus.CounterVec
	applyDuration  *prometheus.HistogramVec
	convergence    *prometheus.HistogramVec
	builds         prometheus.Counter
	reloads        *prometheus.CounterVec
	reloadDuration *prometheus.HistogramVec
	reloadCount    atomic.Int64

	requests *requestMetrics
}

// New returns Metrics with its own registry, holding the Go runtime and
// process collectors, interlock_build_info and the hook-fed series. Sources
// read at scrape time are added with WatchDocker, WatchController and
// WatchBuiltin.
func New(opts Options) *Metrics {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "controller", Name: "applies_total",
			Help: "Attempts to put a changed routing table live, by driver and result (success or error).",
		}, []string{"driver", "result"}),
		applyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "controller", Name: "apply_duration_seconds",
			Help:    "Time the driver took to put a table live (render, validate, reload or swap), failed attempts included.",
			Buckets: applyBuckets,
		}, []string{"driver"}),
		convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "controller", Name: "convergence_seconds",
			Help:    "Time from the Docker change (the snapshot that carried it) to the table that reflects it being live.",
			Buckets: convergenceBuckets,
		}, []string{"driver"}),
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "controller", Name: "builds_total",
			Help: "Routing tables built from Docker snapshots, applied or not (an unchanged table is not applied).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "proxy", Name: "reloads_total",
			Help: "Reloads of a side-loaded proxy (nginx, haproxy), by driver and result. The built-in proxy never reloads.",
		}, []string{"driver", "result"}),
		reloadDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "proxy", Name: "reload_duration_seconds",
			Help:    "Time a reload of a side-loaded proxy took.",
			Buckets: applyBuckets,
		}, []string{"driver"}),
		requests: newRequestMetrics(opts.RetainHosts, time.Now),
	}
	if d := opts.Driver; d != "" {
		for _, r := range []string{resultSuccess, resultError} {
			m.applies.WithLabelValues(d, r)
			if opts.Reloads {
				m.reloads.WithLabelValues(d, r)
			}
		}
		m.applyDuration.WithLabelValues(d)
		m.convergence.WithLabelValues(d)
		if opts.Reloads {
			m.reloadDuration.WithLabelValues(d)
		}
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels name the running build.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(opts.Version, runtime.Version()).Set(1)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.applies, m.applyDuration, m.convergence, m.builds,
		m.reloads, m.reloadDuration,
		m.requests.total, m.requests.duration,
	)
	return m
}

// Registry is the registry every metric is in, for tests and for callers
// that add their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it), for GET /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{m.log},
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg,
		EnableOpenMetrics: true,
	})
}

// WatchDocker exports the engine connection's counters (docker.Status),
// read at every scrape.
func (m *Metrics) WatchDocker(d DockerSource) { m.reg.MustRegister(dockerCollector{d}) }

// WatchController exports the live table's size and what was left out
// (controller.Status), read at every scrape.
func (m *Metrics) WatchController(c ControllerSource) {
	m.reg.MustRegister(controllerCollector{c})
}

// WatchBuiltin exports the built-in proxy's per-backend and error
// counters, read at every scrape.
func (m *Metrics) WatchBuiltin(p BuiltinSource) { m.reg.MustRegister(builtinCollector{p}) }

// WatchFeed exports a controller's feed counters (--role controller),
// read at every scrape.
func (m *Metrics) WatchFeed(stats func() feed.ServerStats) { m.reg.MustRegister(feedCollector{stats}) }

// WatchEdge exports an edge's feed client (interlock_edge_*), read at
// every scrape, with the number of ACME certificates it holds.
func (m *Metrics) WatchEdge(status func() feed.Status, certs func() int) {
	m.reg.MustRegister(edgeCollector{status, certs})
}

// WatchCertProblems exports the hosts whose certificate is not served,
// read at every scrape: the built-in proxy's, or nginx's and haproxy's.
func (m *Metrics) WatchCertProblems(problems func() []builtin.CertProblem) {
	m.reg.MustRegister(certCollector{problems})
}

// Requests is the hook for builtin.Options.Requests.
func (m *Metrics) Requests() builtin.RequestMetrics { return m.requests }

// DockerSource is what WatchDocker reads; *docker.Source provides it.
type DockerSource interface{ Status() docker.Status }

// ControllerSource is what WatchController reads; *controller.Controller
// provides it.
type ControllerSource interface{ Status() controller.Status }

// BuiltinSource is what WatchBuiltin reads; *builtin.Proxy provides it.
type BuiltinSource interface {
	Stats() []builtin.BackendStats
	Errors() builtin.ErrorStats
}

var _ controller.Observer = (*Metrics)(nil)

// Applied implements controller.Observer.
func (m *Metrics) Applied(driver string, took time.Duration, err error, converged time.Duration) {
	m.applyDuration.WithLabelValues(driver).Observe(took.Seconds())
	if err != nil {
		m.applies.WithLabelValues(driver, resultError).Inc()
		return
	}
	m.applies.WithLabelValues(driver, resultSuccess).Inc()
	m.convergence.WithLabelValues(driver).Observe(converged.Seconds())
}

// Built implements controller.Observer.
func (m *Metrics) Built(routing.Table, []routing.Problem) { m.builds.Inc() }

// Reloaded records one reload of a side-loaded proxy: how long it took and
// its error. Drivers that reload (nginx, haproxy) call it; it is safe for
// concurrent use.
func (m *Metrics) Reloaded(driver string, took time.Duration, err error) {
	result := resultSuccess
	if err != nil {
		result = resultError
	}
	m.reloads.WithLabelValues(driver, result).Inc()
	m.reloadDuration.WithLabelValues(driver).Observe(took.Seconds())
	if err == nil {
		m.reloadCount.Add(1)
	}
}

// Reloads is the number of successful reloads recorded by Reloaded: what
// the dashboard shows next to the last apply.
func (m *Metrics) Reloads() int64 { return m.reloadCount.Load() }

// slogPrinter adapts a slog.Logger to promhttp.Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("metrics: serve /metrics", "error", slogJoin(v))
}

func slogJoin(v []any) any {
	if len(v) == 1 {
		return v[0]
	}
	return v
}
