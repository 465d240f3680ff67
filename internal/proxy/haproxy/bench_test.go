package haproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// bigTable has hosts×perHost backends, one route per host.
func bigTable(hosts, perHost int) routing.Table {
	t := routing.Table{}
	for h := 0; h < hosts; h++ {
		r := routing.Route{Path: "/", Balance: routing.LeastConn}
		if h%3 == 1 {
			r.HealthCheck = &routing.HealthCheck{Path: "/healthz", Interval: 5 * time.Second}
		}
		for b := 0; b < perHost; b++ {
			r.Backends = append(r.Backends, routing.Backend{
				Address: fmt.Sprintf("10.%d.%d.%d:%d", h/256%256, h%256, b%256, 8000+b), Name: fmt.Sprintf("app-%d-%d", h, b)})
		}
		t.Hosts = append(t.Hosts, routing.Host{Name: fmt.Sprintf("svc%d.example.com", h), Aliases: []string{fmt.Sprintf("alt%d.example.com", h)}, Routes: []routing.Route{r}})
	}
	t.Normalize()
	return t
}

// BenchmarkRender10000 is NewView plus the built-in template for 10,000
// backends, as Apply does on every change (twice: the file and its shape).
func BenchmarkRender10000(b *testing.B) {
	for _, c := range []struct{ hosts, per int }{{1000, 10}, {10000, 1}, {100, 100}} {
		b.Run(fmt.Sprintf("hosts=%d/backends=%d", c.hosts, c.hosts*c.per), func(b *testing.B) {
			t := bigTable(c.hosts, c.per)
			d, err := New(Options{HTTPAddr: ":8080", HTTPSAddr: ":8443", StateDir: "/var/lib/interlock/haproxy"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var n int
			for b.Loop() {
				conf, _, err := d.Render(t)
				if err != nil {
					b.Fatal(err)
				}
				n = len(conf)
			}
			b.ReportMetric(float64(n), "bytes/file")
		})
	}
}

// TestConvergenceBenchmark measures, with the real HAProxy, the time from
// the start of Apply to the first request answered by a new backend:
// through the Runtime API (the backend replaces the old one; no reload)
// and through a reload (the same plus a route change). It asserts nothing
// about timings; it runs with RUN_BENCH=1 (make bench) and prints figures
// for BENCHMARKS.md.
func TestConvergenceBenchmark(t *testing.T) {
	if os.Getenv("RUN_BENCH") != "1" {
		t.Skip("set RUN_BENCH=1 (make bench) to run the convergence benchmark")
	}
	for _, c := range []struct {
		name   string
		reload bool
		n      int
		others int // other backends in the table, so the file is not tiny
	}{
		{name: "runtime api", n: 200, others: 200},
		{name: "reload", reload: true, n: 50, others: 200},
		{name: "runtime api", n: 50, others: 10000},
		{name: "reload", reload: true, n: 20, others: 10000},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.name, c.others), func(t *testing.T) {
			r := newRig(t, nil)
			filler := bigTable(c.others/10, 10)
			cur := newBackend(t, "b0")
			tableWith := func(b *backend, i int) routing.Table {
				tb := routing.Table{Hosts: append(slices.Clone(filler.Hosts), routing.Host{Name: "web.test",
					Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{b.rb()}}}})}
				if c.reload {
					tb.Hosts[len(tb.Hosts)-1].Aliases = []string{fmt.Sprintf("a%d.web.test", i)}
				}
				tb.Normalize()
				return tb
			}
			r.apply(t, tableWith(cur, 0))
			reached(t, r, cur)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}
			var conv, applies []time.Duration
			for i := 1; i <= c.n; i++ {
				next := newBackend(t, fmt.Sprintf("b%d", i))
				tb := tableWith(next, i)
				seen := make(chan time.Time, 1)
				stop := make(chan struct{})
				go func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						req, _ := http.NewRequest(http.MethodGet, "http://"+r.http+"/", nil)
						req.Host = "web.test"
						resp, err := client.Do(req)
						if err != nil {
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if strings.HasPrefix(string(body), next.name+" ") {
							seen <- time.Now()
							return
						}
					}
				}()
				start := time.Now()
				if err := r.d.Apply(context.Background(), tb); err != nil {
					close(stop)
					t.Fatal(err)
				}
				applies = append(applies, time.Since(start))
				select {
				case at := <-seen:
					conv = append(conv, at.Sub(start))
				case <-time.After(10 * time.Second):
					close(stop)
					t.Fatalf("sample %d: %s never answered", i, next.name)
				}
				close(stop)
				cur.srv.Close()
				cur = next
			}
			s := r.d.Stats()
			t.Logf("%s, %d samples, %d other backends: converged %s; Apply returned %s; reloads %d, runtime applies %d",
				c.name, c.n, c.others, quantiles(conv), quantiles(applies), s.Reloads, s.RuntimeApplies)
		})
	}
}

func quantiles(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r := func(x time.Duration) string { return fmt.Sprintf("%.1fms", float64(x)/float64(time.Millisecond)) }
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s", r(q(0.50)), r(q(0.90)), r(q(0.99)), r(s[len(s)-1]))
}
