package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock-proxy/interlock/internal/acme"
	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/feed"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The roles of `interlock run` (--role, internal/feed). all is runCommand
// as it always was. controller is runCommand with the feed as its driver
// (feedDriver): no proxy, the table served to the edges. edge is runEdge:
// the built-in proxy and the same controller loop, fed by the feed client
// instead of Docker, one way.

// driverFeed is the driver name runCommand picks for a controller.
const driverFeed = "feed"

// driverFor is the driver runCommand runs for cfg: the feed for a
// controller, else --proxy.
func driverFor(cfg config.Config) string {
	if cfg.Role == config.RoleController {
		return driverFeed
	}
	return cfg.Proxy
}

// feedDriver is a controller's driver: the feed server, and with
// --acme-hosts the controller's ACME side. The controllers obtain the
// certificates of the table's ACME hosts (controllers sharing
// --acme-storage take turns through certmagic's locks there, so a name is
// ordered once), answer the HTTP-01 challenges the edges pass on, and
// send the certificates, keys included, to the edges with the table.
type feedDriver struct {
	*feed.Server
	acme *driverACME // nil: ACME off

	poke func() // asks for a syncACME soon

	mu      sync.Mutex
	names   []string             // the live table's ACME names
	served  map[string]time.Time // since when this controller's edges serve each
	managed []string             // those handed to certmagic (syncACME)
	pems    map[string][]byte    // the exported files of managed names, as last read
	// exported is set by each export of certificate files, which
	// publishCertsLocked then reads again.
	exported *atomic.Bool
}

// feedCertsEvery is how often a controller looks at its ACME names for
// the edges besides each export and each edge report: a failure or
// recovery of an issuance changes what they are told without any file
// changing, and a name's order grace ends.
const feedCertsEvery = 2 * time.Second

// newFeedDriver returns a controller's driver and its close. A
// controller that is not connected to Docker is not followed (503):
// edges move to one that is, or keep their last table.
func newFeedDriver(cfg config.Config, log *slog.Logger, dockerStatus *func() docker.Status) (*feedDriver, func(), error) {
	if cfg.Proxy != config.ProxyBuiltin {
		log.Warn("a controller runs no proxy: --proxy is ignored; its edges serve with the built-in proxy", "proxy", cfg.Proxy)
	}
	if _, err := feed.ServerTLS(cfg.FeedCA, cfg.FeedCert, cfg.FeedKey); err != nil {
		return nil, nil, fmt.Errorf("--feed-cert: %w", err)
	}
	// A look at the certificates is due after an export, after an edge
	// applied a new version (syncACME), and every feedCertsEvery.
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	exported := new(atomic.Bool)
	acmeSide, closeACME, err := newDriverACME(cfg, log, true, func() { exported.Store(true); poke() })
	if err != nil {
		return nil, nil, err
	}
	opts := feed.ServerOptions{Logger: log, Ready: func() error {
		if f := *dockerStatus; f != nil {
			if st := f(); !st.Connected {
				return fmt.Errorf("not connected to docker (%s)", st.LastError)
			}
		}
		return nil
	}}
	d := &feedDriver{acme: acmeSide, poke: poke, served: map[string]time.Time{}, pems: map[string][]byte{}, exported: exported}
	if acmeSide != nil {
		opts.Challenges, opts.OnEdgeApplied = http.HandlerFunc(d.answerChallenge), poke
	}
	d.Server = feed.NewServer(opts)
	stop := make(chan struct{})
	if acmeSide != nil {
		go func() {
			tick := time.NewTicker(feedCertsEvery)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-kick:
				case <-tick.C:
				}
				d.syncACME()
			}
		}()
	}
	return d, func() { close(stop); closeACME() }, nil
}

// answerChallenge answers the HTTP-01 challenges an edge passes on for
// the live table's ACME names: those this controller ordered, and those
// another controller sharing the ACME storage is ordering, maybe before
// this one manages them (its edges may have taken a moment longer).
func (d *feedDriver) answerChallenge(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	d.mu.Lock()
	listed := slices.Contains(d.names, host)
	d.mu.Unlock()
	if !listed || !d.acme.m.AnswerHTTPChallenge(w, r) {
		http.Error(w, "interlock: no ACME challenge pending for this host and token", http.StatusNotFound)
	}
}

// Apply puts t live for the edges, then manages its ACME names (syncACME).
func (d *feedDriver) Apply(ctx context.Context, t routing.Table) error {
	if err := d.Server.Apply(ctx, t); err != nil {
		return err
	}
	if d.acme == nil {
		return nil
	}
	d.mu.Lock()
	d.names = t.ACMENames()
	d.mu.Unlock()
	d.syncACME()
	return nil
}

// acmeOrderGrace is how long a controller waits, once its own edges
// route a new ACME name, before it orders: edges that follow another
// controller learn of the name from it, a few milliseconds later as a
// rule, and the CA may validate through any edge. A validation that finds
// an edge not routing the name yet fails, and certmagic retries only a
// minute later (counting against the CA's failed-validation limit).
const acmeOrderGrace = 3 * time.Second

// syncACME hands certmagic the live table's ACME names that every edge
// connected to this controller serves, acmeOrderGrace after that: the CA
// validates a name through an edge, so an order placed before the edges
// route its challenges fails, and is retried a minute later. A name stays
// managed once it is, while it is in the table.
func (d *feedDriver) syncACME() {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := map[string]bool{}
	for _, n := range d.names {
		want[n] = true
	}
	var managed []string
	for _, n := range d.managed {
		if want[n] {
			managed = append(managed, n)
		}
	}
	for n := range d.served {
		if !want[n] {
			delete(d.served, n)
		}
	}
	now, next := time.Now(), time.Duration(0)
	for _, n := range d.ServedByEdges(d.names) {
		if slices.Contains(managed, n) {
			continue
		}
		since, ok := d.served[n]
		if !ok {
			since = now
			d.served[n] = now
		}
		if wait := acmeOrderGrace - now.Sub(since); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		managed = append(managed, n)
	}
	if next > 0 {
		time.AfterFunc(next, d.poke)
	}
	slices.Sort(managed)
	if !slices.Equal(managed, d.managed) {
		d.managed = managed
		d.acme.Sync(managed)
	}
	d.publishCertsLocked()
}

// publishCertsLocked sends the edges the certificate of every managed
// ACME name that has one (the exported files, which certmagic renews, read
// again after each export),
// and the names whose issuance failed; d.mu is held.
func (d *feedDriver) publishCertsLocked() {
	// The files change only in an export; a name not read yet is looked
	// for every time, until it has one.
	reread := d.exported.Swap(false)
	certs := &feed.Certificates{}
	for _, n := range d.managed {
		err := d.acme.m.Failure(n)
		if err == nil {
			if e := d.acme.m.ExportFailure(n); e != nil {
				err = fmt.Errorf("issued, but not handed to the edges (the controller's state directory): %w", e)
			}
		}
		if err != nil {
			if certs.Failures == nil {
				certs.Failures = map[string]string{}
			}
			certs.Failures[n] = err.Error()
		}
		pem, ok := d.pems[n]
		if reread || !ok {
			var err error
			if pem, err = os.ReadFile(filepath.Join(d.acme.dir, acme.ExportFile(n))); err == nil {
				d.pems[n] = pem
			}
		}
		if pem != nil {
			certs.Certificates = append(certs.Certificates, feed.Certificate{Name: n, PEM: pem})
		}
	}
	for n := range d.pems {
		if !slices.Contains(d.managed, n) {
			delete(d.pems, n)
		}
	}
	_ = d.SetCertificates(certs)
}

// edgesServing is the API's view of the edges serving host.
func (d *feedDriver) edgesServing(host string) []api.EdgeApplied {
	out := []api.EdgeApplied{}
	for _, e := range d.EdgesServing(host) {
		out = append(out, api.EdgeApplied{Edge: e.Name, Remote: e.Remote, Applied: e.Applied, Since: e.Since,
			Version: e.Version, AppliedAt: e.AppliedAt, Current: e.Current, Connected: e.Connected})
	}
	return out
}

// listenFeed binds a controller's feed listener (mutual TLS).
func listenFeed(cfg config.Config, srv *feedDriver, log *slog.Logger) (*http.Server, net.Listener, error) {
	files, err := feed.LoadTLSFiles(cfg.FeedCA, cfg.FeedCert, cfg.FeedKey, log)
	if err != nil {
		return nil, nil, fmt.Errorf("--feed-cert: %w", err)
	}
	tlsCfg := files.ServerConfig()
	ln, err := net.Listen("tcp", cfg.FeedAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("--feed-addr %s: %w", cfg.FeedAddr, err)
	}
	hs := &http.Server{Handler: srv, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)} // handshake failures, at Debug
	hs.RegisterOnShutdown(srv.Close) // else Shutdown waits for the long polls
	log.Info("controller: serving the routing table to edges; no proxy runs here", "feed_addr", ln.Addr().String(),
		"acme", srv.acme != nil)
	return hs, ln, nil
}

// feedUpstream shows an edge's feed as the API's DockerStatus: connected
// while it follows a controller.
type feedUpstream struct{ c *feed.Client }

func (f feedUpstream) Status() docker.Status {
	st := f.c.Status()
	return docker.Status{Connected: st.Following, Since: st.Since, LastError: st.LastError, Host: st.Controller,
		Connects: st.Updates, Disconnects: st.Switches}
}

// feedCertsFile is where an edge keeps the ACME certificates of its
// controllers, in its state directory (mode 0600: the keys are in it).
const feedCertsFile = "feed-certificates.json"

// runEdge is `interlock run --role edge`: the built-in proxy serving the
// tables the controllers feed, through the same controller loop (atomic
// swap, last good table on disk) as the single process. It never talks to
// Docker: config refuses every Docker setting in this role.
func runEdge(ctx context.Context, cfg config.Config, args, environ []string, log *slog.Logger, view *operatorView, logLevel *slog.LevelVar) error {
	tlsFiles, err := feed.LoadTLSFiles(cfg.FeedCA, cfg.FeedCert, cfg.FeedKey, log)
	if err != nil {
		return fmt.Errorf("--feed-cert: %w", err)
	}
	// The ACME certificates the controllers obtained, kept beside the
	// last good table; the CA's challenges go on to the controllers.
	var client *feed.Client
	certs := feed.NewCertStore(filepath.Join(cfg.StateDir, feedCertsFile),
		func(w http.ResponseWriter, r *http.Request) { client.ForwardChallenge(w, r) }, log)
	client, err = feed.NewClient(feed.ClientOptions{Controllers: cfg.ControllerURLs(), Files: tlsFiles, Logger: log,
		Name: cfg.EdgeName, OnCertificates: certs.Update})
	if err != nil {
		return fmt.Errorf("--controllers: %w", err)
	}
	edge, err := newEdge(cfg, log)
	if err != nil {
		return err
	}
	defer edge.close()
	profile, err := tlsProfile(cfg)
	if err != nil {
		return fmt.Errorf("--tls-profile: %w", err)
	}
	if w := profile.Warning(); w != "" {
		log.Warn(w)
	}
	p := builtin.New(edge.options(builtin.Options{Logger: log, Requests: view.requests(),
		CertDir: cfg.CertDir, TLSProfile: profile, HSTSMaxAge: cfg.HSTSMaxAge, Certificates: certs}))
	defer p.Close()

	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
	}
	httpsLn, err := net.Listen("tcp", cfg.HTTPSAddr)
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("--https-addr %s: %w", cfg.HTTPSAddr, err)
	}
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		httpLn.Close()
		httpsLn.Close()
		return fmt.Errorf("--api-addr %s: %w", cfg.APIAddr, err)
	}

	upstream := feedUpstream{client}
	ctl := controller.New(p, discoveryOptions(cfg), controller.Options{Logger: log, Observer: view.observer(), SavedTable: savedTablePath(cfg)})
	view.metrics.WatchEdge(client.Status, func() int { return len(certs.Names()) })
	apiOpts := append(view.apiOptions(nil, ctl, p, nil), api.WithUpstream("a controller"))
	apiHandler := api.New(ctl, upstream, versionString(), log, apiOpts...)
	proxyServer := serverLimits(cfg, &http.Server{Handler: p, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)})
	proxyTLSServer := tlsServer(p, proxyServer)
	apiServer := &http.Server{Handler: apiHandler, ReadHeaderTimeout: 10 * time.Second}
	apiServer.RegisterOnShutdown(apiHandler.CloseStreams)

	log.Info("interlock starting as an edge: no Docker access, the table comes from the controllers", "version", versionString(),
		"controllers", cfg.ControllerURLs(), "http_addr", cfg.HTTPAddr, "https_addr", httpsLn.Addr().String(), "api_addr", apiLn.Addr().String())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := &tasks{cancel: cancel}
	goRun := g.run
	// The controller loop first: it puts the last good table live while
	// the feed has not answered yet.
	goRun("controller", func() error { return ctl.Run(ctx) })
	goRun("feed", func() error { return client.Run(ctx, ctl.UpdateTable) })
	goRun("proxy listener", func() error {
		return whenPrimed(ctx, ctl, httpLn, func() error { return serveBuiltinHTTP(cfg, p, proxyServer, httpLn) })
	})
	goRun("proxy https listener", func() error {
		return whenPrimed(ctx, ctl, httpsLn, func() error { return p.ServeTLS(proxyTLSServer, httpsLn) })
	})
	goRun("certificate watch", func() error { p.WatchCerts(ctx, 0); return nil })
	goRun("api listener", func() error { return apiServer.Serve(apiLn) })
	reopen := reopenOnSIGUSR1(log, edge.log())
	goRun("access log reopen", func() error { return reopen(ctx) })
	reload := &reloader{args: args, environ: environ, running: cfg, level: logLevel, log: log, feed: view.feed}
	goRun("config reload", func() error { return reload.watch(ctx) })

	<-ctx.Done()
	log.Info("interlock stopping")
	_, done := drain(log, apiHandler, proxyServer, apiServer, proxyTLSServer)
	defer done()
	return g.wait()
}
