package haproxy

import (
	"context"
	"strings"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// noContainers is a Containers with none running.
type noContainers struct{}

func (noContainers) Targets(context.Context) ([]Target, error)    { return nil, nil }
func (noContainers) Signal(context.Context, string, string) error { return nil }

// TestVolumeModeSettings: side-loaded containers share the file, so their
// admin sockets and state files are named by HOSTNAME; a template that
// would give them one literal path is refused before anything is written,
// as are state directories that cannot hold the sockets.
func TestVolumeModeSettings(t *testing.T) {
	dir := t.TempDir()
	newVolume := func(tmpl *Template, stateDir string) (*Driver, error) {
		return New(Options{Template: tmpl, Mode: Volume, Containers: noContainers{}, StateDir: stateDir,
			HTTPAddr: ":80", HTTPSAddr: ":443", CertDir: dir})
	}
	d, err := newVolume(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	conf, _, err := d.Render(table(routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/"}}}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`stats socket "` + dir + `/admin-${HOSTNAME}.sock"`, `server-state-file "` + dir + `/servers-${HOSTNAME}.state"`} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("rendered file lacks %s", want)
		}
	}

	quoted := strings.ReplaceAll(DefaultTemplate, "{{path .}}", "{{quote .}}")
	tmpl, err := ParseTemplate("quoted.tmpl", quoted)
	if err != nil {
		t.Fatal(err)
	}
	d, err = newVolume(tmpl, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Render(routing.Table{}); err == nil || !strings.Contains(err.Error(), "{{path .Global.AdminSocket}}") {
		t.Errorf("a template quoting the per-container socket: err = %v, want the fix named", err)
	}

	for _, c := range []struct{ dir, want string }{
		{"/" + strings.Repeat("d", 90), "too long"},
		{dir + `/a"b`, "must not hold"},
	} {
		if _, err := newVolume(nil, c.dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("state directory %q: err = %v, want %q", c.dir, err, c.want)
		}
	}
	if _, err := New(Options{Mode: Volume, StateDir: dir}); err == nil || !strings.Contains(err.Error(), "Containers") {
		t.Errorf("volume mode without the Docker side: err = %v", err)
	}
}
