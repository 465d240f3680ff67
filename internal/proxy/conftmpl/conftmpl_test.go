package conftmpl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

type view struct{ Name string }

func TestParseLoadRender(t *testing.T) {
	funcs := template.FuncMap{"upper": strings.ToUpper}
	builtin, err := Load[view]("test", "", "name {{ upper .Name }}\n", funcs)
	if err != nil {
		t.Fatal(err)
	}
	out, err := builtin.Render(view{Name: "web"})
	if err != nil || string(out) != "name WEB\n" || builtin.Source != "built-in" {
		t.Fatalf("built-in: %q %v source %q", out, err, builtin.Source)
	}

	path := filepath.Join(t.TempDir(), "custom.tmpl")
	if err := os.WriteFile(path, []byte("{{ .Missing }}"), 0o600); err != nil {
		t.Fatal(err)
	}
	custom, err := Load[view]("test", path, "", funcs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := custom.Render(view{}); err == nil || !strings.Contains(err.Error(), "test template "+path) {
		t.Errorf("a field the view lacks: %v, want an error naming the driver and the file", err)
	}
	if _, err := Parse[view]("test", "bad", "{{ if }}", funcs); err == nil || !strings.HasPrefix(err.Error(), "test template") {
		t.Errorf("syntax error: %v", err)
	}
	if _, err := Load[view]("test", filepath.Join(t.TempDir(), "nope"), "", funcs); err == nil {
		t.Error("a missing template file loaded")
	}
}
