package discovery

import (
	"fmt"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
)

// syntheticSnapshot is n containers spread over routes hosts, five
// replicas each, with the labels a real deployment carries.
func syntheticSnapshot(n, routes int) docker.Snapshot {
	snap := docker.Snapshot{Containers: make([]docker.Container, n)}
	for i := range snap.Containers {
		r := i % routes
		snap.Containers[i] = docker.Container{
			ID:      fmt.Sprintf("%064x", i),
			Name:    fmt.Sprintf("app-%d-%d", r, i),
			Created: time.Unix(int64(1700000000+i), 0),
			State:   "running",
			Labels: map[string]string{
				LabelHostname:                fmt.Sprintf("app%d", r),
				LabelDomain:                  "example.com",
				LabelAliasDomain:             fmt.Sprintf("www.app%d.example.com", r),
				LabelBalanceAlgorithm:        "leastconn",
				"com.docker.compose.project": "bench",
			},
			Ports: []docker.Port{{Private: 8080, Proto: "tcp", HostIP: "0.0.0.0", Public: uint16(20000 + i%40000)}},
		}
	}
	return snap
}

// BenchmarkBuild10k builds the table for 10,000 containers in 2,000 routes
// (DESIGN target: under 100 ms).
func BenchmarkBuild10k(b *testing.B) {
	snap := syntheticSnapshot(10000, 2000)
	b.ReportAllocs()
	for b.Loop() {
		table, problems := Build(snap, Options{BackendAddress: "127.0.0.1"})
		if len(problems) != 0 || len(table.Hosts) != 2000 {
			b.Fatalf("%d hosts, problems %v", len(table.Hosts), problems)
		}
	}
}

// BenchmarkBuildAndHash10k adds the hash the controller computes per snapshot.
func BenchmarkBuildAndHash10k(b *testing.B) {
	snap := syntheticSnapshot(10000, 2000)
	b.ReportAllocs()
	for b.Loop() {
		table, _ := Build(snap, Options{BackendAddress: "127.0.0.1"})
		_ = table.Hash()
	}
}
