package feed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// bigTable is 2,000 hosts with an alias each and 5 backends each: 10,000
// backends, the scale the other benchmarks use.
func bigTable() routing.Table {
	var t routing.Table
	for h := range 2000 {
		host := routing.Host{Name: fmt.Sprintf("app-%04d.example.com", h), Aliases: []string{fmt.Sprintf("www.app-%04d.example.com", h)}}
		r := routing.Route{Path: "/", Balance: routing.LeastConn}
		for b := range 5 {
			r.Backends = append(r.Backends, routing.Backend{Address: fmt.Sprintf("10.0.%d.%d:8000", h/250, (h%250)+b),
				Container: fmt.Sprintf("%064x", h*5+b), Name: fmt.Sprintf("app-%04d-%d", h, b)})
		}
		host.Routes = []routing.Route{r}
		t.Hosts = append(t.Hosts, host)
	}
	t.Normalize()
	return t
}

// A Go client gets the snapshot gzipped (its transport asks by itself)
// and applies the same table; the server counts the compressed bytes.
func TestSnapshotIsGzipped(t *testing.T) {
	_, k := newPKI(t)
	srv := NewServer(ServerOptions{Logger: quiet})
	big := bigTable()
	if err := srv.Apply(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	f := follow(t, ClientOptions{Controllers: []string{serve(t, srv, k.server)}, TLS: k.client, Wait: 5 * time.Second})
	if got := f.next(t, 10*time.Second); got != big.Hash() {
		t.Fatalf("applied %s, want %s", short(got), short(big.Hash()))
	}
	st := srv.Stats()
	t.Logf("10,000 backends: snapshot %d bytes, gzipped %d (%.1fx)", st.Size, st.GzipSize, float64(st.Size)/float64(st.GzipSize))
	if st.GzipSize <= 0 || st.GzipSize*4 > st.Size {
		t.Errorf("gzipped %d of %d bytes; want well under a quarter", st.GzipSize, st.Size)
	}
	if st.SentBytes != int64(st.GzipSize) {
		t.Errorf("sent %d bytes, want the gzipped %d", st.SentBytes, st.GzipSize)
	}
}

// BenchmarkApply10k is what a controller pays per change at 10,000
// backends: encoding and compressing the snapshot once for every edge.
func BenchmarkApply10k(b *testing.B) {
	big := bigTable()
	srv := NewServer(ServerOptions{Logger: quiet})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t := big
		t.Hosts = append([]routing.Host(nil), big.Hosts...)
		t.Hosts[0].Aliases = []string{fmt.Sprintf("v%d.example.com", i)} // a new version each time
		i++
		if err := srv.Apply(context.Background(), t); err != nil {
			b.Fatal(err)
		}
	}
	st := srv.Stats()
	b.ReportMetric(float64(st.Size), "bytes/snapshot")
	b.ReportMetric(float64(st.GzipSize), "gzip-bytes/snapshot")
}
