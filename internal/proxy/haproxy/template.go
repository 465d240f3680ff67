package haproxy

import (
	_ "embed"

	"github.com/interlock-proxy/interlock/internal/proxy/conftmpl"
)

// DefaultTemplate is the built-in template (haproxy.cfg.tmpl).
//
//go:embed haproxy.cfg.tmpl
var DefaultTemplate string

// Template is a parsed haproxy configuration template over View.
type Template = conftmpl.Template[View]

// ParseTemplate parses text (a Go text/template over View) with the
// helpers of Funcs and missingkey=error. name appears in error messages.
func ParseTemplate(name, text string) (*Template, error) {
	return conftmpl.Parse[View]("haproxy", name, text, Funcs())
}

// LoadTemplate parses the template file path, or the built-in one when
// path is "".
func LoadTemplate(path string) (*Template, error) {
	return conftmpl.Load[View]("haproxy", path, DefaultTemplate, Funcs())
}
