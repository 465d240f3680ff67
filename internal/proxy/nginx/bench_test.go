package nginx

import (
	"fmt"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// benchTable has hosts*routes routes of backends each.
func benchTable(hosts, routes, backendsPer int) routing.Table {
	t := routing.Table{}
	n := 0
	for h := range hosts {
		host := routing.Host{Name: fmt.Sprintf("svc%d.example.com", h)}
		for r := range routes {
			rt := routing.Route{Path: "/", WebSocketPaths: []string{"/ws"}}
			if r > 0 {
				rt.Path = fmt.Sprintf("/r%d", r)
				rt.StripPath = true
			}
			for range backendsPer {
				rt.Backends = append(rt.Backends, routing.Backend{Address: fmt.Sprintf("10.%d.%d.%d:8080", n>>16&255, n>>8&255, n&255)})
				n++
			}
			host.Routes = append(host.Routes, rt)
		}
		t.Hosts = append(t.Hosts, host)
	}
	t.Normalize()
	return t
}

// BenchmarkRender10000Backends renders 10,000 backends: 1,000 hosts of 2
// routes with 5 backends each (view and template, not nginx -t).
func BenchmarkRender10000Backends(b *testing.B) {
	t := benchTable(1000, 2, 5)
	if t.BackendCount() != 10000 {
		b.Fatalf("%d backends", t.BackendCount())
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		b.Fatal(err)
	}
	s := goldenSettings()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		v, err := NewView(t, s)
		if err != nil {
			b.Fatal(err)
		}
		out, err := tmpl.Render(v)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size), "bytes/file")
}
