package haproxy

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Funcs returns the helpers every template gets:
//
//	word S      S unquoted, when it is a safe bare HAProxy word:
//	            [A-Za-z0-9._:/@%+=,~()[]-], not empty, not starting with
//	            '-' or '!'; nothing HAProxy would read as a quote, an
//	            escape, a comment, a variable, a flag or an anonymous ACL
//	words LIST  each element of LIST through word, joined by spaces
//	name S      S when it is a safe proxy, server or ACL name:
//	            [A-Za-z0-9._:-], starting with a letter or digit
//	quote S     S as one single-quoted HAProxy argument ('\'' for a
//	            quote inside); refuses control bytes. Inside single
//	            quotes HAProxy interprets nothing: no escapes, no
//	            variables, no comments
//	path S      a file path: as quote does, unless S holds ${HOSTNAME}
//	            (the per-container sockets and state files of side-loaded
//	            containers), which HAProxy expands only inside double
//	            quotes: then S double-quoted, refusing any other '$',
//	            '\', '"' or control byte
//	hostnames L each element of L when it is a lowercase host name,
//	            joined by spaces
//	ms D        the time.Duration D as whole milliseconds (HAProxy's
//	            default time unit), at least 1
//	join L SEP  strings.Join
//	servers L O the server lines of the servers L with the options O,
//	            each on a new line indented by four spaces: "server NAME
//	            ADDRESS [O...] [cookie C] [# CONTAINER]", every part
//	            checked as name and word check it (one call per backend:
//	            a range over thousands of servers is the render's cost)
//
// A refusal fails the render, so nothing unsafe reaches the file.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"word":      word,
		"words":     words,
		"name":      name,
		"quote":     quote,
		"path":      path,
		"hostnames": hostnames,
		"ms":        ms,
		"join":      strings.Join,
		"servers":   serverLines,
	}
}

// serverLines renders the server lines of one backend, as the template's
// range over them once did, word for word.
func serverLines(servers []Server, opts []string) (string, error) {
	optText := ""
	if len(opts) > 0 {
		w, err := words(opts)
		if err != nil {
			return "", err
		}
		optText = " " + w
	}
	var b strings.Builder
	b.Grow(len(servers) * (48 + len(optText)))
	for _, sv := range servers {
		n, err := name(sv.Name)
		if err != nil {
			return "", err
		}
		addr, err := word(sv.Address)
		if err != nil {
			return "", err
		}
		b.WriteString("\n    server ")
		b.WriteString(n)
		b.WriteByte(' ')
		b.WriteString(addr)
		b.WriteString(optText)
		if sv.Cookie != "" {
			c, err := word(sv.Cookie)
			if err != nil {
				return "", err
			}
			b.WriteString(" cookie ")
			b.WriteString(c)
		}
		if sv.Container != "" {
			c, err := word(sv.Container)
			if err != nil {
				return "", err
			}
			b.WriteString(" # ")
			b.WriteString(c)
		}
	}
	return b.String(), nil
}

// word returns s when it can stand unquoted in an HAProxy configuration.
func word(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("word: empty value")
	}
	if s[0] == '-' || s[0] == '!' {
		return "", fmt.Errorf("word: %q starts with %q, which HAProxy could read as a flag or a negation", s, s[0])
	}
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return "", fmt.Errorf("word: %q holds %q, which needs quoting", s, s[i])
		}
	}
	return s, nil
}

func isWordByte(c byte) bool { return wordBytes[c] }

// wordBytes is the bare-word alphabet as a table: word runs on every
// value of the file, and a table lookup keeps a large render cheap.
var wordBytes = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("._:/@%+=,~()[]-", b) >= 0
	}
	return t
}()

func words(list []string) (string, error) {
	out := make([]string, len(list))
	for i, s := range list {
		w, err := word(s)
		if err != nil {
			return "", err
		}
		out[i] = w
	}
	return strings.Join(out, " "), nil
}

// name returns s when it is a valid HAProxy identifier (proxy, server and
// ACL names share HAProxy's rule: letters, digits, '.', '_', ':', '-').
func name(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("name: empty value")
	}
	if !isAlnum(s[0]) {
		return "", fmt.Errorf("name: %q does not start with a letter or digit", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return "", fmt.Errorf("name: %q holds %q, not allowed in an HAProxy name", s, c)
		}
	}
	return s, nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// quote single-quotes s. HAProxy's tokenizer takes everything between
// single quotes literally and joins adjacent quoted and unquoted parts of
// one word, so a quote inside closes the quoted part, is escaped (\') and
// opens a new one, as in a shell.
func quote(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("quote: %q holds the control byte %#02x", s, c)
		case c == '\'':
			b.WriteString(`'\''`)
			continue
		}
		b.WriteByte(c)
	}
	b.WriteByte('\'')
	return b.String(), nil
}

// InstanceVar stands, in a path, for the HAProxy instance that reads the
// file: HAProxy replaces it with its HOSTNAME environment variable, which
// Docker sets to the container's host name. Side-loaded containers share
// one file but each needs its own admin socket and server-state file.
const InstanceVar = "${HOSTNAME}"

// path renders a file path for the file: single-quoted (nothing
// interpreted), or, when it holds InstanceVar, double-quoted so that HAProxy
// expands that variable and nothing else.
func path(s string) (string, error) {
	if !strings.Contains(s, InstanceVar) {
		return quote(s)
	}
	rest := strings.ReplaceAll(s, InstanceVar, "")
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c < 0x20 || c == 0x7f || c == '$' || c == '\\' || c == '"' {
			return "", fmt.Errorf("path: %q holds %q, which HAProxy would interpret inside double quotes", s, c)
		}
	}
	return `"` + s + `"`, nil
}

// hostnames returns the names joined by spaces when each is a lowercase
// RFC 1123 host name.
func hostnames(list []string) (string, error) {
	if len(list) == 0 {
		return "", fmt.Errorf("hostnames: empty list")
	}
	for _, s := range list {
		if !isHostname(s) {
			return "", fmt.Errorf("hostnames: %q is not a lowercase host name", s)
		}
	}
	return strings.Join(list, " "), nil
}

// isHostname reports whether s is a lowercase RFC 1123 host name: labels of
// 1-63 [a-z0-9-], not starting or ending with '-', at most 253 bytes.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ms formats d as milliseconds, rounded up so a positive duration never
// becomes 0 (which HAProxy reads as "no timeout" in places).
func ms(d time.Duration) (string, error) {
	if d <= 0 {
		return "", fmt.Errorf("ms: %v is not a positive duration", d)
	}
	n := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(n), 10), nil
}
