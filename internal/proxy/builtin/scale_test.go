package builtin

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// BenchmarkApplyMemory10k is an edge's memory at scale: the built-in
// proxy holding a table of 2,000 hosts and 10,000 backends (compiled
// routes, backend states, transports). It reports the time of one Apply
// of a changed table and the live heap afterwards.
func BenchmarkApplyMemory10k(b *testing.B) {
	mk := func(gen int) routing.Table {
		var t routing.Table
		for h := range 2000 {
			host := routing.Host{Name: fmt.Sprintf("app-%04d.example.com", h), Aliases: []string{fmt.Sprintf("www.app-%04d.example.com", h)}}
			r := routing.Route{Path: "/", Balance: routing.LeastConn}
			for k := range 5 {
				r.Backends = append(r.Backends, routing.Backend{Address: fmt.Sprintf("10.%d.%d.%d:8000", gen%2, h/250, (h%250)+k)})
			}
			host.Routes = []routing.Route{r}
			t.Hosts = append(t.Hosts, host)
		}
		t.Normalize()
		return t
	}
	tables := [2]routing.Table{mk(0), mk(1)}
	p := New(Options{Logger: slog.New(slog.DiscardHandler)})
	defer p.Close()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := p.Apply(context.Background(), tables[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	tables[0], tables[1] = routing.Table{}, routing.Table{} // only the proxy's own copy stays
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "MB-live")
}
