package builtin

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// testRoute builds a route over the given addresses, each with fresh state,
// without going through compile.
func testRoute(bal routing.Balance, addrs ...string) *route {
	rt := &route{host: "app.example", path: "/", balance: bal}
	for _, a := range addrs {
		rt.backends = append(rt.backends, backend{addr: a, hash: hashString(a), state: &backendState{addr: a}})
	}
	return rt
}

// shareState makes rt use the states of from for equal addresses, as
// compile does across Applies.
func shareState(rt, from *route) {
	for i := range rt.backends {
		for _, b := range from.backends {
			if b.addr == rt.backends[i].addr {
				rt.backends[i].state = b.state
			}
		}
	}
}

func addrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.0.%d:80", i+1)
	}
	return out
}

const now = int64(time.Hour) // a clock reading well after any test ejection

func TestPickRoundRobinSpreadsEvenly(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		ejected []int
		picks   int
		want    map[int]int
	}{
		{name: "three backends", n: 3, picks: 300, want: map[int]int{0: 100, 1: 100, 2: 100}},
		{name: "one backend", n: 1, picks: 10, want: map[int]int{0: 10}},
		{name: "ejected one skipped", n: 3, ejected: []int{1}, picks: 300, want: map[int]int{0: 100, 2: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := testRoute(routing.RoundRobin, addrs(tt.n)...)
			for _, i := range tt.ejected {
				rt.backends[i].state.eject(now, time.Minute)
			}
			got := map[int]int{}
			for range tt.picks {
				got[rt.pick(now, "", nil)]++
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("picks per backend = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPickLeastConn(t *testing.T) {
	tests := []struct {
		name    string
		load    []int64
		ejected []int
		want    []int // the indexes that may be picked; all of them must be
	}{
		{name: "ascending", load: []int64{0, 1, 2, 3}, want: []int{0}},
		{name: "descending", load: []int64{3, 2, 1, 0}, want: []int{3}},
		{name: "minimum in the middle", load: []int64{2, 5, 0, 4, 1}, want: []int{2}},
		{name: "descending then tie", load: []int64{5, 3, 1, 1}, want: []int{2, 3}},
		{name: "tie first and last", load: []int64{0, 2, 1, 0}, want: []int{0, 3}},
		{name: "all idle", load: []int64{0, 0, 0}, want: []int{0, 1, 2}},
		{name: "least loaded ejected", load: []int64{3, 0, 2}, ejected: []int{1}, want: []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := testRoute(routing.LeastConn, addrs(len(tt.load))...)
			for i, l := range tt.load {
				rt.backends[i].state.inFlight.Store(l)
			}
			for _, i := range tt.ejected {
				rt.backends[i].state.eject(now, time.Minute)
			}
			// Every rotation of the scan start, twice over: order must not
			// matter, and ties must all be used.
			got := map[int]int{}
			for range 2 * len(tt.load) {
				got[rt.pick(now, "", nil)]++
			}
			for i := range got {
				if !slices.Contains(tt.want, i) {
					t.Errorf("picked backend %d with load %d; want one of %v (picks %v)", i, tt.load[i], tt.want, got)
				}
			}
			for _, i := range tt.want {
				if got[i] == 0 {
					t.Errorf("tied least-loaded backend %d never picked (picks %v)", i, got)
				}
			}
		})
	}
}

func TestPickLeastConnFollowsLoad(t *testing.T) {
	// Picks that begin a request raise the load, so a run of picks on an
	// idle route fills the backends evenly.
	rt := testRoute(routing.LeastConn, addrs(4)...)
	for range 40 {
		i := rt.pick(now, "", nil)
		rt.backends[i].state.begin()
	}
	for i, b := range rt.backends {
		if l := b.state.inFlight.Load(); l != 10 {
			t.Errorf("backend %d has %d in flight, want 10", i, l)
		}
	}
}

func clients(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("192.168.%d.%d", i/250, i%250+1)
	}
	return out
}

func TestPickSourceSticky(t *testing.T) {
	rt := testRoute(routing.Source, addrs(5)...)
	perBackend := map[int]int{}
	for _, c := range clients(500) {
		first := rt.pick(now, c, nil)
		perBackend[first]++
		for range 5 {
			if again := rt.pick(now, c, nil); again != first {
				t.Fatalf("client %s moved from backend %d to %d with no change", c, first, again)
			}
		}
	}
	for i := range rt.backends {
		// 100 expected each; a far smaller share means a bad hash.
		if perBackend[i] < 60 {
			t.Errorf("backend %d got %d of 500 clients, want a fair share (all: %v)", i, perBackend[i], perBackend)
		}
	}
}

func TestPickSourceMovesOnlyAffectedClients(t *testing.T) {
	all := addrs(5)
	before := testRoute(routing.Source, all...)
	removed := all[2]
	tests := []struct {
		name  string
		after func() *route
	}{
		{
			name: "backend removed from the table",
			after: func() *route {
				rt := testRoute(routing.Source, all[0], all[1], all[3], all[4])
				shareState(rt, before)
				return rt
			},
		},
		{
			name: "backend ejected",
			after: func() *route {
				rt := testRoute(routing.Source, all...)
				rt.backends[2].state.eject(now, time.Minute)
				return rt
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := tt.after()
			moved := 0
			for _, c := range clients(500) {
				was := before.backends[before.pick(now, c, nil)].addr
				is := after.backends[after.pick(now, c, nil)].addr
				switch {
				case was == removed:
					moved++
					if is == removed {
						t.Errorf("client %s still on the removed backend", c)
					}
				case is != was:
					t.Errorf("client %s moved from %s to %s, but only %s went away", c, was, is, removed)
				}
			}
			if moved == 0 {
				t.Error("no client was on the removed backend: the test proves nothing")
			}
		})
	}
	t.Run("backend added takes clients only for itself", func(t *testing.T) {
		grown := testRoute(routing.Source, append(addrs(5), "10.0.0.99:80")...)
		gained := 0
		for _, c := range clients(500) {
			was := before.backends[before.pick(now, c, nil)].addr
			is := grown.backends[grown.pick(now, c, nil)].addr
			if is != was {
				if is != "10.0.0.99:80" {
					t.Errorf("client %s moved from %s to %s, not to the new backend", c, was, is)
				}
				gained++
			}
		}
		if gained == 0 {
			t.Error("the new backend got no client")
		}
	})
}

func TestPickRandomUsesAll(t *testing.T) {
	rt := testRoute(routing.Random, addrs(5)...)
	rt.backends[4].state.eject(now, time.Minute)
	got := map[int]int{}
	for range 2000 {
		got[rt.pick(now, "", nil)]++
	}
	for i := range 4 {
		// 500 expected; missing one entirely has odds below 1e-200.
		if got[i] < 300 {
			t.Errorf("backend %d picked %d of 2000 times, want about 500 (all: %v)", i, got[i], got)
		}
	}
	if got[4] != 0 {
		t.Errorf("ejected backend picked %d times", got[4])
	}
}

func TestPickExcludes(t *testing.T) {
	for _, bal := range routing.Balances {
		t.Run(string(bal), func(t *testing.T) {
			tests := []struct {
				name    string
				n       int
				ejected []int
				tried   []int
				want    []int // allowed results; {-1} for none
			}{
				{name: "no backends", n: 0, want: []int{-1}},
				{name: "tried skipped", n: 3, tried: []int{0, 2}, want: []int{1}},
				{name: "tried and ejected", n: 3, tried: []int{0}, ejected: []int{1}, want: []int{2}},
				{name: "all tried", n: 2, tried: []int{1, 0}, want: []int{-1}},
				{name: "all ejected", n: 3, ejected: []int{0, 1, 2}, want: []int{-1}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					rt := testRoute(bal, addrs(tt.n)...)
					for _, i := range tt.ejected {
						rt.backends[i].state.eject(now, time.Minute)
					}
					for range 10 {
						if got := rt.pick(now, "192.168.0.1", tt.tried); !slices.Contains(tt.want, got) {
							t.Fatalf("pick = %d, want one of %v", got, tt.want)
						}
					}
				})
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, bal := range routing.Balances {
		t.Run(string(bal), func(t *testing.T) {
			rt := testRoute(bal, addrs(8)...)
			rt.backends[3].state.eject(now, time.Minute)
			tried := []int{1}
			if n := testing.AllocsPerRun(100, func() { rt.pick(now, "192.168.7.7", tried) }); n != 0 {
				t.Errorf("pick allocates %v times per call, want 0", n)
			}
		})
	}
	t.Run("match", func(t *testing.T) {
		tbl := &table{hosts: map[string]*host{"app.example": {name: "app.example", routes: []*route{
			testRoute(routing.RoundRobin, addrs(2)...),
		}}}}
		tbl.hosts["app.example"].routes[0].path = "/"
		if n := testing.AllocsPerRun(100, func() { tbl.match("app.example:8080", "/x") }); n != 0 {
			t.Errorf("match allocates %v times per call, want 0", n)
		}
	})
}
