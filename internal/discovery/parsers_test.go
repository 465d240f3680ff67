package discovery

import (
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// parserCase is one input to a parser: want is the accepted result, or
// errSub a substring of the refusal.
type parserCase[T comparable] struct {
	name   string
	in     string
	want   T
	errSub string
}

func runParser[T comparable](t *testing.T, parse func(string) (T, error), cases []parserCase[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(tc.in)
			if tc.errSub != "" {
				if err == nil {
					t.Fatalf("parse(%q) = %v, want error containing %q", tc.in, got, tc.errSub)
				}
				if !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("parse(%q) error %q, want it to contain %q", tc.in, err, tc.errSub)
				}
				if strings.ContainsAny(err.Error(), "\n\x00") {
					t.Fatalf("error carries raw control characters: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("parse(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseHostName(t *testing.T) {
	runParser(t, parseHostName, []parserCase[string]{
		{name: "simple", in: "app.example.com", want: "app.example.com"},
		{name: "single label", in: "localhost", want: "localhost"},
		{name: "uppercase folded", in: "App.Example.COM", want: "app.example.com"},
		{name: "digits and hyphens", in: "a-1.b2.c", want: "a-1.b2.c"},
		{name: "leading digit", in: "1app.example.com", want: "1app.example.com"},
		{name: "punycode", in: "xn--e1afmkfd.xn--p1ai", want: "xn--e1afmkfd.xn--p1ai"},
		{name: "63 byte label", in: strings.Repeat("a", 63) + ".com", want: strings.Repeat("a", 63) + ".com"},
		{name: "253 bytes", in: strings.Repeat("a.", 126) + "a", want: strings.Repeat("a.", 126) + "a"},
		{name: "empty", in: "", errSub: "empty"},
		{name: "wildcard", in: "*.example.com", errSub: "wildcard"},
		{name: "star inside", in: "a*.example.com", errSub: `contains "*"`},
		{name: "trailing dot", in: "example.com.", errSub: "trailing dot"},
		{name: "leading dot", in: ".example.com", errSub: "empty label"},
		{name: "double dot", in: "a..com", errSub: "empty label"},
		{name: "leading hyphen", in: "-a.com", errSub: "starts or ends with '-'"},
		{name: "trailing hyphen", in: "a-.com", errSub: "starts or ends with '-'"},
		{name: "underscore", in: "a_b.com", errSub: `contains "_"`},
		{name: "space", in: "a b.com", errSub: `contains " "`},
		{name: "semicolon", in: "a.com;evil", errSub: `contains ";"`},
		{name: "brace", in: "a.com}", errSub: `contains "}"`},
		{name: "port", in: "a.com:80", errSub: `contains ":"`},
		{name: "cyrillic e look-alike", in: "\u0435xample.com", errSub: "only ASCII"},
		{name: "kelvin sign not folded", in: "\u212aexample.com", errSub: "only ASCII"},
		{name: "64 byte label", in: strings.Repeat("a", 64) + ".com", errSub: "label of 64 bytes"},
		{name: "254 bytes", in: strings.Repeat("a.", 126) + "ab", errSub: "254 bytes"},
		{name: "long value is truncated in message", in: strings.Repeat("a", 300), errSub: "... (300 bytes)"},
	})
}

func TestParsePath(t *testing.T) {
	runParser(t, parsePath, []parserCase[string]{
		{name: "root", in: "/", want: "/"},
		{name: "prefix", in: "/app", want: "/app"},
		{name: "trailing slash stripped", in: "/app/", want: "/app"},
		{name: "nested", in: "/a/b-c/d_e.f~g", want: "/a/b-c/d_e.f~g"},
		{name: "escape kept uppercase", in: "/a%20b%c3%a9", want: "/a%20b%C3%A9"},
		{name: "escaped semicolon is inert", in: "/a%3b", want: "/a%3B"},
		{name: "empty", in: "", errSub: "empty"},
		{name: "relative", in: "app", errSub: "does not start with '/'"},
		{name: "double slash", in: "/a//b", errSub: "not clean"},
		{name: "only slashes", in: "//", errSub: "not clean"},
		{name: "double trailing slash", in: "/a//", errSub: "not clean"},
		{name: "dot segment", in: "/a/./b", errSub: "not clean"},
		{name: "dot dot", in: "/a/../b", errSub: "not clean"},
		{name: "semicolon", in: "/a;b", errSub: `contains ";"`},
		{name: "brace", in: "/a}", errSub: `contains "}"`},
		{name: "open brace", in: "/{a", errSub: `contains "{"`},
		{name: "hash", in: "/a#b", errSub: `contains "#"`},
		{name: "query", in: "/a?b=c", errSub: `contains "?"`},
		{name: "single quote", in: "/a'", errSub: `contains "'"`},
		{name: "double quote", in: `/a"`, errSub: `contains "\""`},
		{name: "backtick", in: "/a`", errSub: "contains \"`\""},
		{name: "backslash", in: `/a\b`, errSub: `contains "\\"`},
		{name: "space", in: "/a b", errSub: `contains " "`},
		{name: "dollar", in: "/$host", errSub: `contains "$"`},
		{name: "unicode", in: "/caf\u00e9", errSub: "only ASCII"},
		{name: "lone percent", in: "/a%", errSub: "two hex digits"},
		{name: "bad hex", in: "/a%zz", errSub: "two hex digits"},
		{name: "short escape", in: "/a%2", errSub: "two hex digits"},
		{name: "encoded NUL", in: "/a%00", errSub: "control character"},
		{name: "encoded newline", in: "/a%0A", errSub: "control character"},
		{name: "encoded slash", in: "/a%2Fb", errSub: "control character, '/' or '\\'"},
		{name: "encoded backslash", in: "/a%5c", errSub: "control character, '/' or '\\'"},
		{name: "encoded dot dot", in: "/a/%2e%2e", errSub: "write it unescaped"},
		{name: "encoded letter", in: "/%41", errSub: "write it unescaped"},
	})
}

func TestParsePathList(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   []string
		errSub string
	}{
		{name: "one", in: "/ws", want: []string{"/ws"}},
		{name: "several with spaces", in: "/ws, /socket ,/io/", want: []string{"/ws", "/socket", "/io"}},
		{name: "empty item", in: "/ws,,/io", errSub: "empty item"},
		{name: "trailing comma", in: "/ws,", errSub: "empty item"},
		{name: "bad item", in: "/ws,/a;b", errSub: `contains ";"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePathList(tc.in)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("parsePathList(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.errSub)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("parsePathList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseCertPath(t *testing.T) {
	runParser(t, parseCertPath, []parserCase[string]{
		{name: "file", in: "app.pem", want: "app.pem"},
		{name: "nested", in: "example.com/fullchain.pem", want: "example.com/fullchain.pem"},
		{name: "hidden file", in: ".secret/key_1.pem", want: ".secret/key_1.pem"},
		{name: "255 bytes", in: strings.Repeat("a", 255), want: strings.Repeat("a", 255)},
		{name: "empty", in: "", errSub: "empty"},
		{name: "absolute", in: "/etc/ssl/key.pem", errSub: "absolute"},
		{name: "traversal", in: "../../etc/shadow", errSub: `".." segment`},
		{name: "inner traversal", in: "a/../../b", errSub: `".." segment`},
		{name: "dot segment", in: "./a.pem", errSub: `"." segment`},
		{name: "empty segment", in: "a//b.pem", errSub: "empty segment"},
		{name: "trailing slash", in: "a/", errSub: "empty segment"},
		{name: "option-like", in: "-rf", errSub: "starting with '-'"},
		{name: "space", in: "a b.pem", errSub: `contains " "`},
		{name: "semicolon", in: "a.pem;rm", errSub: `contains ";"`},
		{name: "backslash", in: `..\a.pem`, errSub: `contains "\\"`},
		{name: "unicode slash look-alike", in: "a\u2215b.pem", errSub: "only ASCII"},
		{name: "256 bytes", in: strings.Repeat("a", 256), errSub: "256 bytes"},
	})
}

func TestParseBool(t *testing.T) {
	runParser(t, parseBool, []parserCase[bool]{
		{name: "true", in: "true", want: true},
		{name: "false", in: "false", want: false},
		{name: "capitalized", in: "True", errSub: "exactly true or false"},
		{name: "one", in: "1", errSub: "exactly true or false"},
		{name: "yes", in: "yes", errSub: "not true"},
		{name: "empty", in: "", errSub: "not a boolean"},
		{name: "padded", in: " true", errSub: "not a boolean"},
	})
}

func TestParsePort(t *testing.T) {
	runParser(t, parsePort, []parserCase[uint16]{
		{name: "min", in: "1", want: 1},
		{name: "http", in: "80", want: 80},
		{name: "max", in: "65535", want: 65535},
		{name: "zero", in: "0", errSub: "1-65535"},
		{name: "too big", in: "65536", errSub: "1-65535"},
		{name: "huge", in: "99999999999", errSub: "1-65535"},
		{name: "leading zero", in: "080", errSub: "1-65535"},
		{name: "sign", in: "+80", errSub: "1-65535"},
		{name: "negative", in: "-1", errSub: "1-65535"},
		{name: "with proto", in: "80/tcp", errSub: "1-65535"},
		{name: "empty", in: "", errSub: "1-65535"},
		{name: "unicode digit", in: "\u0668\u0660", errSub: "1-65535"},
	})
}

func TestParseInterval(t *testing.T) {
	runParser(t, parseInterval, []parserCase[time.Duration]{
		{name: "seconds", in: "5s", want: 5 * time.Second},
		{name: "milliseconds unit", in: "500ms", want: 500 * time.Millisecond},
		{name: "compound", in: "1m30s", want: 90 * time.Second},
		{name: "bare milliseconds", in: "2000", want: 2 * time.Second},
		{name: "minimum", in: "100ms", want: 100 * time.Millisecond},
		{name: "maximum", in: "1h", want: time.Hour},
		{name: "bare maximum", in: "3600000", want: time.Hour},
		{name: "below minimum", in: "99ms", errSub: "out of range"},
		{name: "bare below minimum", in: "99", errSub: "out of range"},
		{name: "zero", in: "0", errSub: "out of range"},
		{name: "above maximum", in: "61m", errSub: "out of range"},
		{name: "bare overflow", in: "99999999999999999999999", errSub: "out of range"},
		{name: "negative", in: "-5s", errSub: "out of range"},
		{name: "no unit fraction", in: "1.5", errSub: "not a duration"},
		{name: "word", in: "often", errSub: "not a duration"},
		{name: "empty", in: "", errSub: "not a duration"},
	})
}

func TestParseEnums(t *testing.T) {
	t.Run("balance", func(t *testing.T) {
		runParser(t, parseBalance, []parserCase[routing.Balance]{
			{name: "roundrobin", in: "roundrobin", want: routing.RoundRobin},
			{name: "leastconn", in: "leastconn", want: routing.LeastConn},
			{name: "source", in: "source", want: routing.Source},
			{name: "random", in: "random", want: routing.Random},
			{name: "uppercase", in: "LeastConn", errSub: "roundrobin, leastconn, source, random"},
			{name: "haproxy only", in: "uri", errSub: "unknown"},
		})
	})
	t.Run("protocol", func(t *testing.T) {
		runParser(t, parseProtocol, []parserCase[routing.Protocol]{
			{name: "http", in: "http", want: routing.HTTP},
			{name: "tcp", in: "tcp", want: routing.TCP},
			{name: "https", in: "https", errSub: "use http or tcp"},
		})
	})
	t.Run("verify", func(t *testing.T) {
		runParser(t, parseVerify, []parserCase[bool]{
			{name: "true", in: "true", want: true},
			{name: "required", in: "required", want: true},
			{name: "false", in: "false", want: false},
			{name: "none", in: "none", want: false},
			{name: "optional", in: "optional", errSub: "not a verify mode"},
		})
	})
	t.Run("backend option", func(t *testing.T) {
		runParser(t, parseBackendOption, []parserCase[string]{
			{name: "forwardfor", in: "forwardfor", want: "forwardfor"},
			{name: "http-server-close", in: "http-server-close", want: "http-server-close"},
			{name: "httpchk not allowed", in: "httpchk", errSub: "not allowed"},
			{name: "with argument", in: "forwardfor except 127.0.0.1", errSub: "one of abortonclose"},
			{name: "newline injection", in: "forwardfor\n  server evil", errSub: "not allowed"},
		})
	})
	t.Run("network", func(t *testing.T) {
		runParser(t, parseNetworkName, []parserCase[string]{
			{name: "simple", in: "backend", want: "backend"},
			{name: "compose style", in: "my_app-net.1", want: "my_app-net.1"},
			{name: "128 bytes", in: strings.Repeat("n", 128), want: strings.Repeat("n", 128)},
			{name: "empty", in: "", errSub: "1-128"},
			{name: "129 bytes", in: strings.Repeat("n", 129), errSub: "1-128"},
			{name: "leading dot", in: ".net", errSub: "invalid"},
			{name: "leading underscore", in: "_net", errSub: "invalid"},
			{name: "slash", in: "a/b", errSub: "invalid"},
			{name: "space", in: "a b", errSub: "invalid"},
		})
	})
}

func TestCheckValue(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		errSub string
	}{
		{name: "plain", in: "app.example.com"},
		{name: "unicode text", in: "caf\u00e9"},
		{name: "1024 bytes", in: strings.Repeat("a", 1024)},
		{name: "1025 bytes", in: strings.Repeat("a", 1025), errSub: "1025 bytes long"},
		{name: "NUL", in: "a\x00b", errSub: "U+0000"},
		{name: "newline", in: "a\nb", errSub: "U+000A"},
		{name: "carriage return", in: "a\rb", errSub: "U+000D"},
		{name: "tab", in: "a\tb", errSub: "U+0009"},
		{name: "DEL", in: "a\x7fb", errSub: "U+007F"},
		{name: "C1 control", in: "a\u0085b", errSub: "U+0085"},
		{name: "invalid UTF-8", in: "a\xffb", errSub: "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkValue(tc.in)
			switch {
			case tc.errSub == "" && err != nil:
				t.Fatalf("checkValue: %v", err)
			case tc.errSub != "" && (err == nil || !strings.Contains(err.Error(), tc.errSub)):
				t.Fatalf("checkValue = %v, want error containing %q", err, tc.errSub)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "short", in: "a;b", want: `"a;b"`},
		{name: "control escaped", in: "a\nb", want: `"a\nb"`},
		{name: "long cut", in: strings.Repeat("x", 100), want: `"` + strings.Repeat("x", 64) + `"... (100 bytes)`},
		// 63 ASCII bytes then a 2-byte rune straddling the cut: the rune
		// is dropped whole, not split.
		{name: "cut at rune start", in: strings.Repeat("x", 63) + "\u00e9" + strings.Repeat("y", 10), want: `"` + strings.Repeat("x", 63) + `"... (75 bytes)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quote(tc.in); got != tc.want {
				t.Fatalf("quote = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		key      string
		wantKind labelKind
		wantBase string
	}{
		{key: "com.example.foo", wantKind: labelForeign},
		{key: "interlock", wantKind: labelForeign},
		{key: LabelExtName, wantKind: labelIgnored},
		{key: "interlock.test.run", wantKind: labelUnknown},
		{key: LabelHostname, wantKind: labelPlain, wantBase: LabelHostname},
		{key: LabelAliasDomain, wantKind: labelIndexed, wantBase: LabelAliasDomain},
		{key: LabelAliasDomain + ".0", wantKind: labelIndexed, wantBase: LabelAliasDomain},
		{key: LabelAliasDomain + ".12", wantKind: labelIndexed, wantBase: LabelAliasDomain},
		{key: LabelBackendOption + ".3", wantKind: labelIndexed, wantBase: LabelBackendOption},
		{key: LabelAliasDomain + ".", wantKind: labelUnknown},
		{key: LabelAliasDomain + ".x", wantKind: labelUnknown},
		{key: LabelAliasDomain + ".-1", wantKind: labelUnknown},
		{key: LabelHostname + ".1", wantKind: labelUnknown},
		{key: "interlock.hostnmae", wantKind: labelUnknown},
		{key: "interlock.Hostname", wantKind: labelUnknown},
		{key: "interlock.ext.other", wantKind: labelUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			kind, base := classify(tc.key)
			if kind != tc.wantKind || base != tc.wantBase {
				t.Fatalf("classify(%q) = %d, %q; want %d, %q", tc.key, kind, base, tc.wantKind, tc.wantBase)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{key: "interlock.hostnmae", want: LabelHostname},
		{key: "interlock.Hostname", want: LabelHostname},
		{key: "interlock.ssl-only", want: LabelSSLOnly},
		{key: "interlock.contextroot", want: LabelContextRoot},
		{key: "interlock.something_else", want: ""},
		{key: "interlock." + strings.Repeat("x", 500), want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.key[:min(len(tc.key), 40)], func(t *testing.T) {
			msg := unknownLabelMessage(tc.key)
			if !strings.Contains(msg, "known labels are "+LabelAliasDomain+", "+LabelAliasDomain+".N, "+LabelBackendConnectTimeout+", "+LabelBackendIdleTimeout+", "+LabelBackendOption) {
				t.Errorf("message does not list the known labels: %s", msg)
			}
			hint := "did you mean " + tc.want + "?"
			if tc.want == "" {
				if strings.Contains(msg, "did you mean") {
					t.Errorf("unexpected suggestion: %s", msg)
				}
			} else if !strings.Contains(msg, hint) {
				t.Errorf("message %q lacks %q", msg, hint)
			}
		})
	}
}
