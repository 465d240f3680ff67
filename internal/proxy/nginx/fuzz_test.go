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
		// ssl_only under every edge setting: trusted forwarded headers
		// make the plain server render the host's locations too.
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], true, true)
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
		if rewrite {
			// Every edge setting but the body limit (its named location
			// would not be one of the table's).
			s.Edge = goldenEdge()
			s.Edge.MaxBodyBytes = 0
		}
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
	checkStream(t, ds, v)
	for _, d := range ds {
		if d.name == "http" {
			ds = d.children // the rest is http{}'s
		}
	}
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
	wantServers := 0
	if v.Default == "" {
		wantServers++ // the 404 server for unknown hosts
	}
	if v.TLS.Enabled && !v.DefaultTLS {
		wantServers++ // the HTTPS one that refuses unknown names
	}
	if len(v.PlainNames) > 0 {
		wantServers++ // the HTTPS one that refuses plain hosts
	}
	redirects := map[string]bool{"https://$host" + v.RedirectPort + "$request_uri": true}
	for _, srv := range v.Servers {
		if srv.RedirectTo != "" {
			redirects[srv.RedirectTo+"$request_uri"] = true
		}
	}
	for _, d := range find(ds, "return") {
		if (d.args[0] == "301" || d.args[0] == "308") && (len(d.args) != 2 || !redirects[d.args[1]]) {
			t.Fatalf("return %q is not a redirect of the view", d.args)
		}
	}
	// Server-level conditions: the method of a redirect, and for servers
	// that serve what a trusted peer says came over HTTPS (TrustedHTTPS)
	// the answer of its maps; the Cache-Control of redirects likewise.
	conds := map[string]bool{"($interlock_redirect_get)": true}
	cacheControl := map[string]bool{"no-store always": true}
	for _, srv := range v.Servers {
		if !srv.TrustedHTTPS {
			continue
		}
		if !v.TrustedHTTPS || srv.ACMEChallenge && !v.TrustedHTTPSACME {
			t.Fatal("a TrustedHTTPS server without the view's maps")
		}
		name := "$interlock_https_redirect"
		if srv.ACMEChallenge {
			name += "_acme"
		}
		conds["("+name+" = 301)"], conds["("+name+" = 308)"] = true, true
		cacheControl[name+"_cache_control always"] = true
	}
	for _, d := range find(ds, "if") {
		if c := strings.Join(d.args, " "); !conds[c] {
			t.Fatalf("if %q is not a condition of the view", c)
		}
	}
	setCookies := map[string]bool{}
	for _, u := range v.Upstreams {
		if u.Sticky != nil {
			setCookies["$"+u.Sticky.Var+"_set_cookie"] = true
		}
	}
	for _, d := range find(ds, "add_header") {
		if d.args[0] == "Set-Cookie" && (len(d.args) != 3 || !setCookies[d.args[1]] || d.args[2] != "always") {
			t.Fatalf("add_header %q is not a sticky cookie of the view", d.args)
		}
		if d.args[0] == "Cache-Control" && !cacheControl[strings.Join(d.args[1:], " ")] {
			t.Fatalf("add_header %q is not a Cache-Control of the view", d.args)
		}
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
		case srv.TLS != nil && srv.TLS.Only && !srv.TrustedHTTPS:
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
	routes := map[string]bool{}
	for _, srv := range v.Servers {
		for _, l := range srv.Locations {
			routes[l.LogRoute] = l.LogRoute != ""
		}
	}
	for _, d := range find(ds, "set") {
		if len(d.args) != 2 || d.args[0] != "$interlock_route" || !routes[d.args[1]] {
			t.Fatalf("set %q is not a route of the view", d.args)
		}
	}
	for _, d := range find(ds, "listen") {
		if a := d.args[0]; a != v.HTTP.Addr && a != v.TLSListen.Addr {
			t.Fatalf("listen %q is neither the HTTP address nor the TLS servers'", d.args)
		}
	}
}

// checkStream checks the stream block of SNI passthrough: there exactly
// when the view has passthrough hosts, every map key a passthrough name
// and every value, upstream and listen address one of the view.
func checkStream(t *testing.T, ds []*directive, v View) {
	t.Helper()
	var stream []*directive
	loads := 0
	for _, d := range ds {
		switch d.name {
		case "stream":
			stream = append(stream, d)
		case "load_module":
			loads++
			if v.Passthrough == nil || len(d.args) != 1 || d.args[0] != v.Passthrough.Module {
				t.Fatalf("load_module %q is not the view's stream module", d.args)
			}
		}
	}
	if v.Passthrough == nil {
		if len(stream) > 0 || loads > 0 {
			t.Fatal("a stream block or load_module without passthrough hosts")
		}
		return
	}
	if len(stream) != 1 || loads > 1 {
		t.Fatalf("%d stream blocks and %d load_module, want 1 and at most 1", len(stream), loads)
	}
	p := v.Passthrough
	names := map[string]string{} // passthrough name -> its upstream
	ups := map[string]bool{"interlock_tls": true, "interlock_passthrough": true}
	for _, h := range p.Hosts {
		ups[h.Upstream.Name] = true
		for _, n := range h.Names {
			names[n] = h.Upstream.Name
		}
	}
	for _, m := range find(stream[0].children, "map") {
		for _, e := range m.children {
			if len(e.args) != 1 {
				t.Fatalf("map entry %s %q", e.name, e.args)
			}
			if e.name == "default" {
				if e.args[0] != "interlock_tls" {
					t.Fatalf("map default %q", e.args)
				}
				continue
			}
			up, ok := names[e.name]
			if !ok || e.quotedName || (e.args[0] != up && e.args[0] != "interlock_passthrough") {
				t.Fatalf("map entry %s %q is not a passthrough name of the view", e.name, e.args)
			}
		}
	}
	for _, d := range find(stream[0].children, "upstream") {
		if len(d.args) != 1 || !ups[d.args[0]] {
			t.Fatalf("stream upstream %q is not one of the view", d.args)
		}
	}
	for _, d := range find(stream[0].children, "proxy_pass") {
		if len(d.args) != 1 || d.args[0] != "$interlock_sni_next" && d.args[0] != "$interlock_passthrough_upstream" {
			t.Fatalf("stream proxy_pass %q", d.args)
		}
	}
	for _, d := range find(stream[0].children, "listen") {
		if !(len(d.args) == 1 && d.args[0] == v.HTTPS.Addr || len(d.args) == 2 && d.args[0] == p.Relay && d.args[1] == "proxy_protocol") {
			t.Fatalf("stream listen %q", d.args)
		}
	}
	if got := len(find(stream[0].children, "server")) - len(find(find(stream[0].children, "upstream"), "server")); got != 2 {
		t.Fatalf("%d stream server blocks, want 2", got)
	}
}

// fuzzService is one Swarm service with com.docker.lb labels and two tasks;
// empty label values are unset.
func fuzzService(id string, labels map[string]string) docker.Service {
	l := map[string]string{}
	for k, v := range labels {
		if v != "" {
			l[k] = v
		}
	}
	s := docker.Service{ID: id, Name: "svc" + id, Created: time.Unix(1, 0), Labels: l, Networks: []string{"app"}}
	for i, ip := range []string{"10.0.0.2", "10.0.0.3"} {
		s.Tasks = append(s.Tasks, docker.Task{ID: id + "t" + ip, Slot: i + 1, Node: "n", State: "running", DesiredState: "running",
			Networks: map[string]string{"app": ip}, ContainerID: "c" + id + ip})
	}
	return s
}

// FuzzRenderService is FuzzRender for the Swarm labels this driver renders
// beyond the container ones: the default backend, redirects, sticky
// cookies and SNI passthrough, through discovery's grammars.
func FuzzRenderService(f *testing.F) {
	seeds := [][5]string{
		{"shop.example.com,www.shop.example.com", "SESSION", "http://old.example.com,https://shop.example.com", "/", "true"},
		{"a.test", "x;y", "http://b.test,https://c.test:8443", "/cart.v2", "false"},
		{"a.test", "id.v2-x_y", "http://a.test,https://a.test", "/caf%C3%A9/%24x%22y", "true"},
		{"a.test", "$x", "http://b.test/$x,https://c.test", "/a; return 200;", "yes"},
		{"a.test", "s\"id", "http://b.test,https://c.test$request_uri", "/", "true"},
		{"a.test", "", "http://b.test,http://c.test", "", ""},
	}
	for i, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3], s[4], true, i%2 == 0)
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, hosts, cookie, redirects, root, dflt string, ipHash, passthrough bool) {
		labels := map[string]string{
			"com.docker.lb.hosts": hosts, "com.docker.lb.port": "8080", "com.docker.lb.network": "app",
			"com.docker.lb.sticky_session_cookie": cookie, "com.docker.lb.redirects": redirects,
			"com.docker.lb.context_root": root, "com.docker.lb.default_backend": dflt,
		}
		if ipHash {
			labels["com.docker.lb.ip_hash"] = "true"
		}
		if passthrough {
			labels["com.docker.lb.ssl_passthrough"] = "true"
		}
		other := map[string]string{"com.docker.lb.hosts": "other.test", "com.docker.lb.port": "8080", "com.docker.lb.network": "app",
			"com.docker.lb.sticky_session_cookie": cookie, "com.docker.lb.default_backend": dflt}
		snap := docker.Snapshot{Services: []docker.Service{fuzzService("1", labels), fuzzService("2", other)}}
		table, _ := discovery.Build(snap, discovery.Options{})
		v, err := NewView(table, goldenSettings())
		if err != nil {
			t.Fatalf("a table discovery accepted has no view: %v\n%+v", err, table)
		}
		conf, err := tmpl.Render(v)
		if err != nil {
			t.Fatalf("a table discovery accepted does not render: %v\n%+v", err, table)
		}
		ds := checkStructure(t, conf)
		checkOnlyTableValues(t, ds, table, v)
	})
}
