package haproxy

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// FuzzRender feeds arbitrary strings into every table value that reaches
// the file. Either NewView refuses the table, or the built-in template
// renders it, and the file has exactly the structure the template means:
// every line tokenizes as HAProxy reads it, starts with a known keyword,
// carries a comment only where the template puts one, and every rule, ACL
// and server line has the template's own shape, so no value can add a
// line, a word, a condition or a comment. The seed corpus also goes
// through the real haproxy -c when it is installed.
func FuzzRender(f *testing.F) {
	seeds := [][]string{
		{"web.example.com", "www.example.com", "/", "/ws", "/healthz", "127.0.0.1:8080", "redispatch", "roundrobin", "http", "a/cert.pem", "web-1"},
		{"a.b", "c.d", "/app", "/app/ws", "/h", "[::1]:80", "forwardfor", "leastconn", "tcp", "", "x"},
		{"web.test", "", "/caf%C3%A9/a%20b%27c", "/caf%C3%A9/a%20b%27c/ws", "/h%20", "backend.local:80", "httpclose", "source", "http", "", ""},
		{"web.test\n    server x 1.2.3.4:80", "x", "/", "", "", "1.2.3.4:80", "", "", "http", "", ""},
		{"web.test", "x y", "/a' if TRUE #", "/ws;", "/h\r\n", "1.2.3.4:80 check", "httpchk", "uri", "udp", "../k.pem", "a\nb"},
		{"web.test", "", "/a%0A", "/%2F", "/%41", "1.2.3.4:0", "", "random", "http", "", "evil # x"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], true, false)
		// ssl_only (strip) under every edge setting: trusted forwarded
		// headers give the host a conditional redirect and its rules.
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], true, true)
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, alias, path, ws, health, addr, option, balance, proto, cert, container string, tlsOn, strip bool) {
		r := routing.Route{Path: path, StripPath: strip, Protocol: routing.Protocol(proto), Balance: routing.Balance(balance),
			Backends: []routing.Backend{{Address: addr, Name: container}, {Address: "127.0.0.1:9", Name: container}}}
		if ws != "" {
			r.WebSocketPaths = []string{ws}
		}
		if health != "" {
			r.HealthCheck = &routing.HealthCheck{Path: health, Interval: time.Second}
		}
		if option != "" {
			r.BackendOptions = []string{option}
		}
		h := routing.Host{Name: host, Routes: []routing.Route{r}}
		if alias != "" {
			h.Aliases = []string{alias}
		}
		if tlsOn {
			h.TLS = &routing.TLS{CertFile: cert, KeyFile: cert, Only: strip}
		}
		tb := routing.Table{Hosts: []routing.Host{h, {Name: "fixed.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:10"}}}}}}}
		tb.Normalize()
		s := goldenSettings("/var/lib/interlock")
		s.StatsAddr = "127.0.0.1:8404"
		if tlsOn {
			s.Edge = goldenEdge() // the access log's route from the fuzzed path
		}
		v, err := NewView(tb, s)
		if err != nil {
			return // refused: fine
		}
		conf, err := tmpl.Render(v)
		if err != nil {
			t.Fatalf("NewView accepted a table the template refuses: %v", err)
		}
		if err := checkStructure(conf, v); err != nil {
			t.Fatalf("%v\n%s", err, conf)
		}
	})
}

// TestFuzzSeedsValidate runs haproxy -c on every seed the view accepts.
func TestFuzzSeedsValidate(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "certs", "a"), 0o700)
	cert, key, _ := tlsconf.SelfSigned("x")
	_ = os.WriteFile(filepath.Join(dir, "certs", "a", "cert.pem"), append(cert, key...), 0o600)
	_ = os.MkdirAll(filepath.Join(dir, "state"), 0o700)
	_ = ensureDefaultCert(filepath.Join(dir, "state", defaultCertName))
	tb := table(
		routing.Host{Name: "web.example.com", Aliases: []string{"www.example.com"}, TLS: &routing.TLS{CertFile: "a/cert.pem", KeyFile: "a/cert.pem"},
			Routes: []routing.Route{{Path: "/caf%C3%A9/a%20b%27c", StripPath: true, WebSocketPaths: []string{"/caf%C3%A9/a%20b%27c/ws"},
				HealthCheck: &routing.HealthCheck{Path: "/h%20", Interval: time.Second}, BackendOptions: []string{"httpclose"},
				Backends: []routing.Backend{{Address: "[::1]:80", Name: "web-1"}, {Address: "backend.local:80"}}}}},
	)
	s := goldenSettings(dir)
	v, err := NewView(tb, s)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := LoadTemplate("")
	conf, err := tmpl.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStructure(conf, v); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "seed.cfg")
	_ = os.WriteFile(file, conf, 0o600)
	if err := Validate(context.Background(), bin, file); err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
}

func TestGoldenStructure(t *testing.T) {
	for _, c := range goldenCases(t) {
		conf, v := renderCase(t, c, goldenSettings("/var/lib/interlock"))
		if err := checkStructure(conf, v); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// keywords are the first words the built-in template writes.
var keywords = []string{
	"global", "defaults", "frontend", "backend", "log", "stats", "server-state-file", "hard-stop-after",
	"ssl-default-bind-options", "ssl-default-bind-ciphers", "ssl-default-bind-ciphersuites", "ssl-default-bind-curves",
	"mode", "option", "timeout", "retries", "default-server", "load-server-state-from-file", "bind", "http-request",
	"acl", "use_backend", "default_backend", "tcp-request", "balance", "hash-type", "http-check", "http-error", "server",
	"cookie", "http-after-response", "no", "tune.bufsize", "log-format", "error-log-format",
}

// trustedHTTPSACLs are the lines of acl interlock_trusted_https.
var trustedHTTPSACLs = []string{
	"    acl interlock_trusted_https req.fhdr(x-forwarded-proto,1) -i -m str https",
	`    acl interlock_trusted_https req.hdr(forwarded,-1) -i -m reg '(^|;) *proto="?https"? *(;|$)'`,
}

// isPrefixList reports whether every word is a CIDR prefix without host
// bits, as the view writes them.
func isPrefixList(words []string) bool {
	for _, w := range words {
		if p, err := netip.ParsePrefix(w); err != nil || p.Masked() != p || p.String() != w {
			return false
		}
	}
	return len(words) > 0
}

// checkStructure is FuzzRender's oracle; see there.
func checkStructure(conf []byte, v View) error {
	sections := 0
	for i, line := range strings.Split(string(conf), "\n") {
		n := i + 1
		for j := 0; j < len(line); j++ {
			if c := line[j]; c < 0x20 && c != '\t' || c == 0x7f {
				return fmt.Errorf("line %d holds the control byte %#02x", n, c)
			}
		}
		words, comment, err := tokenize(line)
		if err != nil {
			return fmt.Errorf("line %d: %v: %q", n, err, line)
		}
		if len(words) == 0 {
			continue // blank or comment-only
		}
		if !slices.Contains(keywords, words[0]) {
			return fmt.Errorf("line %d starts with %q, not a keyword of the template: %q", n, words[0], line)
		}
		if comment != "" && words[0] != "server" {
			return fmt.Errorf("line %d carries a comment: %q", n, line)
		}
		switch words[0] {
		case "no":
			if line != "    no option idle-close-on-response" {
				return fmt.Errorf("line %d: %q", n, line)
			}
		case "frontend", "backend":
			sections++
			if len(words) != 2 {
				return fmt.Errorf("line %d: section header with %d words: %q", n, len(words), line)
			}
		case "log-format", "error-log-format":
			// The view's constant format: nothing of the table in it.
			if v.Edge.AccessLog == nil || line != "    "+words[0]+" "+v.Edge.AccessLog.Format {
				return fmt.Errorf("line %d: log-format of another shape: %q", n, line)
			}
		case "log":
			if line != "    log stderr format raw local0 notice" && line != "    log stdout format raw local0 info" && line != "    log global" {
				return fmt.Errorf("line %d: log of another shape: %q", n, line)
			}
		case "tune.bufsize":
			if len(words) != 2 || strings.Trim(words[1], "0123456789") != "" {
				return fmt.Errorf("line %d: %q", n, line)
			}
		case "tcp-request":
			// tcp-request connection expect-proxy layer4 if { src PREFIX... }
			if len(words) > 1 && words[1] == "connection" && (len(words) < 9 || words[2] != "expect-proxy" || words[3] != "layer4" ||
				words[4] != "if" || words[5] != "{" || words[6] != "src" || words[len(words)-1] != "}" || !isPrefixList(words[7:len(words)-1])) {
				return fmt.Errorf("line %d: tcp-request connection of another shape: %q", n, line)
			}
		case "acl":
			// acl interlock_forwarded_trusted src PREFIX...
			if len(words) > 2 && words[1] == "interlock_forwarded_trusted" {
				if words[2] != "src" || !isPrefixList(words[3:]) {
					return fmt.Errorf("line %d: acl of another shape: %q", n, line)
				}
				break
			}
			// The constant tests of a trusted peer's HTTPS (TrustedHTTPS).
			if len(words) > 1 && words[1] == "interlock_trusted_https" {
				if !v.TrustedHTTPS || !slices.Contains(trustedHTTPSACLs, line) {
					return fmt.Errorf("line %d: acl of another shape: %q", n, line)
				}
				break
			}
			// acl NAME var(txn.host) -m str -- NAME...
			if len(words) < 6 || words[2] != "var(txn.host)" || words[3] != "-m" || words[4] != "str" || words[5] != "--" {
				return fmt.Errorf("line %d: acl of another shape: %q", n, line)
			}
			for _, h := range words[6:] {
				if !isHostname(h) {
					return fmt.Errorf("line %d: acl matches %q, not a host name", n, h)
				}
			}
		case "use_backend":
			// use_backend NAME if ACL [{ path,url_dec -m str -- P } || ACL { path,url_dec -m beg -- P }]
			// or, in the tcp frontend, use_backend NAME if { req.ssl_sni,lower -m str -- NAME... }
			switch {
			case len(words) == 4 && words[2] == "if":
			// ssl_only with TrustedHTTPS: use_backend interlock_https_redirect
			// if ACL !interlock_forwarded_trusted || ACL !interlock_trusted_https,
			// and in the default host's fallback without its ACL
			case v.TrustedHTTPS && len(words) == 8 && words[1] == "interlock_https_redirect" && words[2] == "if" &&
				words[4] == "!interlock_forwarded_trusted" && words[5] == "||" && words[6] == words[3] && words[7] == "!interlock_trusted_https":
			case v.TrustedHTTPS && line == "    use_backend interlock_https_redirect if !interlock_forwarded_trusted || !interlock_trusted_https":
			case len(words) == 20 && words[2] == "if" && words[4] == "{" && words[10] == "}" && words[11] == "||" && words[13] == "{" && words[19] == "}":
			// the default host's path rules, without its ACL
			case len(words) == 18 && words[2] == "if" && words[3] == "{" && words[9] == "}" && words[10] == "||" && words[11] == "{" && words[17] == "}":
			// ACME challenges: use_backend interlock_acme_challenge if { path_beg P } { var(txn.host) -m str -- NAME... }
			case len(words) >= 13 && words[1] == "interlock_acme_challenge" && words[3] == "{" && words[4] == "path_beg" &&
				words[5] == "/.well-known/acme-challenge/" && words[6] == "}" && words[7] == "{" && words[8] == "var(txn.host)" && words[11] == "--" && words[len(words)-1] == "}":
				for _, h := range words[12 : len(words)-1] {
					if !isHostname(h) {
						return fmt.Errorf("line %d: acme challenge host %q, not a host name", n, h)
					}
				}
			case len(words) >= 9 && words[3] == "{" && words[4] == "req.ssl_sni,lower" && words[len(words)-1] == "}":
				for _, h := range words[8 : len(words)-1] {
					if !isHostname(h) {
						return fmt.Errorf("line %d: sni match %q, not a host name", n, h)
					}
				}
			default:
				return fmt.Errorf("line %d: rule of another shape (%d words): %q", n, len(words), line)
			}
		case "server":
			if len(words) < 3 {
				return fmt.Errorf("line %d: short server line: %q", n, line)
			}
			if v.Passthrough != nil && words[1] == "https" {
				// server https unix@SOCKET send-proxy-v2, to the https frontend
				if len(words) != 4 || words[2] != "unix@"+v.Passthrough.Socket || words[3] != "send-proxy-v2" {
					return fmt.Errorf("line %d: server of another shape: %q", n, line)
				}
				break
			}
			if _, err := parseAddress(words[2]); err != nil {
				return fmt.Errorf("line %d: %v", n, err)
			}
			if comment != "" && containerName(strings.TrimSpace(strings.TrimPrefix(comment, "#"))) == "" {
				return fmt.Errorf("line %d: server comment %q is not a container name", n, comment)
			}
		case "default_backend":
			if len(words) != 2 {
				return fmt.Errorf("line %d: default_backend of another shape: %q", n, line)
			}
		case "bind":
			// bind ADDR [ssl crt ...], or the https frontend behind the
			// SNI frontend: bind unix@SOCKET mode 600 accept-proxy ssl ...
			if strings.HasPrefix(words[1], "unix@") && (v.Passthrough == nil || words[1] != "unix@"+v.Passthrough.Socket ||
				len(words) < 5 || words[2] != "mode" || words[3] != "600" || words[4] != "accept-proxy") {
				return fmt.Errorf("line %d: bind of another shape: %q", n, line)
			}
		case "cookie":
			// cookie NAME insert httponly attr SameSite=Lax [attr Path=PATH]
			if !(len(words) == 6 || len(words) == 8 && words[6] == "attr" && strings.HasPrefix(words[7], "Path=/") && !strings.Contains(words[7], ";")) ||
				words[2] != "insert" || words[3] != "httponly" || words[4] != "attr" || words[5] != "SameSite=Lax" {
				return fmt.Errorf("line %d: cookie of another shape: %q", n, line)
			}
		case "http-request":
			if len(words) > 1 && words[1] == "set-var(txn.interlock_route)" {
				// http-request set-var(txn.interlock_route) str(ROUTE), ROUTE a backend's
				found := false
				for _, b := range v.Backends {
					found = found || len(words) == 3 && b.LogRoute != "" && words[2] == "str("+b.LogRoute+")"
				}
				if !found {
					return fmt.Errorf("line %d: route of another shape: %q", n, line)
				}
			}
			if len(words) > 1 && words[1] == "replace-path" && len(words) != 4 {
				return fmt.Errorf("line %d: replace-path of another shape: %q", n, line)
			}
			if len(words) > 2 && words[1] == "redirect" && words[2] == "location" {
				// http-request redirect location https://%[var(txn.host)][:PORT]%[pathq] code 301 if METH_GET, or code 308
				if words[3] != "https://%[var(txn.host)]"+v.RedirectPort+"%[pathq]" ||
					!(len(words) == 8 && words[5] == "301" && words[6] == "if" && words[7] == "METH_GET" || len(words) == 6 && words[5] == "308") {
					return fmt.Errorf("line %d: redirect to HTTPS of another shape: %q", n, line)
				}
			}
			if len(words) > 2 && words[1] == "redirect" && words[2] == "prefix" {
				// http-request redirect prefix TO code 301 if METH_GET, or code 308
				ok := false
				for _, rd := range v.Redirects {
					ok = ok || words[3] == rd.To
				}
				if !ok || !(len(words) == 8 && words[5] == "301" && words[6] == "if" && words[7] == "METH_GET" || len(words) == 6 && words[5] == "308") {
					return fmt.Errorf("line %d: redirect of another shape or target: %q", n, line)
				}
			}
			if len(words) > 1 && words[1] == "set-timeout" && (len(words) != 20 || words[5] != "{" || words[11] != "}" || words[12] != "||" || words[19] != "}") {
				return fmt.Errorf("line %d: set-timeout of another shape (%d words): %q", n, len(words), line)
			}
		}
	}
	want := 1 + len(v.Backends) + len(v.Redirects) + 1 // no-route + backends + redirects + http
	if v.HTTPSRedirect {
		want++ // interlock_https_redirect
	}
	if v.Passthrough != nil {
		want += 2 // https_sni and interlock_https
	}
	if v.TLS.Enabled {
		want++
	}
	if v.TCP != nil {
		want++
	}
	if v.Stats != nil {
		want++
	}
	if v.ACMEChallenge != nil {
		want++ // interlock_acme_challenge
	}
	if sections != want {
		return fmt.Errorf("%d frontend and backend sections, want %d", sections, want)
	}
	return nil
}

// tokenize splits a line as HAProxy's parser does: words separated by
// blanks; '...' literal; "..." with backslash escapes; a backslash outside
// quotes escapes a blank, '\', '#' or a quote (and is kept before any
// other byte); a '#' starting a word outside quotes
// starts a comment, returned whole.
func tokenize(line string) (words []string, comment string, err error) {
	var cur strings.Builder
	in := false // inside a word
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '#' && !in:
			return words, line[i:], nil
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, "", fmt.Errorf("unbalanced single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += 1 + j
			in = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, "", fmt.Errorf("unbalanced double quote")
			}
			in = true
		case c == '\\' && i+1 < len(line):
			// HAProxy drops the backslash before a blank, a backslash, '#'
			// or a quote, and keeps it before anything else (regexes).
			i++
			if strings.IndexByte(" \t\\#\"'", line[i]) < 0 {
				cur.WriteByte('\\')
			}
			cur.WriteByte(line[i])
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, "", nil
}

// FuzzRenderSwarm is FuzzRender for the Swarm fields: the default host, a
// redirect target and a sticky cookie name, next to a host that serves
// (or passes TLS through).
// Either NewView refuses the table, or it renders with the template's
// structure and no value adds a line, a word or a comment.
func FuzzRenderSwarm(f *testing.F) {
	seeds := [][4]string{
		{"old.example.com", "https://new.example.com", "SESSION", "/"},
		{"a.test", "http://b.test:8443", "-cart.id_v2", "/cart.v2"},
		{"a.test", "https://b.test/%[src]", "x;y", "/a"},
		{"a.test", "https://b.test:0", "a b", "/a b"},
		{"a.test", "https://b.test code 302 if TRUE", "SID' attr 'Domain=evil", "/"},
		{"a.test", "javascript:alert(1)", "SID\nserver x 1.2.3.4:80", "/"},
		{"a.test", "https://user@b.test", "", "/%0A"},
	}
	for i, s := range seeds {
		f.Add(s[0], s[1], s[2], s[3], true, false, false, false)
		f.Add(s[0], s[1], s[2], s[3], false, true, true, i%2 == 0)
		f.Add(s[0], s[1], s[2], s[3], i%2 == 1, true, false, true)
	}
	tmpl, err := LoadTemplate("")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, to, cookie, path string, dflt, tlsOn, only, pass bool) {
		redirecting := routing.Host{Name: host, RedirectTo: to, Default: dflt && !only}
		serving := routing.Host{Name: "shop.test", Default: dflt && only, Routes: []routing.Route{
			{Path: path, StickyCookie: cookie, Backends: []routing.Backend{{Address: "127.0.0.1:9"}, {Address: "[::1]:9"}}},
			{Path: "/fixed", StickyCookie: cookie, Backends: []routing.Backend{{Address: "127.0.0.1:10"}}}}}
		if tlsOn {
			redirecting.TLS = &routing.TLS{Only: only}
			serving.TLS = &routing.TLS{Only: only, Passthrough: pass}
		}
		tb := routing.Table{Hosts: []routing.Host{redirecting, serving,
			{Name: "plain.test", Routes: []routing.Route{{Path: "/app", Backends: []routing.Backend{{Address: "127.0.0.1:11"}}}}}}}
		tb.Normalize()
		v, err := NewView(tb, goldenSettings("/var/lib/interlock"))
		if err != nil {
			return // refused: fine
		}
		conf, err := tmpl.Render(v)
		if err != nil {
			t.Fatalf("NewView accepted a table the template refuses: %v", err)
		}
		if err := checkStructure(conf, v); err != nil {
			t.Fatalf("%v\n%s", err, conf)
		}
	})
}
