package haproxy

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

func TestQuoteHelpers(t *testing.T) {
	cases := []struct {
		name, fn, in, want, err string
	}{
		{name: "word plain", fn: "word", in: "127.0.0.1:80", want: "127.0.0.1:80"},
		{name: "word expression", fn: "word", in: "req.hdr(host),field(1,:)", want: "req.hdr(host),field(1,:)"},
		{name: "word space", fn: "word", in: "a b", err: "needs quoting"},
		{name: "word hash", fn: "word", in: "a#b", err: "needs quoting"},
		{name: "word quote", fn: "word", in: "a'b", err: "needs quoting"},
		{name: "word dollar", fn: "word", in: "${HOME}", err: "needs quoting"},
		{name: "word brace", fn: "word", in: "{", err: "needs quoting"},
		{name: "word flag", fn: "word", in: "-m", err: "flag"},
		{name: "word negation", fn: "word", in: "!x", err: "negation"},
		{name: "word empty", fn: "word", in: "", err: "empty"},
		{name: "name", fn: "name", in: "be_web.test_0a1b", want: "be_web.test_0a1b"},
		{name: "name slash", fn: "name", in: "a/b", err: "not allowed"},
		{name: "name start", fn: "name", in: "_a", err: "does not start"},
		{name: "quote plain", fn: "quote", in: "/a b", want: "'/a b'"},
		{name: "quote quote", fn: "quote", in: "a'b", want: `'a'\''b'`},
		{name: "quote specials", fn: "quote", in: `#"$\;`, want: `'#"$\;'`},
		{name: "quote newline", fn: "quote", in: "a\nb", err: "control byte"},
		{name: "quote nul", fn: "quote", in: "a\x00", err: "control byte"},
		{name: "path plain", fn: "path", in: "/s/admin.sock", want: "'/s/admin.sock'"},
		{name: "path specials", fn: "path", in: `/s/$x"`, want: `'/s/$x"'`},
		{name: "path instance", fn: "path", in: "/s/admin-${HOSTNAME}.sock", want: `"/s/admin-${HOSTNAME}.sock"`},
		{name: "path instance dollar", fn: "path", in: "/$HOME/admin-${HOSTNAME}.sock", err: "interpret"},
		{name: "path instance quote", fn: "path", in: `/a"b/admin-${HOSTNAME}.sock`, err: "interpret"},
		{name: "path instance backslash", fn: "path", in: `/a\b/admin-${HOSTNAME}.sock`, err: "interpret"},
		{name: "path instance newline", fn: "path", in: "/a\n/admin-${HOSTNAME}.sock", err: "interpret"},
	}
	fns := map[string]func(string) (string, error){"word": word, "name": name, "quote": quote, "path": path}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := fns[c.fn](c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("%s(%q) = %q, %v; want error %q", c.fn, c.in, got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%s(%q) = %q, %v; want %q", c.fn, c.in, got, err, c.want)
			}
		})
	}
	if got, err := ms(1500 * time.Microsecond); err != nil || got != "2" {
		t.Errorf("ms(1.5ms) = %q, %v; want 2 (rounded up)", got, err)
	}
	if _, err := ms(0); err == nil {
		t.Error("ms(0) accepted")
	}
	if _, err := hostnames([]string{"a.test", "B.test"}); err == nil {
		t.Error("hostnames accepted an upper-case name")
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "a'b", "''", `a\'b`, "a b c", `"x"`, "#", "'#'"} {
		q, err := quote(s)
		if err != nil {
			t.Fatal(err)
		}
		words, comment, err := tokenize("x " + q)
		if err != nil || comment != "" || len(words) != 2 || words[1] != s {
			t.Errorf("quote(%q) = %s reads back as %q, comment %q, %v", s, q, words, comment, err)
		}
	}
}

func TestSettingsErrors(t *testing.T) {
	tb := table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:1")}}})
	old, _ := tlsconf.Lookup(tlsconf.Old)
	gap, err := old.WithProtocols("TLSv1 TLSv1.3")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(*Settings)
		table  routing.Table
		want   string
	}{
		{name: "http no port", change: func(s *Settings) { s.HTTPAddr = "127.0.0.1" }, want: "not host:port"},
		{name: "http port 0", change: func(s *Settings) { s.HTTPAddr = "127.0.0.1:0" }, want: "fixed port"},
		{name: "https bad host", change: func(s *Settings) { s.HTTPSAddr = "a b:443" }, want: "neither an IP"},
		{name: "tcp bad", change: func(s *Settings) { s.TCPAddr = ":x" }, want: "tcp address"},
		{name: "stats public", change: func(s *Settings) { s.StatsAddr = "0.0.0.0:8404" }, want: "loopback"},
		{name: "stats wildcard", change: func(s *Settings) { s.StatsAddr = ":8404" }, want: "loopback"},
		{name: "tls gap", change: func(s *Settings) { s.Profile = gap }, want: "contiguous range"},
		{name: "no default cert", change: func(s *Settings) { s.DefaultCert = "" },
			table: table(routing.Host{Name: "web.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/"}}}), want: "none is configured"},
		{name: "tcp with other routes", table: routing.Table{Hosts: []routing.Host{{Name: "db.test", Routes: []routing.Route{
			{Path: "/", Protocol: routing.TCP}, {Path: "/x", Protocol: routing.HTTP}}}}}, want: "takes the whole host"},
		{name: "name twice", table: routing.Table{Hosts: []routing.Host{{Name: "a.test", Aliases: []string{"b.test"}}, {Name: "b.test"}}}, want: "already a name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := goldenSettings("/x")
			if c.change != nil {
				c.change(&s)
			}
			in := tb
			if c.table.Hosts != nil {
				in = c.table
			}
			if _, err := NewView(in, s); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestRenderIgnoresInputOrder renders tables built in every order of
// their hosts, routes and backends: the bytes must not change.
func TestRenderIgnoresInputOrder(t *testing.T) {
	hosts := []routing.Host{
		{Name: "b.test", Aliases: []string{"z.test", "y.test"}, Routes: []routing.Route{
			{Path: "/", Backends: be("127.0.0.1:3", "127.0.0.1:1", "127.0.0.1:2")},
			{Path: "/api", Backends: be("127.0.0.1:5", "127.0.0.1:4")},
			{Path: "/api/v1", Backends: be("127.0.0.1:6")}}},
		{Name: "a.test", Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:9", "127.0.0.1:8")}}},
		{Name: "c.test", TLS: &routing.TLS{}, Routes: []routing.Route{{Path: "/", Backends: be("127.0.0.1:7")}}},
	}
	tmpl, _ := LoadTemplate("")
	var first []byte
	for i, perm := range permutations(len(hosts)) {
		var in []routing.Host
		for _, j := range perm {
			h := hosts[j]
			h.Routes = slices.Clone(h.Routes)
			if i%2 == 1 {
				slices.Reverse(h.Routes)
				for k := range h.Routes {
					h.Routes[k].Backends = slices.Clone(h.Routes[k].Backends)
					slices.Reverse(h.Routes[k].Backends)
				}
				h.Aliases = slices.Clone(h.Aliases)
				slices.Reverse(h.Aliases)
			}
			in = append(in, h)
		}
		tb := routing.Table{Hosts: in}
		tb.Normalize()
		v, err := NewView(tb, goldenSettings("/x"))
		if err != nil {
			t.Fatal(err)
		}
		conf, err := tmpl.Render(v)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = conf
		} else if !bytes.Equal(first, conf) {
			t.Fatalf("order %v gives other bytes:\n%s", perm, diffLines(string(first), string(conf)))
		}
	}
}

func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(slices.Clone(p[:i]), n-1), p[i:]...)
			out = append(out, q, q) // twice: once in order, once reversed inside
		}
	}
	return out
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:80":        "127.0.0.1_80",
		"[::1]:80":            "ipv6_::1_80",
		"[::ffff:10.0.0.1]:8": "10.0.0.1_8",
		"backend.local:8080":  "backend.local_8080",
	} {
		a, err := parseAddress(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := serverName(a); got != want {
			t.Errorf("serverName(%s) = %s, want %s", in, got, want)
		}
		if _, err := name(serverName(a)); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:08", "[fe80::1%eth0]:80", "Web.local:80", "a_b:80", ":80"} {
		if _, err := parseAddress(bad); err == nil {
			t.Errorf("parseAddress(%q) accepted", bad)
		}
	}
	if a, b := backendName("be", "web.test", "/a"), backendName("be", "web.test", "/b"); a == b || !strings.HasPrefix(a, "be_web.test_") {
		t.Errorf("backend names %s, %s", a, b)
	}
}

func TestParseProc(t *testing.T) {
	out := `#<PID>          <type>          <reloads>       <uptime>        <version>
1162            master          5 [failed: 1]   0d00h02m07s     2.6.12
# workers
1271            worker          1               0d00h00m00s     2.6.12
# old workers
1233            worker          3               0d00h00m43s     2.6.12
1234            worker          4               0d00h00m50s     2.6.12
# programs
`
	p, err := parseProc(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.MasterPID != 1162 || p.Reloads != 5 || p.Failed != 1 || !slices.Equal(p.Workers, []int{1271}) || !slices.Equal(p.OldWorkers, []int{1233, 1234}) {
		t.Errorf("parsed %+v", p)
	}
	if _, err := parseProc("Unknown command\n"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseStat(t *testing.T) {
	out := "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status\nbe_a,FRONTEND,,,0,0,,0,OPEN\nbe_a,s1,0,0,3,4,,9,UP\nbe_a,s2,1,1,0,0,,0,DRAIN\nbe_a,BACKEND,0,0,3,4,,9,UP\n"
	st, err := parseStat(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []serverStat{{Backend: "be_a", Server: "s1", Sessions: 3, Status: "UP"}, {Backend: "be_a", Server: "s2", Queued: 1, Status: "DRAIN"}}
	if !slices.Equal(st, want) {
		t.Errorf("parsed %+v, want %+v", st, want)
	}
}

func TestCommandRefusesSeparators(t *testing.T) {
	for _, arg := range []string{"a;b", "a b", "a\nb", `a\b`, "a#b", ""} {
		if _, err := command("del server", arg); err == nil {
			t.Errorf("command accepted %q", arg)
		}
	}
	if got, err := command("set server", "be/s", "state", "drain"); err != nil || got != "set server be/s state drain" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestCheckTemplate(t *testing.T) {
	bin := requireHAProxy(t)
	tmpl, _ := LoadTemplate("")
	res, err := CheckTemplate(context.Background(), tmpl, bin)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Validated || res.Hosts != 7 || res.Backends != 9 { // SampleTable, passthrough host included
		t.Errorf("result %+v", res)
	}
	broken, _ := ParseTemplate("broken.tmpl", DefaultTemplate+"\nbackend x\n    bogus-keyword\n")
	if _, err := CheckTemplate(context.Background(), broken, bin); err == nil || !strings.Contains(err.Error(), "bogus-keyword") {
		t.Errorf("broken template: %v", err)
	}
}
