package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/feed"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
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

// newFeedServer is a controller's driver. A controller that is not
// connected to Docker is not followed (503): edges move to one that is,
// or keep their last table.
func newFeedServer(cfg config.Config, log *slog.Logger, dockerStatus *func() docker.Status) (*feed.Server, error) {
	if cfg.Proxy != config.ProxyBuiltin {
		log.Warn("a controller runs no proxy: --proxy is ignored; its edges serve with the built-in proxy", "proxy", cfg.Proxy)
	}
	if cfg.ACMEEnabled() {
		log.Warn("a controller runs no proxy and obtains no ACME certificates in this version: --acme-hosts is ignored", "acme_hosts", cfg.ACMEHosts)
	}
	if _, err := feed.ServerTLS(cfg.FeedCA, cfg.FeedCert, cfg.FeedKey); err != nil {
		return nil, fmt.Errorf("--feed-cert: %w", err)
	}
	return feed.NewServer(feed.ServerOptions{Logger: log, Ready: func() error {
		if f := *dockerStatus; f != nil {
			if st := f(); !st.Connected {
				return fmt.Errorf("not connected to docker (%s)", st.LastError)
			}
		}
		return nil
	}}), nil
}

// listenFeed binds a controller's feed listener (mutual TLS).
func listenFeed(cfg config.Config, srv *feed.Server, log *slog.Logger) (*http.Server, net.Listener, error) {
	tlsCfg, err := feed.ServerTLS(cfg.FeedCA, cfg.FeedCert, cfg.FeedKey)
	if err != nil {
		return nil, nil, fmt.Errorf("--feed-cert: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.FeedAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("--feed-addr %s: %w", cfg.FeedAddr, err)
	}
	hs := &http.Server{Handler: srv, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)} // handshake failures, at Debug
	hs.RegisterOnShutdown(srv.Close) // else Shutdown waits for the long polls
	log.Info("controller: serving the routing table to edges; no proxy runs here", "feed_addr", ln.Addr().String())
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

// runEdge is `interlock run --role edge`: the built-in proxy serving the
// tables the controllers feed, through the same controller loop (atomic
// swap, last good table on disk) as the single process. It never talks to
// Docker: config refuses every Docker setting in this role.
func runEdge(ctx context.Context, cfg config.Config, args, environ []string, log *slog.Logger, view *operatorView, logLevel *slog.LevelVar) error {
	tlsCfg, err := feed.ClientTLS(cfg.FeedCA, cfg.FeedCert, cfg.FeedKey)
	if err != nil {
		return fmt.Errorf("--feed-cert: %w", err)
	}
	client, err := feed.NewClient(feed.ClientOptions{Controllers: cfg.ControllerURLs(), TLS: tlsCfg, Logger: log})
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
		CertDir: cfg.CertDir, TLSProfile: profile, HSTSMaxAge: cfg.HSTSMaxAge}))
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
	apiOpts := append(view.apiOptions(upstream, ctl, p, nil), api.WithUpstream("a controller"))
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
	goRun("proxy listener", func() error { return serveBuiltinHTTP(cfg, p, proxyServer, httpLn) })
	goRun("proxy https listener", func() error { return p.ServeTLS(proxyTLSServer, httpsLn) })
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
