// Command backend is the routed application of Interlock's integration tests
// and benchmarks. It is built as a static binary into a FROM-scratch image by
// testenv.BackendImage, so it uses the standard library only.
//
// Environment:
//
//	PORT         port to listen on (default 8000)
//	PORTS        comma-separated ports to listen on; overrides PORT
//	NAME         name reported in the X-Backend header and JSON body (default: hostname)
//	DRAIN_DELAY  Go duration to keep serving after SIGTERM/SIGINT (default 0s)
//	TLS_PORTS    comma-separated ports to serve HTTPS on, with a self-signed
//	             certificate for TLS_NAME (default NAME) made at start
//	TLS_NAME     the DNS name of that certificate
//
// Endpoints (any method):
//
//	/fast          fixed body "ok\n": the cheap path for wrk benchmarks
//	/health        200, or 503 after /health/fail (until /health/ok)
//	/health/fail   make /health answer 503
//	/health/ok     make /health answer 200 again
//	/slow?d=200ms  wait d, then answer like /
//	/ws            with an Upgrade header: 101, then echo raw bytes until EOF
//	anything else  200 with a JSON description of the request (see reply)
//
// Every response carries "X-Backend: <name>".
//
// With -probe URL the binary is a health probe instead (scratch images have no
// curl): it exits 0 when GET URL answers 200, else 1.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	probe := flag.String("probe", "", "GET this URL, exit 0 on 200, else 1")
	flag.Parse()
	if *probe != "" {
		os.Exit(runProbe(*probe))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

// runProbe is the HEALTHCHECK command: it returns the process exit code.
func runProbe(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "probe: status", resp.StatusCode)
		return 1
	}
	return 0
}

// config is what the environment asks for.
type config struct {
	name     string
	ports    []string
	tlsPorts []string
	tlsName  string
	drain    time.Duration
}

func loadConfig() (config, error) {
	var c config
	c.name = os.Getenv("NAME")
	if c.name == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("no NAME and no hostname: %w", err)
		}
		c.name = h
	}
	ports := os.Getenv("PORTS")
	if ports == "" {
		ports = os.Getenv("PORT")
	}
	if ports == "" {
		ports = "8000"
	}
	for p := range strings.SplitSeq(ports, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.ports = append(c.ports, p)
		}
	}
	for p := range strings.SplitSeq(os.Getenv("TLS_PORTS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.tlsPorts = append(c.tlsPorts, p)
		}
	}
	c.tlsName = os.Getenv("TLS_NAME")
	if c.tlsName == "" {
		c.tlsName = c.name
	}
	if d := os.Getenv("DRAIN_DELAY"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil || v < 0 {
			return c, fmt.Errorf("DRAIN_DELAY %q: want a Go duration such as 2s", d)
		}
		c.drain = v
	}
	return c, nil
}

func run() error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	h := newHandler(cfg.name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	servers := make([]*http.Server, 0, len(cfg.ports)+len(cfg.tlsPorts))
	errc := make(chan error, len(cfg.ports)+len(cfg.tlsPorts))
	for _, p := range cfg.ports {
		srv := &http.Server{Addr: ":" + p, Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("listen on port %s: %w", p, err)
			}
		}()
	}
	if len(cfg.tlsPorts) > 0 {
		cert, err := selfSigned(cfg.tlsName)
		if err != nil {
			return err
		}
		for _, p := range cfg.tlsPorts {
			srv := &http.Server{Addr: ":" + p, Handler: h, ReadHeaderTimeout: 10 * time.Second,
				TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
			servers = append(servers, srv)
			go func() {
				if err := srv.ListenAndServeTLS("", ""); !errors.Is(err, http.ErrServerClosed) {
					errc <- fmt.Errorf("listen on TLS port %s: %w", p, err)
				}
			}()
		}
	}
	fmt.Fprintf(os.Stderr, "backend %s listening on %s (TLS: %s)\n", cfg.name, strings.Join(cfg.ports, ","), strings.Join(cfg.tlsPorts, ","))

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Keep serving normally for the drain delay, so a test can show that the
	// proxy stopped sending traffic here before the process went away.
	fmt.Fprintf(os.Stderr, "backend %s: signal received, draining for %s\n", cfg.name, cfg.drain)
	select {
	case <-time.After(cfg.drain):
	case err := <-errc:
		return err
	}
	fmt.Fprintf(os.Stderr, "backend %s: shutting down\n", cfg.name)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				fmt.Fprintf(os.Stderr, "backend %s: shutdown %s: %v\n", cfg.name, srv.Addr, err)
			}
		})
	}
	wg.Wait()
	h.closeTunnels()
	return nil
}

// handler serves every endpoint. It dispatches with a switch rather than a
// ServeMux to keep /fast as cheap as possible.
type handler struct {
	name      string
	nameValue []string // X-Backend header value, shared by all responses
	unhealthy atomic.Bool

	mu      sync.Mutex
	tunnels map[*tunnel]struct{}
}

func newHandler(name string) *handler {
	return &handler{name: name, nameValue: []string{name}, tunnels: map[*tunnel]struct{}{}}
}

var (
	fastBody  = []byte("ok\n")
	textPlain = []string{"text/plain; charset=utf-8"}
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	// Direct map assignment skips header-key canonicalisation on the hot path.
	hdr["X-Backend"] = h.nameValue
	switch p := r.URL.Path; {
	case p == "/fast":
		hdr["Content-Type"] = textPlain
		_, _ = w.Write(fastBody)
	case p == "/health":
		hdr["Content-Type"] = textPlain
		if h.unhealthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unhealthy\n"))
			return
		}
		_, _ = w.Write(fastBody)
	case p == "/health/fail":
		h.unhealthy.Store(true)
		hdr["Content-Type"] = textPlain
		_, _ = w.Write([]byte("health now failing\n"))
	case p == "/health/ok":
		h.unhealthy.Store(false)
		hdr["Content-Type"] = textPlain
		_, _ = w.Write([]byte("health now ok\n"))
	case p == "/slow":
		h.slow(w, r)
	case p == "/ws" && r.Header.Get("Upgrade") != "":
		h.upgrade(w, r)
	default:
		h.reply(w, r)
	}
}

// slow waits for the duration in the query parameter d (default 200ms),
// then answers like any other path. A cancelled request stops the wait.
func (h *handler) slow(w http.ResponseWriter, r *http.Request) {
	d := 200 * time.Millisecond
	if s := r.URL.Query().Get("d"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v < 0 {
			http.Error(w, "d: want a Go duration such as 200ms", http.StatusBadRequest)
			return
		}
		d = v
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		h.reply(w, r)
	case <-r.Context().Done():
	}
}

// selfSigned makes a certificate for name, so a TLS client can tell this
// backend's certificate from a proxy's.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate for %s: %w", name, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
