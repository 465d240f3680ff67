package haproxy

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"text/template"
)

// DefaultTemplate is the built-in template (haproxy.cfg.tmpl).
//
//go:embed haproxy.cfg.tmpl
var DefaultTemplate string

// Template is a parsed HAProxy configuration template.
type Template struct {
	t *template.Template
	// Source names where it came from: "built-in" or the file.
	Source string
}

// ParseTemplate parses text (a Go text/template over View) with the
// helpers of Funcs and missingkey=error. name appears in error messages.
func ParseTemplate(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(Funcs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("haproxy template: %w", err)
	}
	return &Template{t: t, Source: name}, nil
}

// LoadTemplate parses the template file path, or the built-in one when
// path is "".
func LoadTemplate(path string) (*Template, error) {
	if path == "" {
		return ParseTemplate("built-in", DefaultTemplate)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("haproxy template: %w", err)
	}
	return ParseTemplate(path, string(b))
}

// Render executes the template over v. The same view always gives the same
// bytes.
func (t *Template) Render(v View) ([]byte, error) {
	var b bytes.Buffer
	if err := t.t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("haproxy template %s: %w", t.Source, err)
	}
	return b.Bytes(), nil
}
