package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
)

// edgeSettings are the built-in proxy's edge settings, parsed once at
// start: the networks trusted for client addresses, the access log, the
// timeouts and limits (internal/config/edge.go).
type edgeSettings struct {
	cfg                            config.Config
	proxyTrusted, forwardedTrusted []netip.Prefix
	accessLog                      *builtin.AccessLog // nil: none
}

// newEdge parses cfg's edge settings and opens the access log. Config has
// validated them; an error here is one only start-up can see (a log file
// that cannot be opened).
func newEdge(cfg config.Config, log *slog.Logger) (*edgeSettings, error) {
	e := &edgeSettings{cfg: cfg}
	var err error
	if e.proxyTrusted, err = config.ParseCIDRs(cfg.ProxyProtocolTrustedIPs); err != nil {
		return nil, fmt.Errorf("--proxy-protocol-trusted-ips: %w", err)
	}
	if e.forwardedTrusted, err = config.ParseCIDRs(cfg.ForwardedHeadersTrustedIPs); err != nil {
		return nil, fmt.Errorf("--forwarded-headers-trusted-ips: %w", err)
	}
	if cfg.AccessLog != "" {
		e.accessLog, err = builtin.OpenAccessLog(builtin.AccessLogOptions{Path: cfg.AccessLog, Format: cfg.AccessLogFormat, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--access-log %s: %w; fix the path, or leave it empty for no access log", cfg.AccessLog, err)
		}
		log.Info("access log open", "path", cfg.AccessLog, "format", cfg.AccessLogFormat)
	}
	if len(e.proxyTrusted) > 0 {
		log.Info("PROXY protocol accepted on the proxy listeners", "trusted", cfg.ProxyProtocolTrustedIPs)
	}
	return e, nil
}

// options adds the edge to the built-in proxy's options.
func (e *edgeSettings) options(o builtin.Options) builtin.Options {
	o.ProxyProtocolTrusted = e.proxyTrusted
	o.ForwardedTrusted = e.forwardedTrusted
	o.AccessLog = e.accessLog
	o.DialTimeout = e.cfg.BackendConnectTimeout
	o.ResponseHeaderTimeout = e.cfg.BackendResponseHeaderTimeout
	o.BackendIdleTimeout = e.cfg.BackendIdleTimeout
	o.MaxBodyBytes = int64(e.cfg.MaxBodyBytes)
	return o
}

// serverLimits sets srv's client timeouts and header limit from cfg: the proxy
// listeners' http.Servers, whichever driver (only the built-in proxy's are
// served).
func serverLimits(cfg config.Config, srv *http.Server) *http.Server {
	srv.ReadHeaderTimeout = cfg.ClientReadHeaderTimeout
	srv.ReadTimeout = cfg.ClientReadTimeout
	srv.IdleTimeout = cfg.ClientIdleTimeout
	srv.MaxHeaderBytes = int(cfg.MaxHeaderBytes)
	return srv
}

// close flushes and closes the access log.
func (e *edgeSettings) close() {
	if e != nil && e.accessLog != nil {
		_ = e.accessLog.Close()
	}
}

// log returns the access log, nil for none (or no edge: another driver).
func (e *edgeSettings) log() *builtin.AccessLog {
	if e == nil {
		return nil
	}
	return e.accessLog
}

// reopenOnSIGUSR1 takes SIGUSR1 at once and returns the loop that reopens
// the access log on every one until ctx ends (logrotate's postrotate: kill
// -USR1). SIGUSR1 is taken whatever the driver and whether there is an
// access log, so that a rotation script never kills the process; without
// a log it is only noted.
func reopenOnSIGUSR1(log *slog.Logger, al *builtin.AccessLog) func(ctx context.Context) error {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	return func(ctx context.Context) error {
		defer signal.Stop(usr1)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-usr1:
				if al == nil {
					log.Info("SIGUSR1: no access log to reopen")
					continue
				}
				if err := al.Reopen(); err != nil {
					log.Error("SIGUSR1: access log not reopened; still writing to the old file", "path", al.Path(), "error", err)
					continue
				}
				log.Info("SIGUSR1: access log reopened", "path", al.Path())
			}
		}
	}
}
