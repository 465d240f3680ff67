package discovery

import (
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// hostileSeeds are injection attempts every fuzz target starts from.
var hostileSeeds = []string{
	"",
	"app.example.com",
	"/app",
	"a;b",
	"a}",
	"a{b}",
	"/a; return 200;",
	"x\n  server evil 1.2.3.4:80",
	"a\r\nb",
	"a#b",
	"a'b",
	`a"b`,
	"a`b`",
	"a\x00b",
	"a b",
	"a\tb",
	"\u0435xample.com", // Cyrillic е
	"\u212aelvin.com",  // Kelvin sign, lowercases to ASCII k
	"ex\u200bample.com",
	"../../etc/passwd",
	"a/../../b",
	"./a",
	"/a/%2e%2e/b",
	"/a%2F..%2Fb",
	"/a%0a",
	"%",
	"*.example.com",
	"example.com.",
	"-rf",
	"5000",
	"500ms",
	"-1s",
	"1e9",
	"65536",
	"true",
	"TRUE",
	strings.Repeat("a", 64) + ".com",
	strings.Repeat("a.", 127),
	strings.Repeat("/a", 600),
	strings.Repeat("\u00e9", 700),
	"\xff\xfe",
}

func seed(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add(s)
	}
}

// unsafeFor reports the first character of s that must never reach a proxy
// config: config delimiters, quotes, whitespace, control and non-ASCII
// characters. "" means s is safe.
func unsafeFor(s string) string {
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(";{}#'\"`\\$", r) {
			return string(r)
		}
	}
	return ""
}

func FuzzParseHostName(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := parseHostName(in)
		if err != nil {
			return
		}
		checkHostName(t, out)
		if again, err := parseHostName(out); err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		if !strings.EqualFold(in, out) {
			t.Fatalf("%q accepted as %q: more than case changed", in, out)
		}
	})
}

// checkHostName fails unless name is a lowercase RFC 1123 host name.
func checkHostName(t *testing.T, name string) {
	t.Helper()
	if name == "" || len(name) > 253 {
		t.Fatalf("host name %q has bad length %d", name, len(name))
	}
	for l := range strings.SplitSeq(name, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			t.Fatalf("host name %q has bad label %q", name, l)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("host name %q has byte %q", name, c)
			}
		}
	}
}

func FuzzParsePath(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := parsePath(in)
		if err != nil {
			return
		}
		checkPath(t, out)
		if again, err := parsePath(out); err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}

// checkPath fails unless p is a clean absolute path in the path grammar.
func checkPath(t *testing.T, p string) {
	t.Helper()
	if p == "" || p[0] != '/' || path.Clean(p) != p {
		t.Fatalf("path %q is not clean and absolute", p)
	}
	if c := unsafeFor(p); c != "" {
		t.Fatalf("path %q carries %q", p, c)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) || strings.ToUpper(p[i+1:i+3]) != p[i+1:i+3] {
				t.Fatalf("path %q has a bad escape at %d", p, i)
			}
			if d := unhex(p[i+1])<<4 | unhex(p[i+2]); d < 0x20 || d == 0x7f || d == '/' || d == '\\' || isPathByte(d) {
				t.Fatalf("path %q escapes %q", p, d)
			}
			i += 2
		case !isPathByte(c):
			t.Fatalf("path %q has byte %q", p, c)
		}
	}
}

func FuzzParsePathList(f *testing.F) {
	seed(f)
	f.Add("/ws, /io")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := parsePathList(in)
		if err != nil {
			return
		}
		if len(out) == 0 {
			t.Fatalf("%q accepted as an empty list", in)
		}
		for _, p := range out {
			checkPath(t, p)
		}
	})
}

func FuzzParseCertPath(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := parseCertPath(in)
		if err != nil {
			return
		}
		checkCertPath(t, out)
		if out != in {
			t.Fatalf("%q accepted as %q: cert paths are taken as written", in, out)
		}
	})
}

// checkCertPath fails unless p is a local relative path that cannot leave
// the certificate directory.
func checkCertPath(t *testing.T, p string) {
	t.Helper()
	if !filepath.IsLocal(p) || path.Clean(p) != p || len(p) > maxCertPathLen {
		t.Fatalf("cert path %q is not local and clean", p)
	}
	if c := unsafeFor(p); c != "" {
		t.Fatalf("cert path %q carries %q", p, c)
	}
	if j := filepath.Join("/certs", p); !strings.HasPrefix(j, "/certs/") {
		t.Fatalf("cert path %q escapes the directory: %q", p, j)
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || seg[0] == '-' {
			t.Fatalf("cert path %q has segment %q", p, seg)
		}
	}
}

func FuzzParseInterval(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, in string) {
		d, err := parseInterval(in)
		if err != nil {
			return
		}
		if d < minInterval || d > maxInterval {
			t.Fatalf("%q accepted as %v, outside [%v, %v]", in, d, minInterval, maxInterval)
		}
	})
}

// FuzzScalars runs the small parsers and the value screen on one input.
func FuzzScalars(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, in string) {
		if b, err := parseBool(in); err == nil && in != "true" && in != "false" {
			t.Fatalf("parseBool accepted %q as %v", in, b)
		}
		if p, err := parsePort(in); err == nil && (p == 0 || in != strings.TrimLeft(in, "0") || len(in) > 5) {
			t.Fatalf("parsePort accepted %q as %d", in, p)
		}
		if b, err := parseBalance(in); err == nil && !slices.Contains(routing.Balances, b) {
			t.Fatalf("parseBalance accepted %q", in)
		}
		if p, err := parseProtocol(in); err == nil && p != routing.HTTP && p != routing.TCP {
			t.Fatalf("parseProtocol accepted %q", in)
		}
		if o, err := parseBackendOption(in); err == nil && !slices.Contains(backendOptions, o) {
			t.Fatalf("parseBackendOption accepted %q", in)
		}
		if n, err := parseNetworkName(in); err == nil {
			if c := unsafeFor(n); c != "" || len(n) > maxNetworkNameLen {
				t.Fatalf("parseNetworkName accepted %q", in)
			}
		}
		if err := checkValue(in); err == nil {
			if !utf8.ValidString(in) || len(in) > maxValueLen || strings.ContainsAny(in, "\x00\n\r\t\x7f") {
				t.Fatalf("checkValue accepted %q", in)
			}
		} else if strings.ContainsAny(err.Error(), "\x00\n\r") {
			t.Fatalf("checkValue error carries raw control characters: %q", err)
		}
		q := quote(in)
		if strings.ContainsAny(q, "\x00\n\r") || len(q) > 4*quoteLen+32 {
			t.Fatalf("quote(%q) = %q", in, q)
		}
	})
}

// FuzzBuild sets arbitrary values (and one arbitrary label) on a container
// and checks that whatever Build accepts is safe to put in a config, and
// that whatever it refuses is explained without raw control characters.
func FuzzBuild(f *testing.F) {
	for _, s := range hostileSeeds {
		f.Add("app", "example.com", s, "/", "80", "", s, s)
		f.Add(s, "example.com", "www.example.com", s, "80", s, "interlock.x", s)
	}
	f.Add("app", "example.com", "www.example.com", "/api", "80", "bridge", LabelWebSocketEndpoint, "/api/ws, /api/io")
	f.Add("app", "", "", "/", "80", "", LabelSSLCert, "cert.pem")
	f.Fuzz(func(t *testing.T, hostname, domain, alias, contextRoot, port, network, key, value string) {
		labels := map[string]string{
			LabelHostname:           hostname,
			LabelAliasDomain + ".1": alias,
			LabelContextRoot:        contextRoot,
			LabelPort:               port,
			LabelHealthCheck:        value,
			LabelSSLCert:            value,
			LabelSSLCertKey:         value,
			LabelWebSocketEndpoint:  contextRoot,
			LabelBackendOption:      value,
			key:                     value,
		}
		if domain != "" {
			labels[LabelDomain] = domain
		}
		if network != "" {
			labels[LabelNetwork] = network
		}
		a := ctr("a", 0, labels)
		a.Ports = append(a.Ports, docker.Port{Private: 80, Proto: "tcp", HostIP: "::1", Public: 8080})
		a.Networks[network] = "10.0.0.2"
		b := a
		b.ID, b.Name = "b", "c-b"
		tbl, problems := Build(docker.Snapshot{Containers: []docker.Container{a, b}}, Options{})
		tbl2, problems2 := Build(docker.Snapshot{Containers: []docker.Container{b, a}}, Options{})
		if tbl.Hash() != tbl2.Hash() || !reflect.DeepEqual(problems, problems2) {
			t.Fatalf("container order changed the result")
		}
		for _, p := range problems {
			if strings.ContainsAny(p.Error(), "\x00\n\r") {
				t.Fatalf("problem carries raw control characters: %q", p.Error())
			}
		}
		checkSafeTable(t, tbl)
	})
}

// checkSafeTable fails when any value in t breaks its grammar.
func checkSafeTable(t *testing.T, tbl routing.Table) {
	t.Helper()
	for _, h := range tbl.Hosts {
		for _, n := range h.Names() {
			checkHostName(t, n)
		}
		if h.TLS != nil {
			for _, p := range []string{h.TLS.CertFile, h.TLS.KeyFile} {
				if p != "" {
					checkCertPath(t, p)
				}
			}
		}
		for _, r := range h.Routes {
			checkPath(t, r.Path)
			for _, p := range r.WebSocketPaths {
				checkPath(t, p)
			}
			if r.HealthCheck != nil {
				checkPath(t, r.HealthCheck.Path)
			}
			for _, o := range r.BackendOptions {
				if !slices.Contains(backendOptions, o) {
					t.Fatalf("backend option %q not allowed", o)
				}
			}
			for _, b := range r.Backends {
				if c := unsafeFor(b.Address); c != "" || b.Address == "" {
					t.Fatalf("backend address %q carries %q", b.Address, c)
				}
			}
		}
	}
}
