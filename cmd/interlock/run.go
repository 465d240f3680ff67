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
	"strings"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
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

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func endpoint(cfg config.Config) docker.Endpoint {
	return docker.Endpoint{Host: cfg.DockerHost, CA: cfg.TLSCA, Cert: cfg.TLSCert, Key: cfg.TLSKey, Verify: cfg.TLSVerify}
}

func runCommand(ctx context.Context, args, environ []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, environ, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	cli, err := docker.NewClient(endpoint(cfg))
	if err != nil {
		return err
	}
	defer cli.Close()

	if cfg.Proxy != "builtin" {
		return fmt.Errorf("--proxy %s: this driver is not available in this build yet; use --proxy builtin", cfg.Proxy)
	}
	proxy := builtin.New(builtin.Options{Logger: log})
	defer proxy.Close()

	// Bind both listeners before anything else, so a taken port is a clear
	// start-up error rather than a half-running process.
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
	}
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("--api-addr %s: %w", cfg.APIAddr, err)
	}

	source := docker.NewSource(cli, docker.SourceOptions{Resync: cfg.ResyncInterval, Logger: log})
	ctl := controller.New(proxy,
		discovery.Options{BackendAddress: cfg.BackendAddress, Network: cfg.Network},
		controller.Options{Logger: log})
	apiHandler := api.New(ctl, source, versionString(), log)

	proxyServer := &http.Server{
		Handler:           proxy,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	apiServer := &http.Server{Handler: apiHandler, ReadHeaderTimeout: 10 * time.Second}

	log.Info("interlock starting", "version", versionString(), "proxy", cfg.Proxy,
		"http_addr", httpLn.Addr().String(), "api_addr", apiLn.Addr().String(),
		"docker_host", cli.DaemonHost(), "network", cfg.Network, "backend_address", cfg.BackendAddress)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errMu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", name, err)
				}
				errMu.Unlock()
				cancel()
			}
		}()
	}
	goRun("docker source", func() error { return source.Run(ctx, ctl.Update) })
	goRun("controller", func() error { return ctl.Run(ctx) })
	goRun("proxy listener", func() error { return proxyServer.Serve(httpLn) })
	goRun("api listener", func() error { return apiServer.Serve(apiLn) })

	<-ctx.Done()
	log.Info("interlock stopping")
	// In-flight requests get a grace period; new connections are refused.
	shutdownCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	_ = proxyServer.Shutdown(shutdownCtx)
	_ = apiServer.Shutdown(shutdownCtx)
	wg.Wait()
	return firstErr
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
	table, problems := discovery.Build(snap, discovery.Options{BackendAddress: cfg.BackendAddress, Network: cfg.Network})
	return writeJSON(stdout, api.RoutesResponse{Hash: table.Hash(), Hosts: nonNil(table.Hosts), LeftOut: nonNil(problems)})
}

func checkCommand(args []string, stdout io.Writer) error {
	if len(args) == 1 && args[0] != "" && !strings.HasPrefix(args[0], "-") {
		if _, err := config.LoadFile(args[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[0])
		return nil
	}
	return fmt.Errorf("check takes one argument, the configuration file: interlock check /etc/interlock/config.toml")
}
