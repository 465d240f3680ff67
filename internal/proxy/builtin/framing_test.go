package builtin

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingBackend answers every request 200 and keeps a line for each request
// it read (head and body), parsed with net/http's strict reader.
type recordingBackend struct {
	mu   sync.Mutex
	reqs []string
}

func newRecordingBackend(t testing.TB) (*recordingBackend, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rb := &recordingBackend{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rb.serve(c)
		}
	}()
	return rb, ln.Addr().String()
}

func (rb *recordingBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		var framing []string
		if len(req.TransferEncoding) > 0 {
			framing = append(framing, "Transfer-Encoding: "+strings.Join(req.TransferEncoding, ","))
		}
		if v := req.Header.Values("Content-Length"); len(v) > 0 {
			framing = append(framing, "Content-Length: "+strings.Join(v, ","))
		}
		rb.mu.Lock()
		rb.reqs = append(rb.reqs, req.Method+" "+req.RequestURI+" ["+strings.Join(framing, "; ")+"] body="+string(body))
		rb.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

func (rb *recordingBackend) take() []string {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	out := rb.reqs
	rb.reqs = nil
	return out
}

// TestRequestFraming sends requests whose framing is ambiguous or invalid
// (the shapes of request smuggling) through both engines. The proxy may
// refuse a request, or take it as it reads it, but what it sends on is
// framed one way only: never a request hidden in another's body, never a
// request with both Content-Length and Transfer-Encoding, never a header a
// strict parser refuses.
func TestRequestFraming(t *testing.T) {
	rb, be := newRecordingBackend(t)
	tbl := tableOf(hostOf("s.test", routeOf("/", be)))
	tests := []struct {
		name string
		raw  string
		// refused: the proxy must answer 4xx/5xx and forward nothing.
		refused bool
	}{
		{name: "content-length and chunked", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n"},
		{name: "two content-lengths", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n", refused: true},
		{name: "two hosts", raw: "GET / HTTP/1.1\r\nHost: s.test\r\nHost: other.test\r\n\r\n", refused: true},
		{name: "identity then chunked", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: identity, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", refused: true},
		{name: "space before colon", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", refused: true},
		{name: "unknown coding", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", refused: true},
		{name: "NUL in a header", raw: "GET / HTTP/1.1\r\nHost: s.test\r\nX-A: a\x00b\r\n\r\n", refused: true},
		{name: "negative length", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nContent-Length: -1\r\n\r\n", refused: true},
		{name: "signed length", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nContent-Length: +3\r\n\r\nabc", refused: true},
		{name: "chunk extension", raw: "POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n"},
	}
	for _, e := range newEndpoints(t, Options{}, tbl, 0) {
		for _, tc := range tests {
			t.Run(e.engine+"/"+tc.name, func(t *testing.T) {
				rb.take()
				c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, tc.raw); err != nil {
					t.Fatal(err)
				}
				res, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				res.Body.Close()
				// Let a second, pipelined request reach the backend, if the
				// proxy sends one.
				time.Sleep(100 * time.Millisecond)
				got := rb.take()
				if tc.refused && (res.StatusCode < 400 || len(got) > 0) {
					t.Errorf("answered %d and forwarded %q; want it refused and nothing forwarded", res.StatusCode, got)
				}
				for _, r := range got {
					if strings.Contains(r, "Content-Length") && strings.Contains(r, "Transfer-Encoding") {
						t.Errorf("forwarded with two framings: %q", r)
					}
					if strings.Contains(r, "smuggled") && !strings.HasPrefix(r, "GET /smuggled") {
						t.Errorf("a request hidden in a body was forwarded: %q", r)
					}
				}
			})
		}
	}
}

// FuzzRequestFraming sends arbitrary bytes to the fasthttp engine, the
// default one, as a client connection would, and checks what reaches the
// backend: each request with one framing at most, and the proxy never
// panics (which would end the fuzzing process).
func FuzzRequestFraming(f *testing.F) {
	rb, be := newRecordingBackend(f)
	p := newTestProxy(f, Options{}, nil)
	mustApply(f, p, tableOf(hostOf("s.test", routeOf("/", be), routeOf("/strip", be))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	fs := p.NewFastServer(FastOptions{ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, IdleTimeout: time.Second})
	go func() { _ = fs.Serve(ln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fs.Shutdown(ctx)
	})
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: s.test\r\n\r\n",
		"POST /strip/x HTTP/1.1\r\nHost: s.test\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: s.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: s.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: s.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: s.test\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\nGET /strip HTTP/1.1\r\nHost: S.TEST:80\r\n\r\n",
		"GET http://s.test/abs HTTP/1.1\r\nHost: other\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: s.test\r\n\r\n",
		"GET /%2e%2e/x HTTP/1.1\r\nHost: s.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(raw)
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c) // until the proxy closes or the deadline
		for _, r := range rb.take() {
			if strings.Contains(r, "Content-Length") && strings.Contains(r, "Transfer-Encoding") {
				t.Errorf("forwarded with two framings: %q", r)
			}
		}
	})
}
