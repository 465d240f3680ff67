package builtin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// Behaviours of a fake backend, for RoundTrip tests without a network.
const (
	ok             = "ok"               // reads the body, answers 200 "addr:body"
	refuse         = "refuse"           // connection refused: a dialError
	readThenRefuse = "read-then-refuse" // reads a byte of the body, then a dialError
	reset          = "reset"            // fails after the request went out
	slow           = "slow"             // no response headers in time (ResponseHeaderTimeout)
)

// headerTimeout is the error net/http's transport returns for a backend
// that sends no response headers within ResponseHeaderTimeout.
type headerTimeout struct{}

func (headerTimeout) Error() string   { return "net/http: timeout awaiting response headers" }
func (headerTimeout) Timeout() bool   { return true }
func (headerTimeout) Temporary() bool { return true }

// fakeBase stands in for the http.Transport under a forwarder.
type fakeBase struct {
	mu     sync.Mutex
	behave map[string]string // address -> behaviour
	calls  []string          // addresses tried, in order
}

func (f *fakeBase) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	a := req.URL.Host
	f.calls = append(f.calls, a)
	b := f.behave[a]
	f.mu.Unlock()
	refused := &dialError{err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	switch b {
	case refuse:
		return nil, refused
	case readThenRefuse:
		if req.Body != nil {
			req.Body.Read(make([]byte, 1))
		}
		return nil, refused
	case reset:
		return nil, io.ErrUnexpectedEOF
	case slow:
		return nil, headerTimeout{}
	}
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
	}
	return &http.Response{
		StatusCode: 200,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(a + ":" + string(body))),
		Request:    req,
	}, nil
}

func (f *fakeBase) tried() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// forwarderOf returns the forwarder of a host's first route with its base
// transport replaced by fake, and its round-robin counter at 0 so the first
// backend (lowest address) is tried first.
func forwarderOf(t testing.TB, p *Proxy, hostName string, fake *fakeBase) *forwarder {
	t.Helper()
	h := p.table.Load().hosts[hostName]
	if h == nil {
		t.Fatalf("no host %s", hostName)
	}
	f := h.routes[0].forward.(*forwarder)
	f.base = fake
	f.route.next.Store(0)
	return f
}

func TestRetryRules(t *testing.T) {
	const a, b, c = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
	tests := []struct {
		name        string
		behave      map[string]string
		preEjected  []string
		method      string
		body        string // "" for none
		keepGetBody bool   // leave http.NewRequest's GetBody in place
		// idempotencyKey sets an Idempotency-Key header.
		idempotencyKey bool
		cancel         bool
		wantCalls      []string
		wantOK         string // response body when the request succeeds; "" for an error
		wantEjected    []string
	}{
		{
			name:      "dial error, no body: retried",
			behave:    map[string]string{a: refuse, b: ok, c: ok},
			method:    "GET",
			wantCalls: []string{a, b}, wantOK: b + ":", wantEjected: []string{a},
		},
		{
			name:   "dial error, unread POST body: retried with the whole body",
			behave: map[string]string{a: refuse, b: ok, c: ok},
			method: "POST", body: "payload",
			wantCalls: []string{a, b}, wantOK: b + ":payload", wantEjected: []string{a},
		},
		{
			name:   "dial error after the body was read, no GetBody: not retried",
			behave: map[string]string{a: readThenRefuse, b: ok, c: ok},
			method: "PUT", body: "payload",
			wantCalls: []string{a}, wantEjected: []string{a},
		},
		{
			name:   "dial error after the body was read, GetBody: rewound and retried",
			behave: map[string]string{a: readThenRefuse, b: ok, c: ok},
			method: "PUT", body: "payload", keepGetBody: true,
			wantCalls: []string{a, b}, wantOK: b + ":payload", wantEjected: []string{a},
		},
		{
			name:      "failure after sending a POST: not retried, not ejected",
			behave:    map[string]string{a: reset, b: ok, c: ok},
			method:    "POST",
			wantCalls: []string{a},
		},
		{
			name:      "failure after sending a GET: idempotent, so retried, and the backend ejected",
			behave:    map[string]string{a: reset, b: ok, c: ok},
			method:    "GET",
			wantCalls: []string{a, b}, wantOK: b + ":", wantEjected: []string{a},
		},
		{
			name:      "failure after sending a HEAD: retried",
			behave:    map[string]string{a: reset, b: ok, c: ok},
			method:    "HEAD",
			wantCalls: []string{a, b}, wantOK: b + ":", wantEjected: []string{a},
		},
		{
			name:   "failure after sending a POST with an Idempotency-Key: retried with its body",
			behave: map[string]string{a: reset, b: ok, c: ok},
			method: "POST", body: "payload", keepGetBody: true, idempotencyKey: true,
			wantCalls: []string{a, b}, wantOK: b + ":payload", wantEjected: []string{a},
		},
		{
			name:      "no response headers in time: slow, not gone, so not retried",
			behave:    map[string]string{a: slow, b: ok, c: ok},
			method:    "GET",
			wantCalls: []string{a},
		},
		{
			name:   "client canceled: not retried, not ejected",
			behave: map[string]string{a: refuse, b: ok, c: ok},
			method: "GET", cancel: true,
			wantCalls: []string{a},
		},
		{
			name:      "every backend refuses: one attempt each",
			behave:    map[string]string{a: refuse, b: refuse, c: refuse},
			method:    "DELETE",
			wantCalls: []string{a, b, c}, wantEjected: []string{a, b, c},
		},
		{
			name:       "an ejected backend is not retried on",
			behave:     map[string]string{a: refuse, b: ok, c: ok},
			preEjected: []string{b},
			method:     "GET",
			wantCalls:  []string{a, c}, wantOK: c + ":", wantEjected: []string{a, b},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestProxy(t, Options{}, nil)
			mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", a, b, c))))
			fake := &fakeBase{behave: tt.behave}
			f := forwarderOf(t, p, "app.example", fake)
			for _, be := range f.route.backends {
				if slices.Contains(tt.preEjected, be.addr) {
					be.state.eject(p.clock.now(), time.Minute)
				}
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(ctx, tt.method, "http://app.example/", body)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.keepGetBody {
				req.GetBody = nil // as on every request a server hands us
			}
			if tt.idempotencyKey {
				req.Header.Set("Idempotency-Key", "k1")
			}

			res, err := f.RoundTrip(req)
			if got := fake.tried(); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("tried %v, want %v", got, tt.wantCalls)
			}
			if tt.wantOK != "" {
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if string(got) != tt.wantOK {
					t.Errorf("response %q, want %q", got, tt.wantOK)
				}
			} else {
				var be *backendError
				if !errors.As(err, &be) || be.addr != tt.wantCalls[len(tt.wantCalls)-1] {
					t.Errorf("RoundTrip error = %v, want a backendError for the last backend tried", err)
				}
			}
			var ejected []string
			for _, s := range p.Stats() {
				if s.Ejected {
					ejected = append(ejected, s.Address)
				}
				if s.InFlight != 0 {
					t.Errorf("backend %s has %d in flight after the request, want 0", s.Address, s.InFlight)
				}
			}
			if !slices.Equal(ejected, tt.wantEjected) {
				t.Errorf("ejected %v, want %v", ejected, tt.wantEjected)
			}
		})
	}
}

func TestEjectionExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const a, b = "10.0.0.1:80", "10.0.0.2:80"
		const ejectFor = 10 * time.Second
		p := newTestProxy(t, Options{EjectFor: ejectFor}, nil)
		mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", a, b))))
		fake := &fakeBase{behave: map[string]string{a: refuse, b: ok}}
		f := forwarderOf(t, p, "app.example", fake)

		send := func() {
			t.Helper()
			req, _ := http.NewRequest("GET", "http://app.example/", nil)
			res, err := f.RoundTrip(req)
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			res.Body.Close()
		}
		send() // a refuses: ejected, retried on b
		fake.behave[a] = ok

		for range 4 {
			send()
		}
		if got := fake.tried(); !slices.Equal(got, []string{a, b, b, b, b, b}) {
			t.Fatalf("tried %v, want a once then only b while a is ejected", got)
		}

		time.Sleep(ejectFor - time.Nanosecond)
		if s := statsOf(t, p, a); !s.Ejected {
			t.Fatalf("a live again after %v, want ejected for %v", ejectFor-time.Nanosecond, ejectFor)
		}
		time.Sleep(time.Nanosecond)
		if s := statsOf(t, p, a); s.Ejected {
			t.Fatalf("a still ejected after %v", ejectFor)
		}
		for range 2 {
			send()
		}
		if got := fake.tried()[6:]; !slices.Contains(got, a) {
			t.Errorf("after the ejection ended, tried %v, want a back in rotation", got)
		}
	})
}

func TestEjectionDisabled(t *testing.T) {
	const a, b = "10.0.0.1:80", "10.0.0.2:80"
	p := newTestProxy(t, Options{EjectFor: -1}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", a, b))))
	fake := &fakeBase{behave: map[string]string{a: refuse, b: ok}}
	f := forwarderOf(t, p, "app.example", fake)
	for range 2 {
		f.route.next.Store(0)
		req, _ := http.NewRequest("GET", "http://app.example/", nil)
		res, err := f.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		res.Body.Close()
	}
	if got := fake.tried(); !slices.Equal(got, []string{a, b, a, b}) {
		t.Errorf("tried %v, want a retried each time and never ejected", got)
	}
}

func TestDeadBackendCostsNoRequest(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		body     string
		chunked  bool
		wantBody string
	}{
		{name: "GET", method: "GET"},
		{name: "HEAD", method: "HEAD"},
		{name: "DELETE", method: "DELETE"},
		{name: "POST without body", method: "POST"},
		{name: "POST with body", method: "POST", body: "payload", wantBody: "payload"},
		{name: "POST with chunked body", method: "POST", body: "chunked payload", chunked: true, wantBody: "chunked payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live, dead := newBackend(t, "live"), deadAddr(t)
			log := &syncBuffer{}
			p := newTestProxy(t, Options{}, log)
			mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(live), dead))))
			srv := serve(t, p)

			for i := range 6 {
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
					if tt.chunked {
						body = io.MultiReader(body) // hides the length: sent chunked
					}
				}
				res := do(t, srv.Client(), srv, tt.method, "app.example", "/", body, nil)
				if res.status != 200 {
					t.Fatalf("request %d: status %d (%q), want 200 from the live backend", i, res.status, res.body)
				}
				if tt.method != "HEAD" && (res.echo.Backend != "live" || res.echo.Body != tt.wantBody) {
					t.Fatalf("request %d: backend %q body %q, want live with %q", i, res.echo.Backend, res.echo.Body, tt.wantBody)
				}
			}
			if s := statsOf(t, p, dead); s.Requests > 1 || s.Failures != s.Requests || (s.Requests == 1 && !s.Ejected) {
				t.Errorf("dead backend %+v: want at most one attempt, failed, then ejected", s)
			}
			if e := p.Errors(); e.BackendUnavailable != 0 {
				t.Errorf("Errors() = %+v, want no 502", e)
			}
			if n := len(log.lines("backend ejected")); n > 1 {
				t.Errorf("%d ejection log lines, want at most one", n)
			}
		})
	}
}

func TestAllBackendsDead(t *testing.T) {
	dead1, dead2 := deadAddr(t), deadAddr(t)
	log := &syncBuffer{}
	p := newTestProxy(t, Options{}, log)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", dead1, dead2))))
	srv := serve(t, p)

	res := get(t, srv, "app.example", "/")
	if res.status != 502 || res.body != "interlock: backend unavailable\n" || res.header.Get(errorHeader) != kindBackendFailure {
		t.Errorf("first request: %d %q %s=%q, want 502 backend unavailable", res.status, res.body, errorHeader, res.header.Get(errorHeader))
	}
	failed := log.lines("backend request failed")
	if len(failed) != 1 {
		t.Fatalf("want one failure log line for the request, got %q", failed)
	}
	if !strings.Contains(failed[0], "level=WARN") || !strings.Contains(failed[0], "host=app.example") ||
		!(strings.Contains(failed[0], "backend="+dead1) || strings.Contains(failed[0], "backend="+dead2)) {
		t.Errorf("failure log %q: want a warning with host and backend", failed[0])
	}

	// Both are ejected now, but the engine still lists them: the proxy asks
	// again (one dial each) rather than declaring the route dead.
	res = get(t, srv, "app.example", "/")
	if res.status != 502 || res.header.Get(errorHeader) != kindBackendFailure {
		t.Errorf("second request: %d %q, want 502 after trying the ejected backends again", res.status, res.body)
	}
	for _, d := range []string{dead1, dead2} {
		if s := statsOf(t, p, d); s.Requests != 2 || !s.Ejected {
			t.Errorf("backend %+v: want two attempts and ejected", s)
		}
	}
	if e := p.Errors(); e.BackendUnavailable != 2 || e.NoLiveBackend != 0 {
		t.Errorf("Errors() = %+v, want two 502s and no 503", e)
	}
}

// A backend that refused its first request (its process was not listening
// yet) answers as soon as it listens, though it is still ejected.
func TestEjectedOnlyBackendComesBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet: connections are refused
	p := newTestProxy(t, Options{EjectFor: time.Hour}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr))))
	srv := serve(t, p)
	if res := get(t, srv, "app.example", "/"); res.status != 502 {
		t.Fatalf("before the backend listens: %d, want 502", res.status)
	}
	if s := statsOf(t, p, addr); !s.Ejected {
		t.Fatalf("backend %+v not ejected after a refused connect", s)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up") })}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { backend.Close() })
	if res := get(t, srv, "app.example", "/"); res.status != 200 || res.body != "up" {
		t.Errorf("after the backend listens: %d %q, want 200 from it though it is ejected", res.status, res.body)
	}
}

func TestBackendTLS(t *testing.T) {
	tlsBackend := newTLSBackend(t, "secure")
	tests := []struct {
		name       string
		verify     bool
		wantStatus int
	}{
		{name: "without verification", verify: false, wantStatus: 200},
		// httptest's certificate is signed by no root the proxy trusts.
		{name: "with verification", verify: true, wantStatus: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := routeOf("/", addr(tlsBackend))
			r.BackendTLS = &routing.BackendTLS{Verify: tt.verify}
			p := newTestProxy(t, Options{}, nil)
			mustApply(t, p, tableOf(hostOf("app.example", r)))
			srv := serve(t, p)
			res := get(t, srv, "app.example", "/")
			if res.status != tt.wantStatus {
				t.Fatalf("status %d (%q), want %d", res.status, res.body, tt.wantStatus)
			}
			if tt.wantStatus == 200 && res.echo.Backend != "secure" {
				t.Errorf("reached %q, want the TLS backend", res.echo.Backend)
			}
			if s := statsOf(t, p, addr(tlsBackend)); s.Ejected {
				t.Errorf("a TLS failure ejected the backend; only connect failures should")
			}
		})
	}
}

// hangUpBackend accepts connections, reads a little of the request and
// closes the connection without answering: a backend that died with the
// request on its socket. reset sends an RST, else a FIN.
func hangUpBackend(t *testing.T, reset bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = c.Read(make([]byte, 4096))
				if reset {
					_ = c.(*net.TCPConn).SetLinger(0) // RST, not FIN
				}
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestLostConnectionRetriedForIdempotent: over real connections, a GET
// whose backend resets it before answering is served by another backend
// and the dead one is ejected; a POST is not replayed (502).
func TestLostConnectionRetriedForIdempotent(t *testing.T) {
	dead, live := hangUpBackend(t, true), newBackend(t, "live")
	p := newTestProxy(t, Options{}, nil)
	// Source balancing with one client picks one backend first every time;
	// two routes in either order cover "dead first".
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", dead, addr(live)))))
	srv := serve(t, p)
	for range 4 {
		if res := get(t, srv, "app.example", "/"); res.status != 200 || res.echo.Backend != "live" {
			t.Fatalf("GET: %d %q from %q, want 200 from the live backend", res.status, res.body, res.echo.Backend)
		}
	}
	if s := statsOf(t, p, dead); !s.Ejected || s.Failures == 0 {
		t.Errorf("the resetting backend: %+v, want it ejected after a failure", s)
	}

	// A POST may have done its work: never replayed, whatever the backend.
	p2 := newTestProxy(t, Options{}, nil)
	mustApply(t, p2, tableOf(hostOf("app.example", routeOf("/", dead))))
	srv2 := serve(t, p2)
	res := do(t, srv2.Client(), srv2, http.MethodPost, "app.example", "/", strings.NewReader("x"), nil)
	if res.status != http.StatusBadGateway {
		t.Errorf("POST to a backend that resets: %d, want 502", res.status)
	}
}
