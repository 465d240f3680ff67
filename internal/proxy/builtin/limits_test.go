package builtin

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMaxBodyBytes: a body over MaxBodyBytes gets 413 with
// X-Interlock-Error body-too-large: at once when Content-Length says so
// (the backend is never asked), and when a chunked body grows past it;
// a body within the limit is forwarded whole. The backend is not counted
// as failing.
func TestMaxBodyBytes(t *testing.T) {
	var reached atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	}))
	t.Cleanup(be.Close)
	al, buf := memoryAccessLog(t, AccessLogJSON)
	p := newTestProxy(t, Options{MaxBodyBytes: 1000, AccessLog: al}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(be)))))
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})
	client := &http.Client{Timeout: 5 * time.Second}

	post := func(body io.Reader, length int64) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+a+"/upload", body)
		req.Host = "app.example"
		req.ContentLength = length
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	// Within the limit, with and without a length.
	if res, body := post(strings.NewReader(strings.Repeat("x", 1000)), 1000); res.StatusCode != 200 || body != "got 1000" {
		t.Errorf("1000 bytes: %d %q", res.StatusCode, body)
	}
	if res, body := post(io.MultiReader(strings.NewReader(strings.Repeat("x", 999))), -1); res.StatusCode != 200 || body != "got 999" {
		t.Errorf("999 chunked bytes: %d %q", res.StatusCode, body)
	}
	before := reached.Load()

	// Content-Length over the limit: answered before any backend.
	res, body := post(strings.NewReader(strings.Repeat("x", 1001)), 1001)
	if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("X-Interlock-Error") != "body-too-large" ||
		body != "interlock: request body larger than 1000 bytes\n" {
		t.Errorf("1001 bytes: %d %q %q", res.StatusCode, res.Header.Get("X-Interlock-Error"), body)
	}
	if reached.Load() != before {
		t.Error("a body declared too large reached the backend")
	}

	// Chunked, growing past the limit while it is sent.
	res, body = post(io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))), -1)
	if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("X-Interlock-Error") != "body-too-large" {
		t.Errorf("5000 chunked bytes: %d %q %q", res.StatusCode, res.Header.Get("X-Interlock-Error"), body)
	}
	if s := statsOf(t, p, addr(be)); s.Failures != 0 {
		t.Errorf("backend failures %d after bodies too large; the client is to blame", s.Failures)
	}
	var logged []int
	for _, l := range accessLines(t, al, buf) {
		logged = append(logged, parseJSONEntry(t, l).Status)
	}
	if fmt.Sprint(logged) != "[200 200 413 413]" {
		t.Errorf("access log statuses %v", logged)
	}
}

// TestMaxHeaderBytes: net/http answers 431 to a request head past the
// server's MaxHeaderBytes (plus its 4 KiB of slack), before the proxy sees
// it; a head within it is served.
func TestMaxHeaderBytes(t *testing.T) {
	b := newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 8 << 10})
	send := func(n int) string {
		got, _ := rawExchange(t, a, []byte("GET / HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\nX-Big: "+strings.Repeat("a", n)+"\r\n\r\n"), 5*time.Second)
		line, _, _ := strings.Cut(got, "\r\n")
		return line
	}
	if got := send(4 << 10); got != "HTTP/1.1 200 OK" {
		t.Errorf("4 KiB header: %q, want 200", got)
	}
	if got := send(16 << 10); got != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Errorf("16 KiB header with an 8 KiB limit: %q, want 431", got)
	}
}

// TestSlowloris: a few hundred connections that send their headers a byte
// at a time are cut at ReadHeaderTimeout, and ordinary requests keep being
// served all along, quickly. Loopback only, bounded in time.
func TestSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("slowloris run takes a few seconds")
	}
	b := newBackend(t, "b")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
	const timeout = time.Second
	a := serveWith(t, p, &http.Server{ReadHeaderTimeout: timeout, IdleTimeout: 5 * time.Second})

	const slow = 300
	var (
		wg          sync.WaitGroup
		cut         atomic.Int64 // connections the server closed
		cutTooLate  atomic.Int64
		dialFailure atomic.Int64
	)
	start := time.Now()
	for range slow {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", a, 2*time.Second)
			if err != nil {
				dialFailure.Add(1)
				return
			}
			defer c.Close()
			opened := time.Now()
			head := "GET / HTTP/1.1\r\nHost: app.example\r\nX-Slow: " + strings.Repeat("z", 100)
			_ = c.SetDeadline(opened.Add(4 * timeout)) // the whole run is bounded
			for i := 0; i < len(head); i++ {
				if _, err := c.Write([]byte{head[i]}); err != nil {
					break // the server hung up
				}
				time.Sleep(100 * time.Millisecond)
			}
			// The server must have given up on us: a read sees EOF or
			// a 408, not a timeout of our own deadline.
			_, err = io.ReadAll(bufio.NewReader(c))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return // not cut within 4x the timeout: counted as not cut
			}
			cut.Add(1)
			if time.Since(opened) > 3*timeout {
				cutTooLate.Add(1)
			}
		})
	}

	// Meanwhile, ordinary requests.
	client := &http.Client{Timeout: 2 * time.Second}
	var ok, failed int
	var slowest time.Duration
	for time.Since(start) < 2500*time.Millisecond {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodGet, "http://"+a+"/", nil)
		req.Host = "app.example"
		res, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		if err != nil || res.StatusCode != 200 {
			failed++
		} else {
			ok++
		}
		slowest = max(slowest, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("%d slow connections: %d cut by the server (%d later than 3x the timeout), %d dial failures; %d ordinary requests ok, %d failed, slowest %v",
		slow, cut.Load(), cutTooLate.Load(), dialFailure.Load(), ok, failed, slowest)
	if failed > 0 || ok < 20 {
		t.Errorf("ordinary requests during the slowloris run: %d ok, %d failed", ok, failed)
	}
	if slowest > time.Second {
		t.Errorf("slowest ordinary request took %v", slowest)
	}
	if cut.Load() != slow-dialFailure.Load() || dialFailure.Load() > 0 {
		t.Errorf("%d of %d slow connections were cut by the server (%d dial failures)", cut.Load(), slow, dialFailure.Load())
	}
	if cutTooLate.Load() > 0 {
		t.Errorf("%d slow connections were cut later than 3x ReadHeaderTimeout", cutTooLate.Load())
	}
}

// TestBackendTimeouts: a backend that takes the request but does not
// answer within ResponseHeaderTimeout gets 504 backend-timeout (not a
// retry: the request was sent); BackendIdleTimeout reaches the transports.
func TestBackendTimeouts(t *testing.T) {
	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); stuck.Close() })
	p := newTestProxy(t, Options{ResponseHeaderTimeout: 200 * time.Millisecond, BackendIdleTimeout: 7 * time.Second}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(stuck)))))
	t0 := time.Now()
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://app.example/", nil))
	if w.Code != http.StatusGatewayTimeout || w.Header().Get("X-Interlock-Error") != "backend-timeout" {
		t.Errorf("stuck backend: %d %q %q", w.Code, w.Header().Get("X-Interlock-Error"), w.Body)
	}
	if took := time.Since(t0); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("answered after %v, want about 200ms", took)
	}
	e := p.engine.(*httpEngine)
	for _, tr := range []*http.Transport{e.plain, e.tlsVerify, e.tlsInsecure} {
		if tr.IdleConnTimeout != 7*time.Second || tr.ResponseHeaderTimeout != 200*time.Millisecond {
			t.Errorf("transport idle %v, response header %v", tr.IdleConnTimeout, tr.ResponseHeaderTimeout)
		}
	}
	// Defaults: no response header limit, 90s idle.
	d := newTestProxy(t, Options{}, nil).engine.(*httpEngine)
	if d.plain.ResponseHeaderTimeout != 0 || d.plain.IdleConnTimeout != idleConnTimeout {
		t.Errorf("default transport: response header %v, idle %v", d.plain.ResponseHeaderTimeout, d.plain.IdleConnTimeout)
	}
}
