package routing

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func sample() Table {
	return Table{Hosts: []Host{
		{Name: "b.example.com", Aliases: []string{"y.example.com", "x.example.com", "x.example.com"}, Routes: []Route{
			{Path: "/", Backends: []Backend{{Address: "127.0.0.1:9002"}, {Address: "127.0.0.1:9001"}}},
			{Path: "/api/v1", Backends: []Backend{{Address: "10.0.0.2:80"}}},
			{Path: "/api", WebSocketPaths: []string{"/api/ws", "/api/a"}, Backends: []Backend{{Address: "10.0.0.1:80"}, {Address: "10.0.0.1:80"}}},
			{Path: "/zz", Backends: []Backend{{Address: "10.0.0.3:80"}}},
		}},
		{Name: "a.example.com", Routes: []Route{{Path: "/", Balance: LeastConn, Backends: []Backend{{Address: "127.0.0.1:9000"}}}}},
	}}
}

func shuffled(t Table, r *rand.Rand) Table {
	out := Table{Hosts: slices.Clone(t.Hosts)}
	r.Shuffle(len(out.Hosts), func(i, j int) { out.Hosts[i], out.Hosts[j] = out.Hosts[j], out.Hosts[i] })
	for i := range out.Hosts {
		h := &out.Hosts[i]
		h.Aliases = slices.Clone(h.Aliases)
		r.Shuffle(len(h.Aliases), func(i, j int) { h.Aliases[i], h.Aliases[j] = h.Aliases[j], h.Aliases[i] })
		h.Routes = slices.Clone(h.Routes)
		r.Shuffle(len(h.Routes), func(i, j int) { h.Routes[i], h.Routes[j] = h.Routes[j], h.Routes[i] })
		for j := range h.Routes {
			rt := &h.Routes[j]
			rt.Backends = slices.Clone(rt.Backends)
			r.Shuffle(len(rt.Backends), func(i, j int) { rt.Backends[i], rt.Backends[j] = rt.Backends[j], rt.Backends[i] })
		}
	}
	return out
}

func TestNormalizeIsCanonical(t *testing.T) {
	want := sample()
	want.Normalize()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		got := shuffled(sample(), r)
		got.Normalize()
		if got.Hash() != want.Hash() {
			t.Fatalf("permutation %d: hash differs after Normalize", i)
		}
	}
}

func TestNormalizeOrder(t *testing.T) {
	tb := sample()
	tb.Normalize()
	if tb.Hosts[0].Name != "a.example.com" {
		t.Errorf("hosts not sorted by name: %s first", tb.Hosts[0].Name)
	}
	b := tb.Hosts[1]
	if !slices.Equal(b.Aliases, []string{"x.example.com", "y.example.com"}) {
		t.Errorf("aliases = %v, want sorted and deduplicated", b.Aliases)
	}
	var paths []string
	for _, r := range b.Routes {
		paths = append(paths, r.Path)
	}
	if !slices.Equal(paths, []string{"/api/v1", "/api", "/zz", "/"}) {
		t.Errorf("routes = %v, want longest path first, then by path", paths)
	}
	api := b.Routes[1]
	if len(api.Backends) != 1 {
		t.Errorf("duplicate backend kept: %v", api.Backends)
	}
	if api.Balance != RoundRobin || api.Protocol != HTTP {
		t.Errorf("defaults not applied: balance %q protocol %q", api.Balance, api.Protocol)
	}
	if !slices.Equal(api.WebSocketPaths, []string{"/api/a", "/api/ws"}) {
		t.Errorf("websocket paths not sorted: %v", api.WebSocketPaths)
	}
	if root := b.Routes[3]; root.Backends[0].Address != "127.0.0.1:9001" {
		t.Errorf("backends not sorted by address: %v", root.Backends)
	}
}

func TestHashChangesWithContent(t *testing.T) {
	a := sample()
	a.Normalize()
	b := sample()
	b.Hosts[1].Routes[0].Backends[0].Address = "127.0.0.1:9999"
	b.Normalize()
	if a.Hash() == b.Hash() {
		t.Error("different backends gave the same hash")
	}
	if (Table{}).Hash() == a.Hash() {
		t.Error("empty table hashes like a full one")
	}
}

func TestLookup(t *testing.T) {
	tb := sample()
	tb.Normalize()
	for _, tc := range []struct {
		name, want string
		found      bool
	}{
		{name: "a.example.com", want: "a.example.com", found: true},
		{name: "x.example.com", want: "b.example.com", found: true},
		{name: "c.example.com", found: false},
	} {
		h, ok := tb.Lookup(tc.name)
		if ok != tc.found || h.Name != tc.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.name, h.Name, ok, tc.want, tc.found)
		}
	}
	if n := tb.BackendCount(); n != 6 {
		t.Errorf("BackendCount = %d, want 6", n)
	}
}

func TestACMENames(t *testing.T) {
	tb := Table{Hosts: []Host{
		{Name: "b.example", Aliases: []string{"a.example"}, TLS: &TLS{ACME: true}},
		{Name: "c.example", TLS: &TLS{ACME: true, CertFile: "c.pem", KeyFile: "c.key"}},
		{Name: "d.example", TLS: &TLS{ACME: true, Passthrough: true}},
		{Name: "e.example", TLS: &TLS{}},
		{Name: "f.example"},
		{Name: "g.example", TLS: &TLS{ACME: true, Only: true}},
	}}
	tb.Normalize()
	got := tb.ACMENames()
	want := []string{"a.example", "b.example", "g.example"}
	if !slices.Equal(got, want) {
		t.Errorf("ACMENames = %v, want %v", got, want)
	}
	if names := (Table{}).ACMENames(); names != nil {
		t.Errorf("empty table: ACMENames = %v, want nil", names)
	}
}
