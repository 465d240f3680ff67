// Package conftmpl is the template machinery the file-driven proxy drivers
// share: a Go text/template over a driver's typed view, parsed with the
// driver's helpers and missingkey=error, rendered deterministically.
package conftmpl

import (
	"bytes"
	"fmt"
	"os"
	"text/template"
)

// Template is a parsed configuration template over views of type V.
type Template[V any] struct {
	t      *template.Template
	driver string
	// Source names where it came from: "built-in" or the file.
	Source string
}

// Parse parses text with funcs and missingkey=error. driver and name
// appear in error messages.
func Parse[V any](driver, name, text string, funcs template.FuncMap) (*Template[V], error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s template: %w", driver, err)
	}
	return &Template[V]{t: t, driver: driver, Source: name}, nil
}

// Load parses the template file path, or builtin when path is "".
func Load[V any](driver, path, builtin string, funcs template.FuncMap) (*Template[V], error) {
	if path == "" {
		return Parse[V](driver, "built-in", builtin, funcs)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s template: %w", driver, err)
	}
	return Parse[V](driver, path, string(b), funcs)
}

// Render executes the template over v. The same view always gives the same
// bytes.
func (t *Template[V]) Render(v V) ([]byte, error) {
	var b bytes.Buffer
	if err := t.t.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("%s template %s: %w", t.driver, t.Source, err)
	}
	return b.Bytes(), nil
}
