package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/moby/moby/client"
)

// loadConfig loads the configuration of run and render; -h prints the
// flags to help.
func loadConfig(args, environ []string, help io.Writer) (config.Config, error) {
	cfg, err := config.Load(args, environ)
	if errors.Is(err, flag.ErrHelp) {
		d := config.Default()
		fs := d.FlagSet()
		fs.SetOutput(help)
		fs.Usage()
		return cfg, errUsage
	}
	return cfg, err
}

func endpoint(cfg config.Config) docker.Endpoint {
	return docker.Endpoint{Host: cfg.DockerHosts()[0], CA: cfg.TLSCA, Cert: cfg.TLSCert, Key: cfg.TLSKey, Verify: cfg.TLSVerify}
}

// failover are clients for the managers after the first in --docker-host.
func failover(cfg config.Config) ([]*client.Client, error) {
	var out []*client.Client
	for _, h := range cfg.DockerHosts()[1:] {
		e := endpoint(cfg)
		e.Host = h
		cli, err := docker.NewClient(e)
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			return nil, err
		}
		out = append(out, cli)
	}
	return out, nil
}

func runCommand(ctx context.Context, args, environ []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, environ, stderr)
	if err != nil {
		return err
	}
	log, logLevel := newLeveledLogger(cfg, stderr)
	if w := socketWarning(cfg, inContainer()); w != "" {
		log.Warn(w)
	}
	view := newOperatorView(cfg, versionString(), log)
	if cfg.Role == config.RoleEdge {
		return runEdge(ctx, cfg, args, environ, log, view, logLevel) // roles.go: no Docker at all
	}

	cli, err := docker.NewClient(endpoint(cfg))
	if err != nil {
		return err
	}
	defer cli.Close()
	others, err := failover(cfg)
	if err != nil {
		return err
	}
	for _, c := range others {
		defer c.Close()
	}
	// The side-loaded proxy containers' engine, when it is not the watched
	// one (--proxy-docker-host, sideload.go): found, fed and signalled
	// through pcli, watched by a source of their own.
	sideCli := cli
	var pcli *client.Client
	if e, ok := proxyEndpoint(cfg); ok && proxyContainerTargets(cfg) {
		if pcli, err = docker.NewClient(e); err != nil {
			return fmt.Errorf("--proxy-docker-host: %w", err)
		}
		defer pcli.Close()
		sideCli = pcli
	} else if w := sideloadWarning(cfg); w != "" {
		log.Warn(w)
	} else if ok {
		log.Warn("--proxy-docker-host is set, but no side-loaded proxy containers are driven (--proxy nginx or haproxy, with --nginx-target or --haproxy-target containers); it is ignored",
			"proxy_docker_host", cfg.ProxyDockerHost)
	}

	// The driver: the built-in proxy serves --http-addr itself; nginx and
	// haproxy listen there on their own, and reload, so their changes are
	// coalesced (haproxy applies backend-only changes without a reload, but
	// a burst still costs one apply, not one per event).
	var (
		driver      controller.Driver
		proxy       http.Handler
		closeDriver = func(context.Context) error { return nil }
		sideload    *docker.Sideload
		ctlOpts     = controller.Options{Logger: log, Observer: view.observer(), SavedTable: savedTablePath(cfg)}
		tlsProxy    *builtin.Proxy // the built-in proxy also serves --https-addr
	)
	var edge *edgeSettings // the built-in proxy's edge: PROXY protocol, access log, limits
	// An exported ACME certificate reloads nginx or haproxy through the
	// controller, which exists only once the driver does.
	var refreshCtl atomic.Pointer[controller.Controller]
	var certs *driverCerts // nginx, haproxy: label and ACME certificates
	refreshDriver := func() {
		if c := refreshCtl.Load(); c != nil {
			c.Refresh()
		}
	}
	// A controller's driver is the feed (roles.go); it runs no proxy.
	var (
		feedSrv      *feedDriver
		dockerStatus func() docker.Status // the feed's readiness, once the source exists
	)
	switch driverFor(cfg) {
	case driverFeed:
		var closeFeed func()
		if feedSrv, closeFeed, err = newFeedDriver(cfg, log, &dockerStatus); err != nil {
			return err
		}
		defer closeFeed()
		driver, ctlOpts.SavedTable = feedSrv, "" // the edges keep the last good table
		view.metrics.WatchFeed(feedSrv.Stats)
	case config.ProxyBuiltin:
		if edge, err = newEdge(cfg, log); err != nil {
			return err
		}
		defer edge.close() // after the proxy's own Close: the last lines are written
		profile, err := tlsProfile(cfg)
		if err != nil {
			return fmt.Errorf("--tls-profile: %w", err)
		}
		if w := profile.Warning(); w != "" {
			log.Warn(w)
		}
		acmeCerts, closeACME, err := newACME(cfg, log) // --acme-*: ssl_acme hosts' certificates (acme.go); nil when off
		if err != nil {
			return err
		}
		defer closeACME()
		p := builtin.New(edge.options(builtin.Options{Logger: log, Requests: view.requests(),
			CertDir: cfg.CertDir, TLSProfile: profile, HSTSMaxAge: cfg.HSTSMaxAge, Certificates: acmeCerts}))
		defer p.Close()
		driver, proxy, tlsProxy = p, p, p
	case config.ProxyNginx:
		acmeSide, closeACME, err := newDriverACME(cfg, log, true, refreshDriver) // acme.go; nil when off
		if err != nil {
			return err
		}
		defer closeACME()
		if certs, err = newDriverCerts(cfg, acmeSide); err != nil {
			return err
		}
		d, side, err := newNginx(cfg, sideCli, log, true, certs)
		if err != nil {
			return err
		}
		driver, sideload, closeDriver = d, side, d.Close
		ctlOpts.Quiet, ctlOpts.MaxWait = cfg.ReloadQuiet, cfg.ReloadMaxWait
	case config.ProxyHAProxy:
		acmeSide, closeACME, err := newDriverACME(cfg, log, true, refreshDriver)
		if err != nil {
			return err
		}
		defer closeACME()
		if certs, err = newDriverCerts(cfg, acmeSide); err != nil {
			return err
		}
		d, side, err := newHAProxy(cfg, sideCli, log, true, certs)
		if err != nil {
			return err
		}
		driver, sideload, closeDriver = d, side, d.Close
		ctlOpts.Quiet, ctlOpts.MaxWait = cfg.ReloadQuiet, cfg.ReloadMaxWait
	default:
		return fmt.Errorf("--proxy %s: unknown driver; use --proxy builtin, nginx or haproxy", cfg.Proxy)
	}

	driver = view.observeReloads(driver)

	// Bind the listeners before anything else, so a taken port is a clear
	// start-up error rather than a half-running process.
	var httpLn net.Listener
	if proxy != nil {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
		}
	}
	var httpsLn net.Listener
	if tlsProxy != nil {
		if httpsLn, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
			httpLn.Close()
			return fmt.Errorf("--https-addr %s: %w", cfg.HTTPSAddr, err)
		}
	}
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		for _, ln := range []net.Listener{httpLn, httpsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		return fmt.Errorf("--api-addr %s: %w", cfg.APIAddr, err)
	}
	var (
		feedServer *http.Server
		feedLn     net.Listener
	)
	if feedSrv != nil {
		if feedServer, feedLn, err = listenFeed(cfg, feedSrv, log); err != nil {
			apiLn.Close()
			return err
		}
	}

	source := docker.NewSource(cli, docker.SourceOptions{Resync: cfg.ResyncInterval, Logger: log, Failover: others})
	dockerStatus = source.Status
	ctl := controller.New(driver,
		discoveryOptions(cfg),
		ctlOpts)
	refreshCtl.Store(ctl)
	// With --proxy-docker-host, a source of the proxy containers' engine,
	// whose snapshots only go to sideload.Observe: that engine's other
	// containers never feed discovery. It lists containers alone, and
	// retries a lost connection as the main source does.
	var proxySource *docker.Source
	if pcli != nil && sideload != nil {
		proxySource = docker.NewSource(pcli, docker.SourceOptions{Resync: cfg.ResyncInterval, ContainersOnly: true,
			Logger: log.With("watching", "proxy containers")})
	}
	apiOpts := append(view.apiOptions(source, ctl, proxy, certProblems(certs, ctl)), api.WithExplain(ctl))
	if feedSrv != nil {
		apiOpts = append(apiOpts, api.WithEdges(feedSrv.edgesServing))
	}
	if sideload != nil {
		apiOpts = append(apiOpts, api.WithProxyContainers(proxyContainersStatus(sideload, proxySource)))
	}
	apiHandler := api.New(ctl, source, versionString(), log, apiOpts...)
	// Every snapshot goes to the controller and, with proxy containers on
	// the watched engine, to the side that configures a proxy container
	// as soon as it appears.
	publish := ctl.Update
	if sideload != nil && proxySource == nil {
		publish = func(s docker.Snapshot) {
			ctl.Update(s)
			sideload.Observe(s)
		}
	}

	// Client timeouts and the header limit: --client-*-timeout,
	// --max-header-bytes (net/http answers 431 past it).
	proxyServer := serverLimits(cfg, &http.Server{
		Handler:  proxy,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	})
	// The HTTPS side of the built-in proxy: the same handler, the same
	// timeouts, certificates by SNI from the live table (nil otherwise).
	var proxyTLSServer *http.Server
	if tlsProxy != nil {
		proxyTLSServer = tlsServer(tlsProxy, proxyServer)
	}
	apiServer := &http.Server{Handler: apiHandler, ReadHeaderTimeout: 10 * time.Second}
	apiServer.RegisterOnShutdown(apiHandler.CloseStreams) // else Shutdown waits for /api/events

	log.Info("interlock starting", "version", versionString(), "proxy", cfg.Proxy,
		"http_addr", cfg.HTTPAddr, "api_addr", apiLn.Addr().String(),
		"docker_host", cli.DaemonHost(), "network", cfg.Network, "backend_address", cfg.BackendAddress)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := &tasks{cancel: cancel}
	goRun := g.run
	goRun("docker source", func() error { return source.Run(ctx, publish) })
	goRun("controller", func() error { return ctl.Run(ctx) })
	if certs != nil && certs.labels != nil {
		// nginx and haproxy read label certificates at a reload: a
		// renewed file reloads them, as the built-in proxy polls its own.
		certDir, _ := filepath.Abs(cfg.CertDir)
		goRun("certificate watch", func() error {
			watchLabelCerts(ctx, certDir, func() (routing.Table, time.Time) {
				st := ctl.Status()
				return st.Table, st.LastApply.At
			}, ctl.Refresh)
			return nil
		})
	}
	if httpLn != nil {
		// Through the proxy, for the PROXY protocol (--proxy-protocol-trusted-ips).
		// --builtin-engine: net/http, or fasthttp for plain HTTP/1.1 (fastengine.go).
		goRun("proxy listener", func() error {
			return whenPrimed(ctx, ctl, httpLn, func() error { return serveBuiltinHTTP(cfg, tlsProxy, proxyServer, httpLn) })
		})
	}
	if httpsLn != nil {
		log.Info("builtin proxy serving HTTPS", "https_addr", httpsLn.Addr().String(), "cert_dir", cfg.CertDir, "tls_profile", cfg.TLSProfile)
		goRun("proxy https listener", func() error {
			return whenPrimed(ctx, ctl, httpsLn, func() error { return tlsProxy.ServeTLS(proxyTLSServer, httpsLn) })
		})
		// Renewed certificate files are served without a table change.
		goRun("certificate watch", func() error { tlsProxy.WatchCerts(ctx, 0); return nil })
	}
	if sideload != nil {
		goRun("proxy containers", func() error { return sideload.Run(ctx) })
	}
	if proxySource != nil {
		log.Info("proxy containers are looked for on their own engine", "proxy_docker_host", pcli.DaemonHost(),
			"label", sideload.Stats().Label)
		goRun("proxy docker source", func() error { return proxySource.Run(ctx, sideload.Observe) })
	}
	goRun("api listener", func() error { return apiServer.Serve(apiLn) })
	if feedServer != nil {
		goRun("feed listener", func() error { return feedServer.ServeTLS(feedLn, "", "") })
	}
	reopen := reopenOnSIGUSR1(log, edge.log()) // SIGUSR1 is taken from here on
	goRun("access log reopen", func() error { return reopen(ctx) })
	goRun("operator view", func() error { return view.run(ctx, source) })
	reload := &reloader{args: args, environ: environ, running: cfg, level: logLevel, log: log, feed: view.feed}
	goRun("config reload", func() error { return reload.watch(ctx) })

	<-ctx.Done()
	log.Info("interlock stopping")
	if feedServer != nil {
		// The edges move to another controller at once (503 to the long
		// polls); they keep serving meanwhile.
		fctx, fcancel := context.WithTimeout(context.Background(), drainGrace)
		_ = feedServer.Shutdown(fctx)
		fcancel()
	}
	// In-flight requests get a grace period; new connections are refused.
	shutdownCtx, done := drain(log, apiHandler, proxyServer, apiServer, proxyTLSServer)
	defer done()
	err = g.wait()
	// The loop has stopped: no apply can race the driver's end (a
	// supervised nginx or haproxy finishes its requests and exits).
	if err := closeDriver(shutdownCtx); err != nil {
		log.Warn("proxy driver did not stop cleanly", "driver", driver.Name(), "error", err)
	}
	return err
}

func renderCommand(ctx context.Context, args, environ []string, stdout io.Writer) error {
	cfg, err := loadConfig(args, environ, stdout)
	if err != nil {
		return err
	}
	cli, err := docker.NewClient(endpoint(cfg))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	snap, err := docker.NewSource(cli, docker.SourceOptions{}).Snapshot(ctx)
	if err != nil {
		return err
	}
	table, problems := discovery.Build(snap, discoveryOptions(cfg))
	// With a driver that writes a file: the exact file Apply would write,
	// from the same driver with the same settings.
	quiet := slog.New(slog.DiscardHandler)
	switch cfg.Proxy {
	case config.ProxyNginx:
		certs, err := renderCerts(cfg)
		if err != nil {
			return err
		}
		d, _, err := newNginx(cfg, cli, quiet, false, certs)
		if err != nil {
			return err
		}
		conf, _, err := d.Render(table)
		if err != nil {
			return err
		}
		_, err = stdout.Write(conf)
		return err
	case config.ProxyHAProxy:
		certs, err := renderCerts(cfg)
		if err != nil {
			return err
		}
		d, _, err := newHAProxy(cfg, cli, quiet, false, certs)
		if err != nil {
			return err
		}
		conf, _, err := d.Render(table)
		if err != nil {
			return err
		}
		_, err = stdout.Write(conf)
		return err
	}
	return writeJSON(stdout, api.RoutesResponse{Hash: table.Hash(), Hosts: nonNil(table.Hosts), LeftOut: nonNil(problems)})
}

func checkCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 1 && args[0] != "" && !strings.HasPrefix(args[0], "-") {
		if _, err := config.LoadFile(args[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[0])
		return nil
	}
	usage := errors.New("check takes the configuration file (interlock check /etc/interlock/config.toml) or a template (interlock check --template FILE [--proxy nginx|haproxy])")
	// A template: --template FILE, and the driver it is for (nginx unless
	// --proxy says otherwise), in either order.
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("template", "", "")
	proxy := fs.String("proxy", config.ProxyNginx, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *path == "" {
		return usage
	}
	switch *proxy {
	case config.ProxyNginx:
		return checkTemplate(ctx, *path, stdout)
	case config.ProxyHAProxy:
		return checkHAProxyTemplate(ctx, *path, stdout)
	}
	return fmt.Errorf("check --template: --proxy %q takes no template; want nginx or haproxy", *proxy)
}
