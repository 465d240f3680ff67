package haproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// rig is one real HAProxy driven by a Driver, on free loopback ports.
type rig struct {
	d                              *Driver
	http, https, tcp, stats, state string
	bin                            string
	change                         func(*Options)
	started                        bool
}

// freeAddrs asks the kernel for n distinct free loopback addresses (all
// held open until every one is chosen, so none comes twice).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

// newRig makes a driver with its state in a short temporary directory
// (unix socket paths are limited to 107 bytes) and closes it, stopping
// HAProxy, when the test ends.
func newRig(t testing.TB, change func(*Options)) *rig {
	t.Helper()
	bin := requireHAProxy(t)
	state, err := os.MkdirTemp("", "ilhx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	r := &rig{state: state, bin: bin, change: change}
	r.build(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := r.d.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return r
}

// build makes the driver on fresh ports.
func (r *rig) build(t testing.TB) {
	t.Helper()
	addrs := freeAddrs(t, 4)
	r.http, r.https, r.tcp, r.stats = addrs[0], addrs[1], addrs[2], addrs[3]
	opts := Options{
		HTTPAddr: r.http, HTTPSAddr: r.https, TCPAddr: r.tcp, StatsAddr: r.stats,
		StateDir: r.state, Binary: r.bin, DrainTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if r.change != nil {
		r.change(&opts)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
}

// testWriter sends log lines to t.Log, and drops them once the test has
// ended (HAProxy may still write while it stops).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // Log after the test ended panics
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// apply applies tb. A first start that loses one of its ports to another
// process (ports from freePort are free only until someone takes them;
// other test binaries run beside this one) is retried on fresh ports.
func (r *rig) apply(t testing.TB, tb routing.Table) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := r.d.Apply(ctx, tb)
		if err == nil {
			r.started = true
			return
		}
		if r.started || attempt == 3 || !strings.Contains(err.Error(), "cannot bind socket") {
			t.Fatalf("apply: %v", err)
		}
		t.Logf("port taken meanwhile, retrying on fresh ports: %v", err)
		_ = r.d.Close(ctx)
		r.build(t)
	}
}

// backend is a test HTTP server that names itself in every answer.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
	// delay holds every answer this long.
	delay atomic.Int64
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if d := time.Duration(b.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		if r.URL.Path == "/healthz-fail" {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s %s xff=%s proto=%s fhost=%s fwd=%s",
			b.name, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Forwarded-Host"), r.Header.Get("Forwarded"))
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func (b *backend) rb() routing.Backend {
	return routing.Backend{Address: b.addr(), Name: b.name}
}

// get sends one request with a fresh connection.
func get(t testing.TB, addr, host, path string) (int, string, http.Header) {
	t.Helper()
	code, body, h, err := tryGet(addr, host, path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	return code, body, h
}

var freshClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func tryGet(addr, host, path string) (int, string, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	req.Host = host
	resp, err := freshClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// waitFor polls f until it returns nil or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// load sends requests through HAProxy at a constant rate until stopped,
// half on one keep-alive connection pool and half on fresh connections,
// and counts every failure: a transport error or a status other than 200.
// They are POSTs with a body: Go's client never replays those on its own,
// so a connection closed under a request shows up as a failure instead of
// being retried out of sight.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	errors   []string
	// byBody counts answers by backend name (the first word of the body).
	byBody sync.Map
}

func startLoad(t testing.TB, addr, host, path string, rate int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	keepAlive := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	every := time.Second / time.Duration(rate)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		var n int
		var inner sync.WaitGroup
		defer inner.Wait()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			n++
			c, kind := keepAlive, "keep-alive"
			if n%2 == 0 {
				c, kind = fresh, "fresh"
			}
			inner.Add(1)
			go func() {
				defer inner.Done()
				l.one(c, kind, addr, host, path)
			}()
		}
	}()
	t.Cleanup(l.halt)
	return l
}

func (l *load) one(c *http.Client, kind, addr, host, path string) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader("x"))
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		l.failed(fmt.Sprintf("%s: %v", kind, err))
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		l.failed(fmt.Sprintf("%s: status %d body %q err %v", kind, resp.StatusCode, body, err))
		return
	}
	l.ok.Add(1)
	name, _, _ := strings.Cut(string(body), " ")
	v, _ := l.byBody.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (l *load) failed(msg string) {
	l.fail.Add(1)
	l.mu.Lock()
	if len(l.errors) < 20 {
		l.errors = append(l.errors, time.Now().Format("15:04:05.000")+" "+msg)
	}
	l.mu.Unlock()
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) report() (ok, fail int64, errs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok.Load(), l.fail.Load(), append([]string(nil), l.errors...)
}

// rawRequest writes req on a fresh connection and returns all it reads.
func rawRequest(t testing.TB, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}
