package nginx

import (
	_ "embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/interlock-proxy/interlock/internal/proxy/conftmpl"
)

// DefaultTemplate is the built-in template (nginx.conf.tmpl).
//
//go:embed nginx.conf.tmpl
var DefaultTemplate string

// Template is a parsed nginx configuration template over View.
type Template = conftmpl.Template[View]

// ParseTemplate parses text (a Go text/template over View) with the
// helpers of Funcs and missingkey=error. name appears in error messages.
func ParseTemplate(name, text string) (*Template, error) {
	return conftmpl.Parse[View]("nginx", name, text, Funcs())
}

// LoadTemplate parses the template file path, or the built-in one when
// path is "".
func LoadTemplate(path string) (*Template, error) {
	return conftmpl.Load[View]("nginx", path, DefaultTemplate, Funcs())
}

// Funcs returns the helpers every template gets:
//
//	nginxString S    S as an nginx double-quoted string, for directives
//	                 that expand variables; refuses '$' and control bytes
//	nginxLocation S  S quoted for a location match, which nginx takes
//	                 literally ('$' allowed); refuses control bytes
//	nginxLiteral S   S quoted for a value nginx takes literally (location
//	                 and map match strings, regexes included: '$' allowed);
//	                 refuses control bytes
//	nginxWord S      S unquoted, when it is a safe bare word
//	                 ([A-Za-z0-9._~/%:@+=-], not starting with '~' or '=')
//	nginxVar S       S when it can follow '$' as a variable name
//	                 ([a-z0-9_], starting with a letter)
//	serverName S     S when it is a plain lowercase host name
//	join LIST SEP    strings.Join
//
// A refusal fails the render, so nothing unsafe reaches the file.
func Funcs() template.FuncMap {
	return template.FuncMap{
		"nginxString":   nginxString,
		"nginxLocation": nginxLocation,
		"nginxLiteral":  nginxLocation,
		"nginxWord":     nginxWord,
		"nginxVar":      nginxVar,
		"serverName":    serverName,
		"join":          strings.Join,
	}
}

// nginxString quotes s for nginx: '"' and '\' are escaped. '$' is refused,
// because most directives expand variables even inside quotes, and nginx has
// no escape for it; so are control bytes, which no valid value holds.
func nginxString(s string) (string, error) {
	if strings.Contains(s, "$") {
		return "", fmt.Errorf("nginxString: %q holds '$', which nginx would expand as a variable", s)
	}
	return quote(s, "nginxString")
}

// nginxLocation quotes a location match string. nginx compares location
// strings literally, so '$' is allowed here.
func nginxLocation(s string) (string, error) {
	return quote(s, "nginxLocation")
}

func quote(s, fn string) (string, error) {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%s: %q holds the control byte %#02x", fn, s, c)
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), nil
}

// nginxWord returns s when it can stand unquoted in an nginx directive: no
// whitespace, quotes, ';', braces, '#', '$' or '\', and not empty.
func nginxWord(s string) (string, error) {
	if s == "" || s[0] == '~' || s[0] == '=' {
		return "", fmt.Errorf("nginxWord: %q is not a safe bare word", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._~/%:@+=-[]", c) >= 0
		if !ok {
			return "", fmt.Errorf("nginxWord: %q holds %q, which needs quoting", s, c)
		}
	}
	return s, nil
}

// nginxVar returns s when it is a variable name nginx reads whole after
// '$' (its own alphabet is [A-Za-z0-9_]; nginx lowercases names, so only
// lowercase is taken), starting with a letter.
func nginxVar(s string) (string, error) {
	if s == "" || !('a' <= s[0] && s[0] <= 'z') {
		return "", fmt.Errorf("nginxVar: %q is not a variable name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return "", fmt.Errorf("nginxVar: %q holds %q, not a variable name character", s, c)
		}
	}
	return s, nil
}

// serverName returns s when it is a lowercase RFC 1123 host name: no
// wildcard, no leading dot, no regex ('~'), nothing nginx would read as
// more than one exact name.
func serverName(s string) (string, error) {
	if s == "" || len(s) > 253 || s[0] == '.' || s[0] == '-' || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return "", fmt.Errorf("serverName: %q is not a host name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return "", fmt.Errorf("serverName: %q holds %q, not a host name character", s, c)
		}
	}
	return s, nil
}
