package builtin

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkServeHTTP measures one proxied GET over loopback keep-alive
// connections, from parallel clients.
//
//   - loopback: client -> http.Server(proxy) -> net/http backend; allocs/op
//     counts all three.
//   - handler: ServeHTTP called directly against a raw backend that
//     allocates next to nothing, so allocs/op is close to the proxy's own
//     (ReverseProxy, Transport and this package).
func BenchmarkServeHTTP(b *testing.B) {
	b.Run("loopback", func(b *testing.B) {
		be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("ok"))
		}))
		b.Cleanup(be.Close)
		p := newTestProxy(b, Options{}, nil)
		mustApply(b, p, tableOf(hostOf("app.example", routeOf("/", addr(be)))))
		srv := serve(b, p)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		b.Cleanup(client.CloseIdleConnections)

		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
			req.Host = "app.example"
			for pb.Next() {
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
		})
	})
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{name: "handler", opts: Options{}},
		// With request metrics: must allocate no more than without.
		{name: "handler-metrics", opts: Options{Requests: nopRecorder{}}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchHandler(b, bc.opts) })
	}
}

// benchHandler calls ServeHTTP directly against a raw backend.
func benchHandler(b *testing.B, opts Options) {
	be := newRawBackend(b)
	p := newTestProxy(b, opts, nil)
	mustApply(b, p, tableOf(hostOf("app.example", routeOf("/", be))))

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			w.code = 0
			clear(w.h)
			p.ServeHTTP(w, req)
			if w.code != 200 {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	return len(p), nil
}

// newRawBackend serves keep-alive GETs with a fixed answer, reading request
// heads with bufio's own buffer so that it does not allocate per request.
// Its goroutines end at cleanup: the listener and every connection are
// closed, and cleanup waits for them.
func newRawBackend(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	serveConn := func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				if _, err := c.Write(answer); err != nil {
					return
				}
			}
		}
	}
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { serveConn(c) })
		}
	})
	b.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// BenchmarkServeFast measures one proxied GET through a FastServer over
// loopback keep-alive connections against the raw backend, from parallel
// fasthttp clients: allocs/op counts the proxy and the client.
func BenchmarkServeFast(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) Options
	}{
		{name: "loopback", opts: func(*testing.B) Options { return Options{} }},
		{name: "loopback-metrics", opts: func(*testing.B) Options { return Options{Requests: nopRecorder{}} }},
		{name: "loopback-accesslog", opts: func(b *testing.B) Options {
			al, err := OpenAccessLog(AccessLogOptions{Path: "-", Stdout: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { al.Close() })
			return Options{AccessLog: al}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			be := newRawBackend(b)
			p := newTestProxy(b, bc.opts(b), nil)
			mustApply(b, p, tableOf(hostOf("app.example", routeOf("/", be))))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			fs := p.NewFastServer(FastOptions{})
			go fs.Serve(ln)
			b.Cleanup(func() { fs.Shutdown(context.Background()) })
			hc := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 256}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(res)
				req.SetRequestURI("http://app.example/")
				for pb.Next() {
					if err := hc.Do(req, res); err != nil {
						b.Error(err)
						return
					}
					if res.StatusCode() != 200 {
						b.Errorf("status %d", res.StatusCode())
						return
					}
				}
			})
		})
	}
}
