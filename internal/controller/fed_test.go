package controller

import (
	"context"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestUpdateTable: a table fed whole (an edge's feed) is applied like a
// built one, and the same table again is no apply.
func TestUpdateTable(t *testing.T) {
	d := &fakeDriver{}
	c := New(d, discovery.Options{}, Options{Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	tbl := routing.Table{Hosts: []routing.Host{{Name: "a.example", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:1"}}}}}}}
	tbl.Normalize()
	for _, want := range []int{1, 1} {
		c.UpdateTable(tbl)
		deadline := time.Now().Add(2 * time.Second)
		for d.count() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		if got := d.count(); got != want {
			t.Fatalf("%d applies, want %d", got, want)
		}
	}
	if st := c.Status(); !st.Applied || st.Hash != tbl.Hash() || len(st.Problems) != 0 {
		t.Errorf("status %+v; want the fed table live", st)
	}
}
