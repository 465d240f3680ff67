package discovery

import (
	"runtime"
	"testing"

	"github.com/interlock-proxy/interlock/internal/proxy/haproxy"
	"github.com/interlock-proxy/interlock/internal/proxy/nginx"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The scale target of the hardening issue, end to end from a snapshot:
// 10,000 containers in 2,000 routes, built into a table and rendered by
// each template driver (view and template; validation is nginx -t's and
// haproxy -c's time, measured in BENCHMARKS.md), each under 100 ms, and
// the whole state in well under 100 MB.

func scaleTable(b *testing.B) routing.Table {
	table, problems := Build(syntheticSnapshot(10000, 2000), Options{BackendAddress: "127.0.0.1"})
	if len(problems) != 0 || len(table.Hosts) != 2000 || table.BackendCount() != 10000 {
		b.Fatalf("%d hosts, %d backends, problems %v", len(table.Hosts), table.BackendCount(), problems)
	}
	return table
}

// BenchmarkScaleRender renders the table with each template driver.
func BenchmarkScaleRender(b *testing.B) {
	table := scaleTable(b)
	for _, d := range []struct {
		name string
		new  func(stateDir string) (func(routing.Table) ([]byte, error), error)
	}{
		{"nginx", func(dir string) (func(routing.Table) ([]byte, error), error) {
			d, err := nginx.New(nginx.Options{HTTPAddr: ":80", HTTPSAddr: ":443", StateDir: dir})
			if err != nil {
				return nil, err
			}
			return func(t routing.Table) ([]byte, error) { c, _, err := d.Render(t); return c, err }, nil
		}},
		{"haproxy", func(dir string) (func(routing.Table) ([]byte, error), error) {
			d, err := haproxy.New(haproxy.Options{HTTPAddr: ":80", HTTPSAddr: ":443", StateDir: dir})
			if err != nil {
				return nil, err
			}
			return func(t routing.Table) ([]byte, error) { c, _, err := d.Render(t); return c, err }, nil
		}},
	} {
		b.Run(d.name, func(b *testing.B) {
			render, err := d.new(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			var size int
			b.ReportAllocs()
			for b.Loop() {
				conf, err := render(table)
				if err != nil {
					b.Fatal(err)
				}
				size = len(conf)
			}
			b.ReportMetric(float64(size), "bytes/file")
		})
	}
}

// BenchmarkScaleMemory holds what a controller holds at that scale (the
// snapshot, the table and both rendered files) and reports the live heap
// after a collection, in MB.
func BenchmarkScaleMemory(b *testing.B) {
	var heap float64
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		snap := syntheticSnapshot(10000, 2000)
		table, _ := Build(snap, Options{BackendAddress: "127.0.0.1"})
		n, _ := nginx.New(nginx.Options{HTTPAddr: ":80", HTTPSAddr: ":443", StateDir: b.TempDir()})
		h, _ := haproxy.New(haproxy.Options{HTTPAddr: ":80", HTTPSAddr: ":443", StateDir: b.TempDir()})
		nconf, _, _ := n.Render(table)
		hconf, _, _ := h.Render(table)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapInuse-before.HeapInuse) / (1 << 20)
		runtime.KeepAlive(snap)
		runtime.KeepAlive(table)
		runtime.KeepAlive(nconf)
		runtime.KeepAlive(hconf)
	}
	b.ReportMetric(heap, "MB-live")
}
