package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// echo is what a test backend reports about the request it received.
type echo struct {
	Backend   string `json:"backend"`
	Method    string `json:"method"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	RawPath   string `json:"raw_path"`
	RawQuery  string `json:"raw_query"`
	Body      string `json:"body"`
	XFF       string `json:"xff"`
	XFHost    string `json:"xfh"`
	XFProto   string `json:"xfp"`
	Forwarded string `json:"forwarded"`
}

// newBackend starts a loopback backend that answers with an echo naming it.
func newBackend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{
			Backend:   name,
			Method:    r.Method,
			Host:      r.Host,
			Path:      r.URL.Path,
			RawPath:   r.URL.RawPath,
			RawQuery:  r.URL.RawQuery,
			Body:      string(body),
			XFF:       r.Header.Get("X-Forwarded-For"),
			XFHost:    r.Header.Get("X-Forwarded-Host"),
			XFProto:   r.Header.Get("X-Forwarded-Proto"),
			Forwarded: r.Header.Get("Forwarded"),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newTLSBackend is newBackend over TLS, with httptest's self-signed
// certificate.
func newTLSBackend(t testing.TB, name string) *httptest.Server {
	t.Helper()
	plain := newBackend(t, name)
	srv := httptest.NewUnstartedServer(plain.Config.Handler)
	// The verifying proxy rejects the certificate on purpose; keep the
	// server's handshake complaint out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// addr is a test server's "ip:port".
func addr(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// deadAddr returns a loopback address nothing listens on: connects to it are
// refused at once.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// newTestProxy returns a proxy that logs to logs (nil: nowhere), closed at
// cleanup.
func newTestProxy(t testing.TB, opts Options, logs *syncBuffer) *Proxy {
	t.Helper()
	if opts.Logger == nil {
		if logs != nil {
			opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			opts.Logger = slog.New(slog.DiscardHandler)
		}
	}
	p := New(opts)
	t.Cleanup(func() { p.Close() })
	return p
}

// serve puts p behind a loopback HTTP server.
func serve(t testing.TB, p *Proxy) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv
}

func mustApply(t testing.TB, p *Proxy, tbl routing.Table) {
	t.Helper()
	if err := p.Apply(context.Background(), tbl); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// tableOf builds a normalized table.
func tableOf(hosts ...routing.Host) routing.Table {
	t := routing.Table{Hosts: hosts}
	t.Normalize()
	return t
}

func hostOf(name string, routes ...routing.Route) routing.Host {
	return routing.Host{Name: name, Routes: routes}
}

func routeOf(path string, addrs ...string) routing.Route {
	r := routing.Route{Path: path}
	for _, a := range addrs {
		r.Backends = append(r.Backends, routing.Backend{Address: a})
	}
	return r
}

// response is a finished request through the proxy.
type response struct {
	status int
	header http.Header
	body   string
	echo   echo
}

// do sends a request with the given Host header to srv and decodes the
// backend's echo when there is one.
func do(t testing.TB, client *http.Client, srv *httptest.Server, method, host, target string, body io.Reader, hdr http.Header) response {
	t.Helper()
	res, err := fetch(client, srv, method, host, target, body, hdr)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, target, host, err)
	}
	return res
}

// fetch is do without the test: safe to call from any goroutine.
func fetch(client *http.Client, srv *httptest.Server, method, host, target string, body io.Reader, hdr http.Header) (response, error) {
	req, err := http.NewRequest(method, srv.URL+target, body)
	if err != nil {
		return response{}, err
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("read body: %w", err)
	}
	out := response{status: res.StatusCode, header: res.Header, body: string(b)}
	if len(b) > 0 && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.echo); err != nil {
			return response{}, fmt.Errorf("decode echo %q: %w", b, err)
		}
	}
	return out, nil
}

func get(t testing.TB, srv *httptest.Server, host, target string) response {
	t.Helper()
	return do(t, srv.Client(), srv, http.MethodGet, host, target, nil, nil)
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines containing msg.
func (b *syncBuffer) lines(msg string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, msg) {
			out = append(out, l)
		}
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// statsOf returns the stats of one backend address.
func statsOf(t testing.TB, p *Proxy, address string) BackendStats {
	t.Helper()
	for _, s := range p.Stats() {
		if s.Address == address {
			return s
		}
	}
	t.Fatalf("no stats for backend %s in %+v", address, p.Stats())
	return BackendStats{}
}
