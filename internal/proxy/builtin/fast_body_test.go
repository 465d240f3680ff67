package builtin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bodyBackend answers with the length and SHA-256 of the request body it
// read, and signals first once it has read its first 64 KiB.
func bodyBackend(t *testing.T, first chan<- struct{}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.CopyN(h, r.Body, 64<<10)
		if err == nil && first != nil {
			select {
			case first <- struct{}{}:
			default:
			}
		}
		m, err2 := io.Copy(h, r.Body)
		if err == io.EOF {
			err = nil
		}
		if err = cmpErr(err, err2); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Body-Length", strconv.FormatInt(n+m, 10))
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
	}))
	t.Cleanup(srv.Close)
	return addr(srv)
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// TestUploadStreams: an upload larger than what the engine reads before
// the handler runs reaches the backend while the client is still sending
// it, with a declared length and chunked, in both engines. A proxy that
// read the body whole first would hold it in memory (and deadlock here:
// the client sends the second half only once the backend has the first).
func TestUploadStreams(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		first := make(chan struct{}, 1)
		be := bodyBackend(t, first)
		tbl := tableOf(hostOf("up.test", routeOf("/", be)))
		for _, e := range newEndpoints(t, Options{}, tbl, 0) {
			t.Run(fmt.Sprintf("%s/chunked=%v", e.engine, chunked), func(t *testing.T) {
				half := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16) // 3 MiB, over fastBufferedBody
				pr, pw := io.Pipe()
				req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/upload", pr)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = "up.test"
				if !chunked {
					req.ContentLength = int64(2 * len(half))
				}
				sent := make(chan error, 1)
				go func() {
					if _, err := pw.Write(half); err != nil {
						sent <- err
						return
					}
					select {
					case <-first:
					case <-time.After(10 * time.Second):
						err := fmt.Errorf("the backend got nothing of the first %d bytes in 10 s: the proxy holds the upload back", len(half))
						pw.CloseWithError(err)
						sent <- err
						return
					}
					_, err := pw.Write(half)
					pw.Close()
					sent <- err
				}()
				resp, err := e.client.Do(req)
				if err != nil {
					t.Fatalf("upload: %v (sender: %v)", err, <-sent)
				}
				defer resp.Body.Close()
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(append(append([]byte(nil), half...), half...))
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Body-Length") != strconv.Itoa(2*len(half)) ||
					resp.Header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) {
					t.Errorf("upload answered %d, backend read %s bytes, want 200 and %d bytes intact", resp.StatusCode, resp.Header.Get("X-Body-Length"), 2*len(half))
				}
			})
		}
	}
}

// TestMultipartBodyUntouched: a multipart/form-data body reaches the
// backend byte for byte, whatever its size: a proxy must not parse the
// form and write it out again (fasthttp's server does by default).
func TestMultipartBodyUntouched(t *testing.T) {
	be := bodyBackend(t, nil)
	tbl := tableOf(hostOf("form.test", routeOf("/", be)))
	form := func(file []byte) []byte {
		var b bytes.Buffer
		b.WriteString("a preamble the parser drops\r\n")
		b.WriteString("--XyZ\r\ncontent-disposition: form-data; name=\"field\"\r\nX-Extra:  kept as sent\r\n\r\nvalue\r\n")
		b.WriteString("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n")
		b.Write(file)
		b.WriteString("\r\n--XyZ--\r\nan epilogue\r\n")
		return b.Bytes()
	}
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		for _, size := range []int{10, 2 << 20} {
			t.Run(fmt.Sprintf("%s/%d", e.engine, size), func(t *testing.T) {
				body := form(bytes.Repeat([]byte{'x', 0, '\r', '\n'}, size/4))
				hdr := http.Header{"Content-Type": {"multipart/form-data; boundary=XyZ"}}
				r := do(t, e.client, e.srv, http.MethodPost, "form.test", "/form", bytes.NewReader(body), hdr)
				sum := sha256.Sum256(body)
				if r.status != http.StatusOK || r.header.Get("X-Body-Length") != strconv.Itoa(len(body)) || r.header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) {
					t.Errorf("form answered %d, backend read %s bytes (sha %s), want the %d bytes sent", r.status, r.header.Get("X-Body-Length"), r.header.Get("X-Body-Sha256"), len(body))
				}
			})
		}
	}
}

// TestFastBodyRetried: a body of at most 1 MiB is read before it is sent,
// so that a retry after a lost connection (an idempotent request) sends all
// of it again, not what was left of a stream: the fast path's buffer, and
// net/http's bufferReplayable.
func TestFastBodyRetried(t *testing.T) {
	tbl := tableOf(hostOf("retry.test", routeOf("/", hangUpBackend(t, false), bodyBackend(t, nil))))
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		body := bytes.Repeat([]byte("retry me "), (200<<10)/9)
		sum := sha256.Sum256(body)
		for i := range 4 {
			hdr := http.Header{"Idempotency-Key": {fmt.Sprint("k", i)}}
			r := do(t, e.client, e.srv, http.MethodPost, "retry.test", "/", bytes.NewReader(body), hdr)
			if r.status != http.StatusOK || r.header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) {
				t.Fatalf("%s: request %d: %d, backend read %s bytes; want 200 and the %d bytes sent\n%s", e.engine, i, r.status, r.header.Get("X-Body-Length"), len(body), e.logBuf.String())
			}
		}
	}
}

// TestIncompleteBody: a client that stops before its Content-Length, on a
// request whose body is read before it is sent (every fast-path body; an
// idempotent one with net/http), is answered 400 and its connection
// closed, and no backend sees the request.
func TestIncompleteBody(t *testing.T) {
	var hits atomic.Int32
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	be1, be2 := httptest.NewServer(count), httptest.NewServer(count)
	t.Cleanup(be1.Close)
	t.Cleanup(be2.Close)
	tbl := tableOf(hostOf("short.test", routeOf("/", addr(be1), addr(be2))))
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Past the 8 KiB fasthttp reads before the handler runs.
		_, _ = io.WriteString(c, "PUT / HTTP/1.1\r\nHost: short.test\r\nIdempotency-Key: k\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 20000))
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		answer, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(answer), "HTTP/1.1 400") || !strings.Contains(string(answer), "X-Interlock-Error: incomplete-body") {
			t.Errorf("%s: answer to a cut body:\n%s\nwant 400 with X-Interlock-Error: incomplete-body", e.engine, answer)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("%s: the backends got %d requests, want none", e.engine, n)
		}
		if got := e.p.Errors().ClientCanceled; got != 1 {
			t.Errorf("%s: ClientCanceled = %d, want 1", e.engine, got)
		}
	}
}

// TestLargeResponseHead: a backend's answer with 12 KiB of headers (a long
// Content-Security-Policy, several cookies) reaches the client whole
// through both engines.
func TestLargeResponseHead(t *testing.T) {
	csp := strings.TrimSpace(strings.Repeat("script-src 'sha256-abc' ", 300)) // 7 KiB
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		for i := range 4 {
			w.Header().Add("Set-Cookie", fmt.Sprintf("c%d=%s", i, strings.Repeat("v", 1200)))
		}
		_, _ = io.WriteString(w, "whole")
	}))
	t.Cleanup(be.Close)
	tbl := tableOf(hostOf("head.test", routeOf("/", addr(be))))
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		r := do(t, e.client, e.srv, http.MethodGet, "head.test", "/", nil, nil)
		if r.status != http.StatusOK || r.body != "whole" || r.header.Get("Content-Security-Policy") != csp || len(r.header.Values("Set-Cookie")) != 4 {
			t.Errorf("%s: %d %q, CSP of %d bytes, %d cookies; want 200 with the backend's whole head", e.engine, r.status, r.body, len(r.header.Get("Content-Security-Policy")), len(r.header.Values("Set-Cookie")))
		}
	}
}

// TestNoContentTypeAdded: an answer whose backend sent no Content-Type
// reaches the client without one (net/http would sniff one, fasthttp would
// default to text/plain), in both engines; one the backend sent is kept.
func TestNoContentTypeAdded(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/typed" {
			w.Header().Set("Content-Type", "application/x-thing")
		} else {
			w.Header()["Content-Type"] = nil // the test server would sniff too
		}
		_, _ = io.WriteString(w, "<html>looks like HTML</html>")
	}))
	t.Cleanup(be.Close)
	tbl := tableOf(hostOf("ct.test", routeOf("/", addr(be))))
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		// An escaped path takes fasthttp's fallback to ServeHTTP.
		for path, want := range map[string][]string{"/untyped": nil, "/un%74yped": nil, "/typed": {"application/x-thing"}} {
			r := do(t, e.client, e.srv, http.MethodGet, "ct.test", path, nil, nil)
			if got := r.header.Values("Content-Type"); r.status != http.StatusOK || !slices.Equal(got, want) {
				t.Errorf("%s %s: %d with Content-Type %q, want %q", e.engine, path, r.status, got, want)
			}
		}
	}
}

// TestBackendClosedIdleConnections: a backend that closes idle kept-alive
// connections (gunicorn after 2 s, Node.js after 5 s; 150 ms here) costs no
// request, not even a POST, which may not be sent twice: a connection the
// backend closed is found before the request goes out on it. Several
// connections idle at once, as after a burst.
func TestBackendClosedIdleConnections(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	be.Config.IdleTimeout = 150 * time.Millisecond
	be.Start()
	t.Cleanup(be.Close)
	tbl := tableOf(hostOf("idle.test", routeOf("/", addr(be))))
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		var failed atomic.Int32
		for range 3 {
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := fetch(e.client, e.srv, http.MethodPost, "idle.test", "/", strings.NewReader("payload"), nil)
					if err != nil || r.status != http.StatusOK {
						failed.Add(1)
					}
				}()
			}
			wg.Wait()
			time.Sleep(400 * time.Millisecond) // the backend closes its idle connections
		}
		if n := failed.Load(); n > 0 {
			t.Errorf("%s: %d of 12 POSTs failed on connections the backend had closed while idle", e.engine, n)
		}
	}
}
