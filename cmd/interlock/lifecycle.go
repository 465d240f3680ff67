package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
)

// The process lifecycle of `interlock run`:
//
//   - SIGTERM or SIGINT (main's context): /readyz turns 503, the listeners
//     close, in-flight requests through the built-in proxy get drainGrace
//     to finish, then the process exits 0. A second signal during the
//     drain stops waiting.
//   - SIGHUP: the configuration is loaded again, the same way as at start
//     (file, environment as it was at start, flags). The settings in
//     liveSettings take effect at once; every other changed setting is
//     logged as needing a restart (at Warn, on every SIGHUP while it
//     differs), never ignored in silence. A file that does not load is
//     logged and the running configuration stays.
//   - SIGUSR1: the built-in proxy's access log (--access-log) is reopened,
//     for logrotate; without one it is only logged (edge.go). It is taken
//     for every driver, so a rotation script never kills the process.

// drainGrace is how long in-flight requests get at shutdown.
const drainGrace = 10 * time.Second

// liveSettings are the TOML keys a SIGHUP applies without a restart.
// Everything else is wired into listeners, the Docker client, the driver or
// the discovery options at start.
var liveSettings = map[string]bool{"log_level": true}

// newLeveledLogger is newLogger with a level that SIGHUP can change.
func newLeveledLogger(cfg config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s)) // validated by config
	return l
}

// reloader applies SIGHUPs to the running process.
type reloader struct {
	args, environ []string
	running       config.Config
	level         *slog.LevelVar
	log           *slog.Logger
	feed          *api.Feed // may be nil
}

// watch reloads on every SIGHUP until ctx ends.
func (r *reloader) watch(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			r.reload()
		}
	}
}

// reload loads the configuration again and applies what can change live.
func (r *reloader) reload() {
	file := r.running.File
	next, err := config.Load(r.args, r.environ)
	if err != nil {
		r.log.Error("configuration reload failed; the running configuration stays", "config", file, "error", err)
		r.publish(api.LevelError, "configuration reload failed; the running configuration stays: "+err.Error())
		return
	}
	var applied, restart []string
	for _, c := range diffConfig(r.running, next) {
		if liveSettings[c.key] {
			applied = append(applied, c.String())
			continue
		}
		restart = append(restart, c.String())
		r.log.Warn("configuration reload: setting changed but needs a restart; the running value stays",
			"setting", c.key, "running", c.from, "configured", c.to)
	}
	// Logged before a new level applies, so that raising it to warn still
	// shows the line that says so.
	r.log.Info("configuration reloaded", "config", next.File, "applied", applied, "need_restart", restart)
	if next.LogLevel != r.running.LogLevel {
		r.level.Set(parseLevel(next.LogLevel))
		r.running.LogLevel = next.LogLevel
	}
	msg := "configuration reloaded"
	if len(applied) > 0 {
		msg += "; applied: " + strings.Join(applied, ", ")
	}
	level := api.LevelInfo
	if len(restart) > 0 {
		msg += "; needs a restart: " + strings.Join(restart, ", ")
		level = api.LevelWarn
	}
	if len(applied) == 0 && len(restart) == 0 {
		msg += ": no change"
	}
	r.publish(level, msg)
}

func (r *reloader) publish(level, msg string) {
	if r.feed != nil {
		r.feed.Publish(api.Event{Kind: api.KindLifecycle, Level: level, Message: msg})
	}
}

// settingChange is one setting whose value differs.
type settingChange struct{ key, from, to string }

func (c settingChange) String() string { return fmt.Sprintf("%s %s -> %s", c.key, c.from, c.to) }

// diffConfig lists the settings that differ between a and b, under their
// TOML keys, in the order Config.LogValue gives them (every setting, so a
// setting added to config is covered here without a change).
func diffConfig(a, b config.Config) []settingChange {
	av, bv := a.LogValue().Group(), b.LogValue().Group()
	values := make(map[string]string, len(bv))
	for _, attr := range bv {
		values[attr.Key] = attr.Value.String()
	}
	var out []settingChange
	for _, attr := range av {
		to, ok := values[attr.Key]
		if from := attr.Value.String(); ok && from != to {
			out = append(out, settingChange{key: attr.Key, from: quoteEmpty(from), to: quoteEmpty(to)})
		}
	}
	return out
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

// drain shuts the servers down at exit: readiness first, then the proxy
// listener with its in-flight requests (up to drainGrace, or until a
// second SIGTERM/SIGINT), then the API. httpsServer, the built-in proxy's
// HTTPS listener (nil when there is none), drains alongside the proxy
// listener, in the same grace period. The returned context is the rest
// of the grace period, for the driver's own stop; call done when finished.
func drain(log *slog.Logger, apiHandler *api.Server, proxyServer, apiServer, httpsServer *http.Server) (ctx context.Context, done func()) {
	apiHandler.ShuttingDown()
	ctx, cancel := context.WithTimeout(context.Background(), drainGrace)
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGTERM, os.Interrupt)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-again:
			log.Warn("second signal: stopping without waiting for in-flight requests")
			cancel()
		case <-ctx.Done():
		}
		// A fasthttp listener's drain runs behind its gate, which
		// Shutdown waits for whatever ctx says.
		cutFastDrain(proxyServer)
	}()
	done = func() {
		signal.Stop(again)
		cancel()
		<-stopped
	}

	start := time.Now()
	httpsDone := make(chan error, 1)
	if httpsServer != nil {
		go func() { httpsDone <- httpsServer.Shutdown(ctx) }()
	} else {
		httpsDone <- nil
	}
	err := proxyServer.Shutdown(ctx)
	if herr := <-httpsDone; herr != nil {
		_ = httpsServer.Close()
		err = errors.Join(err, herr)
	}
	switch {
	case err != nil:
		log.Warn("in-flight requests cut off", "grace", drainGrace, "waited", time.Since(start).Round(time.Millisecond), "error", err)
		_ = proxyServer.Close()
	case proxyServer.Handler != nil: // nil: a side-loaded proxy serves, not us
		log.Info("in-flight requests drained", "took", time.Since(start).Round(time.Millisecond))
	}
	// The API answers until the proxy is drained, so that a load balancer
	// sees /readyz fail rather than a refused connection.
	if err := apiServer.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		_ = apiServer.Close()
	}
	return ctx, done
}
