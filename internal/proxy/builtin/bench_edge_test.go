package builtin

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkEdge measures what the edge features cost the data plane, in one
// run: the access log (off, common and JSON lines to a file) and the PROXY
// protocol (off, on), with forwarded-header trust on the side.
//
//   - handler/...: ServeHTTP called directly against a raw backend, as in
//     BenchmarkServeHTTP/handler: the proxy's own cost per request, allocs
//     included.
//   - loopback/...: a client over loopback keep-alive connections through
//     Proxy.Serve (an http.Server) to a raw backend; req/s is the figure
//     for BENCHMARKS.md. With PROXY protocol on, every client connection
//     starts with a v2 header (HAProxy's send-proxy-v2), read once per
//     connection.
//
// cpu-us/op is the process's user+system CPU time per request (client,
// proxy and backend together, setup included): unlike ns/op and req/s it
// hardly moves when other work shares the machine, so it is the figure
// to compare variants by on a busy host.
//
// go test -run '^$' -bench BenchmarkEdge -benchtime 3s ./internal/proxy/builtin
func BenchmarkEdge(b *testing.B) {
	accessLog := func(b *testing.B, format string) *AccessLog {
		al, err := OpenAccessLog(AccessLogOptions{Path: filepath.Join(b.TempDir(), "access.log"), Format: format})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { al.Close() })
		return al
	}
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) Options
	}{
		{name: "off", opts: func(*testing.B) Options { return Options{} }},
		{name: "access-common-file", opts: func(b *testing.B) Options { return Options{AccessLog: accessLog(b, AccessLogCommon)} }},
		{name: "access-json-file", opts: func(b *testing.B) Options { return Options{AccessLog: accessLog(b, AccessLogJSON)} }},
		{name: "forwarded-trusted", opts: func(b *testing.B) Options { return Options{ForwardedTrusted: prefixes(b, "192.0.2.0/24")} }},
	} {
		b.Run("handler/"+bc.name, func(b *testing.B) {
			opts := bc.opts(b)
			cpu := startCPU(b)
			benchHandler(b, opts)
			cpu.report(b)
		})
	}
	for _, bc := range []struct {
		name   string
		pp     bool
		format string // access log, "" for none
	}{
		{name: "plain"},
		{name: "proxyproto", pp: true},
		{name: "plain+access-common", format: AccessLogCommon},
		{name: "plain+access-json", format: AccessLogJSON},
		{name: "proxyproto+access-json", pp: true, format: AccessLogJSON},
	} {
		b.Run("loopback/"+bc.name, func(b *testing.B) {
			opts := Options{}
			if bc.pp {
				opts.ProxyProtocolTrusted = prefixes(b, "127.0.0.1/32")
			}
			if bc.format != "" {
				opts.AccessLog = accessLog(b, bc.format)
			}
			cpu := startCPU(b)
			benchLoopback(b, opts, bc.pp)
			cpu.report(b)
		})
	}
}

// benchLoopback runs parallel keep-alive clients through p.Serve.
func benchLoopback(b *testing.B, opts Options, sendProxyHeader bool) {
	be := newRawBackend(b)
	p := newTestProxy(b, opts, nil)
	mustApply(b, p, tableOf(hostOf("app.example", routeOf("/", be))))
	a := serveWith(b, p, &http.Server{ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute})
	header := proxyV2(b, "203.0.113.50:40000")
	tr := &http.Transport{
		MaxIdleConnsPerHost: 256,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, a)
			if err == nil && sendProxyHeader {
				_, err = c.Write(header)
			}
			return c, err
		},
	}
	client := &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		req.RequestURI = ""
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
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// cpuMeter measures the process's CPU time over one benchmark run.
type cpuMeter struct{ start time.Duration }

func startCPU(b *testing.B) cpuMeter { return cpuMeter{start: processCPU(b)} }

// report adds cpu-us/op to b's results.
func (m cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU(b)-m.start)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAccessLogLine is the access log's own cost per request: format
// one line (a forwarded request with its route and backend) and write it
// to a file, from parallel goroutines sharing the log.
func BenchmarkAccessLogLine(b *testing.B) {
	rt := &route{host: "app.example", path: "/api"}
	for _, format := range []string{AccessLogCommon, AccessLogJSON} {
		b.Run(format, func(b *testing.B) {
			al, err := OpenAccessLog(AccessLogOptions{Path: filepath.Join(b.TempDir(), "access.log"), Format: format})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { al.Close() })
			p := &Proxy{access: al}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest(http.MethodGet, "http://app.example/api/items?page=2", nil)
				r.RemoteAddr = "203.0.113.7:40000"
				rec := &accessRecord{Context: r.Context(), start: time.Now(), route: rt, backend: "172.17.0.3:8000"}
				rec.w.code, rec.w.bytes = 200, 512
				for pb.Next() {
					p.logRequest(rec, r)
				}
			})
		})
	}
}

// BenchmarkEdgeInterleaved compares the loopback variants of BenchmarkEdge
// on a busy machine: all of them are set up at once, then run in turns of
// 200ms (in a rotating order) for the benchmark time, so that whatever
// else the host is doing weighs on every variant alike. It reports each
// variant's req/s and its ratio to plain (x-plain). Run it once:
//
// go test -run '^$' -bench BenchmarkEdgeInterleaved -benchtime 1x ./internal/proxy/builtin
//
// with EDGE_BENCH_SECONDS (default 20) setting the length of the run.
func BenchmarkEdgeInterleaved(b *testing.B) {
	total := 20 * time.Second
	if s, err := time.ParseDuration(os.Getenv("EDGE_BENCH_SECONDS") + "s"); err == nil && s > 0 {
		total = s
	}
	const (
		slice   = 200 * time.Millisecond
		clients = 16
	)
	type variant struct {
		name   string
		pp     bool
		format string
		client *http.Client
		reqs   int64
		took   time.Duration
	}
	variants := []*variant{
		{name: "plain"},
		{name: "proxyproto", pp: true},
		{name: "access-common", format: AccessLogCommon},
		{name: "access-json", format: AccessLogJSON},
		{name: "proxyproto+access-json", pp: true, format: AccessLogJSON},
	}
	header := proxyV2(b, "203.0.113.50:40000")
	for _, v := range variants {
		opts := Options{}
		if v.pp {
			opts.ProxyProtocolTrusted = prefixes(b, "127.0.0.1/32")
		}
		if v.format != "" {
			al, err := OpenAccessLog(AccessLogOptions{Path: filepath.Join(b.TempDir(), "access.log"), Format: v.format})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { al.Close() })
			opts.AccessLog = al
		}
		p := newTestProxy(b, opts, nil)
		mustApply(b, p, tableOf(hostOf("app.example", routeOf("/", newRawBackend(b)))))
		a := serveWith(b, p, &http.Server{ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute})
		pp := v.pp
		tr := &http.Transport{
			MaxIdleConnsPerHost: clients,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, network, a)
				if err == nil && pp {
					_, err = c.Write(header)
				}
				return c, err
			},
		}
		b.Cleanup(tr.CloseIdleConnections)
		v.client = &http.Client{Transport: tr}
	}
	run := func(v *variant, d time.Duration) int64 {
		var n atomic.Int64
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, "http://app.example/", nil)
				for time.Now().Before(deadline) {
					res, err := v.client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					n.Add(1)
				}
			})
		}
		wg.Wait()
		return n.Load()
	}
	for _, v := range variants {
		run(v, 100*time.Millisecond) // warm up: connections, pools
	}
	b.ResetTimer()
	for round := 0; time.Duration(round)*slice*time.Duration(len(variants)) < total; round++ {
		for k := range variants {
			v := variants[(round+k)%len(variants)]
			t0 := time.Now()
			v.reqs += run(v, slice)
			v.took += time.Since(t0)
		}
	}
	b.StopTimer()
	base := float64(variants[0].reqs) / variants[0].took.Seconds()
	for _, v := range variants {
		rps := float64(v.reqs) / v.took.Seconds()
		b.ReportMetric(rps, v.name+"-req/s")
		b.ReportMetric(rps/base, v.name+"-x-plain")
	}
}
