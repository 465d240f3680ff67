package nginx

import (
	"fmt"
	"strings"
	"testing"
)

// directive is one parsed nginx statement: a name, its arguments (quoted
// strings unquoted) and, for blocks, its children.
type directive struct {
	name     string
	args     []string
	block    bool
	children []*directive
	line     int
	// quotedName: the name was a quoted string (only map keys are).
	quotedName bool
}

// parseConf is a small nginx configuration parser, enough to check what the
// renderer writes: words, double-quoted strings with \-escapes, ';', '{',
// '}' and '#' comments. It fails on anything unbalanced or unterminated.
func parseConf(src string) ([]*directive, error) {
	p := &confParser{src: src, line: 1}
	ds, err := p.block()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.src) {
		return nil, fmt.Errorf("line %d: unexpected '}'", p.line)
	}
	return ds, nil
}

type confParser struct {
	src  string
	pos  int
	line int
}

// token returns the next token: a word, a quoted string (quoted=true), or
// one of ; { }. "" at the end.
func (p *confParser) token() (tok string, quoted bool, err error) {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			goto found
		}
	}
	return "", false, nil
found:
	c := p.src[p.pos]
	switch c {
	case ';', '{', '}':
		p.pos++
		return string(c), false, nil
	case '"', '\'':
		var b strings.Builder
		p.pos++
		for p.pos < len(p.src) {
			d := p.src[p.pos]
			switch {
			case d == '\\' && p.pos+1 < len(p.src):
				b.WriteByte(p.src[p.pos+1])
				p.pos += 2
			case d == c:
				p.pos++
				return b.String(), true, nil
			case d == '\n':
				return "", false, fmt.Errorf("line %d: newline inside a quoted string", p.line)
			default:
				b.WriteByte(d)
				p.pos++
			}
		}
		return "", false, fmt.Errorf("line %d: unterminated string", p.line)
	}
	start := p.pos
	for p.pos < len(p.src) && !strings.ContainsRune(" \t\r\n;{}#\"'", rune(p.src[p.pos])) {
		p.pos++
	}
	return p.src[start:p.pos], false, nil
}

func (p *confParser) block() ([]*directive, error) {
	var out []*directive
	var cur *directive
	for {
		save, saveLine := p.pos, p.line
		tok, quoted, err := p.token()
		if err != nil {
			return nil, err
		}
		switch {
		case tok == "" && !quoted:
			if cur != nil {
				return nil, fmt.Errorf("line %d: %s is not terminated", cur.line, cur.name)
			}
			return out, nil
		case tok == "}" && !quoted:
			if cur != nil {
				return nil, fmt.Errorf("line %d: %s is not terminated before '}'", cur.line, cur.name)
			}
			p.pos, p.line = save, saveLine
			return out, nil
		case tok == ";" && !quoted:
			if cur == nil {
				return nil, fmt.Errorf("line %d: empty statement", p.line)
			}
			out, cur = append(out, cur), nil
		case tok == "{" && !quoted:
			if cur == nil {
				return nil, fmt.Errorf("line %d: block without a name", p.line)
			}
			children, err := p.block()
			if err != nil {
				return nil, err
			}
			if end, _, _ := p.token(); end != "}" {
				return nil, fmt.Errorf("line %d: block %s is not closed", cur.line, cur.name)
			}
			cur.block, cur.children = true, children
			out, cur = append(out, cur), nil
		case cur == nil:
			cur = &directive{name: tok, quotedName: quoted, line: p.line}
		default:
			cur.args = append(cur.args, tok)
		}
	}
}

// allowed lists the directives the built-in template may write, per
// context. An injected directive shows up here as a stranger.
var allowed = map[string][]string{
	"":         {"load_module", "worker_processes", "worker_shutdown_timeout", "pid", "error_log", "events", "http", "stream"},
	"events":   {"worker_connections"},
	"http":     {"access_log", "log_format", "geo", "client_header_timeout", "client_body_timeout", "keepalive_timeout", "large_client_header_buffers", "proxy_read_timeout", "server_tokens", "default_type", "client_max_body_size", "server_names_hash_bucket_size", "server_names_hash_max_size", "map_hash_bucket_size", "map_hash_max_size", "variables_hash_bucket_size", "variables_hash_max_size", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path", "map", "proxy_http_version", "proxy_set_header", "proxy_connect_timeout", "proxy_next_upstream", "set_real_ip_from", "real_ip_header", "ssl_protocols", "ssl_ciphers", "ssl_ecdh_curve", "ssl_prefer_server_ciphers", "ssl_session_timeout", "ssl_session_cache", "ssl_session_tickets", "upstream", "server"},
	"map":      {"default", ""},
	"geo":      {"default", ""},
	"upstream": {"least_conn", "ip_hash", "random", "hash", "server", "keepalive", "keepalive_timeout"},
	"server":   {"listen", "server_name", "default_type", "add_header", "return", "ssl_reject_handshake", "ssl_certificate", "ssl_certificate_key", "location", "if", "error_page"},
	"if":       {"return"},
	"location": {"set", "proxy_read_timeout", "proxy_send_timeout", "proxy_ssl_server_name", "proxy_ssl_name", "proxy_ssl_verify", "proxy_ssl_verify_depth", "proxy_ssl_trusted_certificate", "proxy_pass", "default_type", "add_header", "return", "if",
		// A route's own limits (route_limits.go).
		"client_max_body_size", "error_page", "proxy_connect_timeout"},
	// The stream block of SNI passthrough: its contexts are named
	// "stream/NAME".
	"stream":          {"map", "upstream", "server"},
	"stream/map":      {"default", ""},
	"stream/upstream": {"least_conn", "random", "hash", "server"},
	"stream/server":   {"listen", "ssl_preread", "preread_timeout", "proxy_protocol", "proxy_protocol_timeout", "proxy_connect_timeout", "proxy_timeout", "proxy_pass", "set_real_ip_from"},
}

// checkStructure parses conf and checks that every directive is one the
// template writes, in its context, and blocks are where they belong.
func checkStructure(t testing.TB, conf []byte) []*directive {
	t.Helper()
	ds, err := parseConf(string(conf))
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, conf)
	}
	var walk func(ctx string, ds []*directive)
	walk = func(ctx string, ds []*directive) {
		for _, d := range ds {
			isMap := ctx == "map" || ctx == "stream/map" || ctx == "geo"
			ok := false
			for _, a := range allowed[ctx] {
				if a == d.name || isMap {
					ok = true
				}
			}
			if d.quotedName && !isMap {
				ok = false
			}
			if !ok {
				t.Fatalf("line %d: directive %q in %q context is not one the template writes\n%s", d.line, d.name, ctx, conf)
			}
			if d.block {
				next := d.name
				if strings.HasPrefix(ctx, "stream") {
					next = "stream/" + d.name
				}
				walk(next, d.children)
			}
		}
	}
	walk("", ds)
	return ds
}

// find returns the directives named name anywhere in ds, depth first.
func find(ds []*directive, name string) []*directive {
	var out []*directive
	for _, d := range ds {
		if d.name == name {
			out = append(out, d)
		}
		out = append(out, find(d.children, name)...)
	}
	return out
}

func TestParseConf(t *testing.T) {
	for _, bad := range []string{"a", "a {", "a { b; ", "}", "a \"x", "{ }", ";", "a \"x\ny\";", "a { b; } }"} {
		if _, err := parseConf(bad); err == nil {
			t.Errorf("parseConf(%q) accepted", bad)
		}
	}
	ds, err := parseConf("a b \"c\\\"d\" ; e { f; } # g;\n")
	if err != nil || len(ds) != 2 || ds[0].args[1] != `c"d` || len(ds[1].children) != 1 {
		t.Fatalf("parseConf = %+v, %v", ds, err)
	}
}
