package nginx

// The fuzz target builds tables the way Interlock does, through the label
// grammars of discovery (a test-only import: the driver itself never sees
// Docker or discovery types).

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// fuzzContainer is one labelled container; empty label values are unset.
func fuzzContainer(id string, port uint16, labels map[string]string) docker.Container {
	l := map[string]string{}
	for k, v := range labels {
		if v != "" {
			l[k] = v
		}
	}
	return docker.Container{
		ID: id, Name: "c" + id, Created: time.Unix(int64(port), 0), State: "running", Labels: l,
		Ports: []docker.Port{{Private: 80, Proto: "tcp", HostIP: "0.0.0.0", Public: port}},
	}
}

var fuzzSeeds = [][7]string{
	{"web", "example.com", "www.example.com", "/app", "/app/ws", "certs/a.pem", "leastconn"},
	{"a;b", "x}", "y{", "/a; return 200;", "/ws\n", "../../etc/passwd", "source"},
	{"app", "", "", "/caf%C3%A9/%24x%22y%3B%7B", "/caf%C3%A9/%24x%22y%3B%7B/ws", "a/b.pem", "random"},
	{"x", "test", "", "/", "/", "-rf", "roundrobin"},
	{"x", "", "", "/a%20b", "/a%20b/%23c", "", ""},
	{"\u0435xample", "com", "", "/%2e%2e", "", "", ""},
}

func FuzzRender(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], true, false)
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, hostname, domain, alias, root, ws, cert, balance string, rewrite, ssl bool) {
		labels := map[string]string{
			"interlock.hostname":           hostname,
			"interlock.domain":             domain,
			"interlock.alias_domain":       alias,
			"interlock.context_root":       root,
			"interlock.websocket_endpoint": ws,
			"interlock.balance_algorithm":  balance,
		}
		if rewrite {
			labels["interlock.context_root_rewrite"] = "true"
		}
		if ssl {
			labels["interlock.ssl_only"] = "true"
			labels["interlock.ssl_cert"] = cert
			labels["interlock.ssl_cert_key"] = cert
		}
		other := map[string]string{"interlock.hostname": "stable.example.com", "interlock.ssl_backend": "true"}
		if !ssl {
			other["interlock.websocket_endpoint"] = ws
			other["interlock.context_root"] = root
		}
		snap := docker.Snapshot{Containers: []docker.Container{
			fuzzContainer("1", 30001, labels),
			fuzzContainer("2", 30002, other),
			fuzzContainer("3", 30003, map[string]string{"interlock.hostname": hostname, "interlock.context_root": ws}),
		}}
		table, _ := discovery.Build(snap, discovery.Options{})
		s := goldenSettings()
		v, err := NewView(table, s)
		if err != nil {
			t.Fatal(err)
		}
		conf, err := tmpl.Render(v)
		if err != nil {
			t.Fatalf("a table discovery accepted does not render: %v\n%+v", err, table)
		}
		ds := checkStructure(t, conf)
		checkOnlyTableValues(t, ds, table, v)
	})
}

// checkOnlyTableValues proves nothing but the table's own values reached
// the file: every server name is a table name, every location a view path,
// every proxy_pass an upstream of the view, and the blocks add up.
func checkOnlyTableValues(t *testing.T, ds []*directive, table routing.Table, v View) {
	t.Helper()
	names := map[string]bool{}
	for _, h := range table.Hosts {
		for _, n := range h.Names() {
			names[n] = true
		}
	}
	for _, d := range find(ds, "server_name") {
		for _, a := range d.args {
			if !names[a] {
				t.Fatalf("server_name %q is not a name of the table", a)
			}
		}
	}
	paths := map[string]bool{"/": true}
	wantLocations := 0
	wantServers := 1
	if v.TLS.Enabled {
		wantServers++
	}
	for _, srv := range v.Servers {
		n := len(srv.Locations)
		if srv.CatchAll {
			n++
		}
		for _, l := range srv.Locations {
			paths[l.Path] = true
		}
		switch {
		case srv.TLS != nil && srv.TLS.Only:
			wantServers += 2
			wantLocations += n
		case srv.TLS != nil:
			wantServers += 2
			wantLocations += 2 * n
		default:
			wantServers++
			wantLocations += n
		}
	}
	locs := find(ds, "location")
	if len(locs) != wantLocations {
		t.Fatalf("%d location blocks, want %d", len(locs), wantLocations)
	}
	for _, d := range locs {
		p := d.args[len(d.args)-1]
		if !paths[p] || len(d.args) > 2 || len(d.args) == 2 && d.args[0] != "=" {
			t.Fatalf("location %q is not one of the view", d.args)
		}
	}
	if got := len(find(ds, "server")) - len(find(find(ds, "upstream"), "server")); got != wantServers {
		t.Fatalf("%d server blocks, want %d", got, wantServers)
	}
	ups := map[string]bool{}
	for _, u := range v.Upstreams {
		ups[u.Name] = true
	}
	for _, d := range find(ds, "upstream") {
		if len(d.args) != 1 || !ups[d.args[0]] {
			t.Fatalf("upstream %q is not one of the view", d.args)
		}
	}
	for _, d := range find(ds, "proxy_pass") {
		a := d.args[0]
		a = strings.TrimPrefix(strings.TrimPrefix(a, "http://"), "https://")
		name, _, _ := strings.Cut(a, "/")
		if len(d.args) != 1 || !ups[name] || strings.ContainsAny(d.args[0], "$;{}#\"' ") {
			t.Fatalf("proxy_pass %q does not name an upstream of the view", d.args)
		}
	}
	if !slices.IsSortedFunc(v.Servers, func(a, b Server) int { return strings.Compare(a.Host, b.Host) }) {
		t.Fatal("servers are not in host order")
	}
}
