package builtin

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestHostname(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "app.example", want: "app.example"},
		{name: "port", in: "app.example:8080", want: "app.example"},
		{name: "upper case", in: "App.EXAMPLE", want: "app.example"},
		{name: "trailing dot", in: "app.example.", want: "app.example"},
		{name: "trailing dot and port", in: "App.Example.:443", want: "app.example"},
		{name: "ipv4 with port", in: "10.0.0.1:80", want: "10.0.0.1"},
		{name: "ipv6 with port", in: "[::1]:80", want: "::1"},
		{name: "ipv6 without port", in: "[::1]", want: "::1"},
		{name: "empty", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hostname(tt.in); got != tt.want {
				t.Errorf("hostname(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMatchAndStripPrefix(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		prefix    string
		wantMatch bool
		wantStrip string // only when wantMatch
	}{
		{name: "root matches root", path: "/", prefix: "/", wantMatch: true, wantStrip: "/"},
		{name: "root matches anything", path: "/a/b", prefix: "/", wantMatch: true, wantStrip: "/a/b"},
		{name: "root matches empty", path: "", prefix: "/", wantMatch: true, wantStrip: ""},
		{name: "exact", path: "/app", prefix: "/app", wantMatch: true, wantStrip: "/"},
		{name: "exact with slash", path: "/app/", prefix: "/app", wantMatch: true, wantStrip: "/"},
		{name: "under", path: "/app/x/y", prefix: "/app", wantMatch: true, wantStrip: "/x/y"},
		{name: "double slash kept", path: "/app//x", prefix: "/app", wantMatch: true, wantStrip: "//x"},
		{name: "not on a boundary", path: "/apps", prefix: "/app", wantMatch: false},
		{name: "shorter", path: "/ap", prefix: "/app", wantMatch: false},
		{name: "other", path: "/b/app", prefix: "/app", wantMatch: false},
		{name: "case sensitive", path: "/App", prefix: "/app", wantMatch: false},
		{name: "nested prefix", path: "/a/b/c", prefix: "/a/b", wantMatch: true, wantStrip: "/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchPrefix(tt.path, tt.prefix); got != tt.wantMatch {
				t.Fatalf("matchPrefix(%q, %q) = %v, want %v", tt.path, tt.prefix, got, tt.wantMatch)
			}
			if !tt.wantMatch {
				return
			}
			if got := stripPrefix(tt.path, tt.prefix); got != tt.wantStrip {
				t.Errorf("stripPrefix(%q, %q) = %q, want %q", tt.path, tt.prefix, got, tt.wantStrip)
			}
		})
	}
}

func TestStripURLPath(t *testing.T) {
	tests := []struct {
		name        string
		target      string
		prefix      string
		wantPath    string
		wantRawPath string
		wantURI     string
	}{
		{name: "plain", target: "/app/x?q=1", prefix: "/app", wantPath: "/x", wantURI: "/x?q=1"},
		{name: "escaped slash after prefix", target: "/app/a%2Fb", prefix: "/app", wantPath: "/a/b", wantRawPath: "/a%2Fb", wantURI: "/a%2Fb"},
		{name: "escaped slash ends prefix", target: "/app%2Fx", prefix: "/app", wantPath: "/x", wantRawPath: "", wantURI: "/x"},
		{name: "escaped prefix", target: "/%61pp/a%2Fb", prefix: "/app", wantPath: "/a/b", wantRawPath: "", wantURI: "/a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.ParseRequestURI(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			r := &http.Request{URL: u}
			stripURLPath(r, tt.prefix)
			if u.Path != tt.wantPath || u.RawPath != tt.wantRawPath || u.RequestURI() != tt.wantURI {
				t.Errorf("got path %q raw %q uri %q, want %q %q %q", u.Path, u.RawPath, u.RequestURI(), tt.wantPath, tt.wantRawPath, tt.wantURI)
			}
		})
	}
}

// FuzzStripPrefix checks that a stripped path stays absolute and that the
// prefix and the stripped rest give back the request path.
func FuzzStripPrefix(f *testing.F) {
	for _, s := range []struct{ path, prefix string }{
		{"/app/x", "/app"}, {"/app", "/app"}, {"/apps", "/app"}, {"/", "/"}, {"/a//b", "/a"},
	} {
		f.Add(s.path, s.prefix)
	}
	f.Fuzz(func(t *testing.T, path, prefix string) {
		if !strings.HasPrefix(path, "/") || !strings.HasPrefix(prefix, "/") || (prefix != "/" && strings.HasSuffix(prefix, "/")) {
			t.Skip("not a request path and a clean route prefix")
		}
		if !matchPrefix(path, prefix) {
			if strings.HasPrefix(path, prefix+"/") || path == prefix {
				t.Fatalf("matchPrefix(%q, %q) = false on a segment boundary", path, prefix)
			}
			return
		}
		rest := stripPrefix(path, prefix)
		if !strings.HasPrefix(rest, "/") {
			t.Fatalf("stripPrefix(%q, %q) = %q, not absolute", path, prefix, rest)
		}
		if prefix == "/" {
			if rest != path {
				t.Fatalf("stripPrefix(%q, \"/\") = %q, want the path unchanged", path, rest)
			}
			return
		}
		if back := prefix + rest; back != path && !(rest == "/" && path == prefix) {
			t.Fatalf("prefix %q + rest %q = %q, want %q", prefix, rest, back, path)
		}
	})
}
