package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlock-proxy/interlock/internal/feed"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The collectors below read the status a part already keeps, at scrape
// time, and turn it into constant metrics. Their counters are the parts'
// own: a value never drifts from what /api/status says.

func desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
}

var (
	dockerEvents      = desc("docker", "events_total", "Events received from the Docker engine, by type (container, network, ...) and action (start, die, health_status, ...).", "type", "action")
	dockerResyncs     = desc("docker", "resyncs_total", "Periodic full lists of the engine (on top of the list at every connect).")
	dockerConnects    = desc("docker", "connects_total", "Successful connections (and reconnections) to the Docker engine.")
	dockerDisconnects = desc("docker", "disconnects_total", "Connections to the Docker engine that were lost.")
	dockerConnected   = desc("docker", "connected", "1 while connected to the Docker engine, else 0.")
)

type dockerCollector struct{ src DockerSource }

func (c dockerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dockerEvents, dockerResyncs, dockerConnects, dockerDisconnects, dockerConnected} {
		ch <- d
	}
}

func (c dockerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	for kind, n := range st.EventsByKind {
		typ, action, ok := strings.Cut(kind, "/")
		if !ok {
			action = "unknown"
		}
		ch <- prometheus.MustNewConstMetric(dockerEvents, prometheus.CounterValue, float64(n), typ, action)
	}
	ch <- prometheus.MustNewConstMetric(dockerResyncs, prometheus.CounterValue, float64(st.Resyncs))
	ch <- prometheus.MustNewConstMetric(dockerConnects, prometheus.CounterValue, float64(st.Connects))
	ch <- prometheus.MustNewConstMetric(dockerDisconnects, prometheus.CounterValue, float64(st.Disconnects))
	ch <- prometheus.MustNewConstMetric(dockerConnected, prometheus.GaugeValue, boolValue(st.Connected))
}

var (
	routingHosts     = desc("routing", "hosts", "Hosts in the live routing table.")
	routingRoutes    = desc("routing", "routes", "Routes (host and path prefix) in the live routing table.")
	routingBackends  = desc("routing", "backends", "Backends over all routes of the live routing table.")
	routingLeftOut   = desc("routing", "left_out", "Containers and services left out of the table, by kind and reason (invalid_label, conflict, no_port, no_network).", "kind", "reason")
	lastApplyTime    = desc("controller", "last_apply_timestamp_seconds", "When the last attempt to apply a table started, as a Unix time.")
	lastApplySuccess = desc("controller", "last_apply_success", "1 when the last attempt to apply a table succeeded, 0 when it failed.")
	tableApplied     = desc("controller", "table_applied", "1 once a routing table has been put live.")
)

// leftOutKinds and leftOutReasons are exported at zero even when nothing
// is left out, so that an alert on them has a series to read.
var (
	leftOutKinds   = []string{"container", "service"}
	leftOutReasons = []string{routing.ReasonInvalidLabel, routing.ReasonConflict, routing.ReasonNoPort, routing.ReasonNoNetwork}
)

type controllerCollector struct{ src ControllerSource }

func (c controllerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{routingHosts, routingRoutes, routingBackends, routingLeftOut, lastApplyTime, lastApplySuccess, tableApplied} {
		ch <- d
	}
}

func (c controllerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	routes := 0
	for _, h := range st.Table.Hosts {
		routes += len(h.Routes)
	}
	ch <- prometheus.MustNewConstMetric(routingHosts, prometheus.GaugeValue, float64(len(st.Table.Hosts)))
	ch <- prometheus.MustNewConstMetric(routingRoutes, prometheus.GaugeValue, float64(routes))
	ch <- prometheus.MustNewConstMetric(routingBackends, prometheus.GaugeValue, float64(st.Table.BackendCount()))

	type key struct{ kind, reason string }
	left := make(map[key]int, len(leftOutKinds)*len(leftOutReasons))
	for _, k := range leftOutKinds {
		for _, r := range leftOutReasons {
			left[key{k, r}] = 0
		}
	}
	// One object can have several problems; count it once per reason.
	seen := make(map[[3]string]bool, len(st.Problems))
	for _, p := range st.Problems {
		id := [3]string{p.Kind, p.ID, p.Reason}
		if seen[id] {
			continue
		}
		seen[id] = true
		left[key{p.Kind, p.Reason}]++
	}
	for k, n := range left {
		ch <- prometheus.MustNewConstMetric(routingLeftOut, prometheus.GaugeValue, float64(n), k.kind, k.reason)
	}

	if at := st.LastApply.At; !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastApplyTime, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(lastApplySuccess, prometheus.GaugeValue, boolValue(st.LastApply.Error == ""))
	}
	ch <- prometheus.MustNewConstMetric(tableApplied, prometheus.GaugeValue, boolValue(st.Applied))
}

var (
	backendRequests = desc("builtin", "backend_requests_total", "Attempts the built-in proxy sent to a backend, retries included. Resets when the address leaves the table.", "backend")
	backendFailures = desc("builtin", "backend_failures_total", "Attempts to a backend that failed at the transport level (connect failures, resets, timeouts); HTTP 5xx answers are not failures.", "backend")
	backendInFlight = desc("builtin", "backend_in_flight_requests", "Requests and upgraded tunnels open to a backend now.", "backend")
	backendEjected  = desc("builtin", "backend_ejected", "1 while a backend is passively ejected after a connect failure.", "backend")
	builtinErrors   = desc("builtin", "errors_total", "Answers the built-in proxy gave itself, by kind: no_route (404), no_live_backend (503), backend_unavailable (502), client_canceled.", "kind")
)

// certProblems is every driver's: the built-in proxy's own checks, or the
// same checks for the files nginx and haproxy are given.
var certProblems = desc("", "certificate_problems", "1 for each host whose certificate cannot be served (it gets the default certificate), by reason: missing, unreadable, not_pem, invalid, key_mismatch, expired, not_yet_valid, name_mismatch, outside_cert_dir, acme_off, acme_failed.", "host", "reason")

type builtinCollector struct{ src BuiltinSource }

func (c builtinCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backendRequests, backendFailures, backendInFlight, backendEjected, builtinErrors} {
		ch <- d
	}
}

func (c builtinCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src.Stats() {
		ch <- prometheus.MustNewConstMetric(backendRequests, prometheus.CounterValue, float64(s.Requests), s.Address)
		ch <- prometheus.MustNewConstMetric(backendFailures, prometheus.CounterValue, float64(s.Failures), s.Address)
		ch <- prometheus.MustNewConstMetric(backendInFlight, prometheus.GaugeValue, float64(s.InFlight), s.Address)
		ch <- prometheus.MustNewConstMetric(backendEjected, prometheus.GaugeValue, boolValue(s.Ejected), s.Address)
	}
	e := c.src.Errors()
	for kind, n := range map[string]uint64{
		"no_route":            e.NoRoute,
		"no_live_backend":     e.NoLiveBackend,
		"backend_unavailable": e.BackendUnavailable,
		"client_canceled":     e.ClientCanceled,
	} {
		ch <- prometheus.MustNewConstMetric(builtinErrors, prometheus.CounterValue, float64(n), kind)
	}
}

type certCollector struct{ problems func() []builtin.CertProblem }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certProblems }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	// One series per host and reason: a host with several problems (its
	// certificate misses one alias, and so on) is counted once per reason.
	seen := map[[2]string]bool{}
	for _, p := range c.problems() {
		k := [2]string{p.Host, p.Reason}
		if !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(certProblems, prometheus.GaugeValue, 1, p.Host, p.Reason)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var (
	feedVersions    = desc("feed", "versions_total", "Tables a controller made available to its edges.")
	feedSent        = desc("feed", "snapshots_sent_total", "Snapshots sent to edges.")
	feedSentBytes   = desc("feed", "sent_bytes_total", "Bytes of the snapshots sent to edges, as sent (gzipped for edges that accept it).")
	feedNotModified = desc("feed", "not_modified_total", "Long polls of edges that ended without a change (304).")
	feedWaiting     = desc("feed", "waiting_edges", "Long polls of edges held now, waiting for a change.")
	feedSnapshot    = desc("feed", "snapshot_bytes", "Size of the live snapshot: what one change costs per edge, by encoding (json, gzip).", "encoding")
	feedEdges       = desc("feed", "edges_connected", "Edges following this controller now.")
	feedEdgesLive   = desc("feed", "edges_current", "Edges following this controller that have applied its live version.")
)

type feedCollector struct{ stats func() feed.ServerStats }

func (c feedCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{feedVersions, feedSent, feedSentBytes, feedNotModified, feedWaiting, feedSnapshot, feedEdges, feedEdgesLive} {
		ch <- d
	}
}

func (c feedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(feedVersions, prometheus.CounterValue, float64(st.Versions))
	ch <- prometheus.MustNewConstMetric(feedSent, prometheus.CounterValue, float64(st.Sent))
	ch <- prometheus.MustNewConstMetric(feedSentBytes, prometheus.CounterValue, float64(st.SentBytes))
	ch <- prometheus.MustNewConstMetric(feedNotModified, prometheus.CounterValue, float64(st.NotModified))
	ch <- prometheus.MustNewConstMetric(feedWaiting, prometheus.GaugeValue, float64(st.Waiting))
	ch <- prometheus.MustNewConstMetric(feedSnapshot, prometheus.GaugeValue, float64(st.Size), "json")
	ch <- prometheus.MustNewConstMetric(feedSnapshot, prometheus.GaugeValue, float64(st.GzipSize), "gzip")
	ch <- prometheus.MustNewConstMetric(feedEdges, prometheus.GaugeValue, float64(st.EdgesConnected))
	ch <- prometheus.MustNewConstMetric(feedEdgesLive, prometheus.GaugeValue, float64(st.EdgesCurrent))
}

// An edge's side of the feed (--role edge): in place of the Docker
// connection's metrics, which it has none of.
var (
	edgeFollowing = desc("edge", "following", "1 while this edge follows a controller, 0 while it serves its last table with none reachable.")
	edgeUpdates   = desc("edge", "updates_total", "Tables received from the controllers and applied.")
	edgeSwitches  = desc("edge", "controller_switches_total", "Moves to another controller after a failure.")
	edgeRefused   = desc("edge", "refused_snapshots_total", "Snapshots refused (corrupt, truncated, too large, another protocol); the table in use was kept.")
	edgeCerts     = desc("edge", "acme_certificates", "ACME certificates the controllers sent that this edge holds.")
)

type edgeCollector struct {
	status func() feed.Status
	certs  func() int
}

func (c edgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{edgeFollowing, edgeUpdates, edgeSwitches, edgeRefused, edgeCerts} {
		ch <- d
	}
}

func (c edgeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	following := 0.0
	if st.Following {
		following = 1
	}
	ch <- prometheus.MustNewConstMetric(edgeFollowing, prometheus.GaugeValue, following)
	ch <- prometheus.MustNewConstMetric(edgeUpdates, prometheus.CounterValue, float64(st.Updates))
	ch <- prometheus.MustNewConstMetric(edgeSwitches, prometheus.CounterValue, float64(st.Switches))
	ch <- prometheus.MustNewConstMetric(edgeRefused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(edgeCerts, prometheus.GaugeValue, float64(c.certs()))
}
