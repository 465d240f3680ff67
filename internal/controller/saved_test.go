package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
)

// savedOf is the table discovery builds for s, as the loop would apply it.
func savedOf(t *testing.T, path string, cs ...string) {
	t.Helper()
	var containers = snap()
	for i, host := range cs {
		containers.Containers = append(containers.Containers, web(string(rune('a'+i)), host, uint16(30000+i)))
	}
	table, _ := discovery.Build(containers, discovery.Options{BackendAddress: "127.0.0.1"})
	if err := writeSaved(path, table); err != nil {
		t.Fatal(err)
	}
}

func TestSavedTableIsWrittenAfterApplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state", "table.json")
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{SavedTable: path})
		defer cancel()
		c.Update(snap(web("a", "a.example.com", 30000)))
		synctest.Wait()
		got, _, err := loadSaved(path)
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash() != c.Status().Hash || len(got.Hosts) != 1 || got.Hosts[0].Name != "a.example.com" {
			t.Errorf("saved %+v, want the live table %s", got, c.Status().Hash)
		}
		c.Update(snap(web("a", "a.example.com", 30000), web("b", "b.example.com", 30001)))
		synctest.Wait()
		if got, _, err = loadSaved(path); err != nil || len(got.Hosts) != 2 {
			t.Errorf("after a change: saved %d hosts, %v; want 2", len(got.Hosts), err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
		}
	})
}

func TestSavedTableIsServedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "table.json")
		savedOf(t, path, "a.example.com")
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{SavedTable: path})
		defer cancel()
		synctest.Wait()
		if n := d.count(); n != 1 || d.applied[0].Hosts[0].Name != "a.example.com" {
			t.Fatalf("%d applies before Docker answered, want the saved table applied once", n)
		}
		if st := c.Status(); !st.Applied || !st.Restored {
			t.Errorf("status %+v, want applied and restored", st)
		}
		// Docker says the same: nothing to apply, the table is confirmed.
		c.Update(snap(web("a", "a.example.com", 30000)))
		synctest.Wait()
		if n := d.count(); n != 1 {
			t.Errorf("%d applies, want 1: Docker's table equals the saved one", n)
		}
		if c.Status().Restored {
			t.Error("still restored after Docker's table")
		}
		c.Update(snap(web("b", "b.example.com", 30001)))
		synctest.Wait()
		if n := d.count(); n != 2 {
			t.Errorf("%d applies, want 2 after a change", n)
		}
	})
}

func TestBadSavedTableIsNotServed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"truncated", func(t *testing.T, path string) {
			savedOf(t, path, "a.example.com")
			data, _ := os.ReadFile(path)
			os.WriteFile(path, data[:len(data)/2], 0o600)
		}},
		{"edited", func(t *testing.T, path string) {
			savedOf(t, path, "a.example.com")
			data, _ := os.ReadFile(path)
			os.WriteFile(path, []byte(string(data[:len(data)-20])+`x"}]}]}]}}`), 0o600)
		}},
		{"another version", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(`{"version":99,"hash":"","table":{"hosts":[]}}`), 0o600)
		}},
		{"a table that does not match its hash", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(`{"version":1,"hash":"0000","table":{"hosts":[{"name":"a.example.com","routes":[]}]}}`), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "table.json")
				tc.write(t, path)
				d := &fakeDriver{}
				c, cancel := start(t, d, Options{SavedTable: path})
				defer cancel()
				synctest.Wait()
				if n := d.count(); n != 0 || c.Status().Applied {
					t.Errorf("%d applies of a bad saved table, want none", n)
				}
				c.Update(snap(web("a", "a.example.com", 30000)))
				synctest.Wait()
				if n := d.count(); n != 1 {
					t.Errorf("%d applies after Docker answered, want 1", n)
				}
			})
		})
	}
}

// A snapshot that is already waiting wins over the saved table.
func TestFreshSnapshotBeatsSavedTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "table.json")
		savedOf(t, path, "old.example.com")
		d := &fakeDriver{}
		c := New(d, discovery.Options{BackendAddress: "127.0.0.1"}, Options{SavedTable: path, Logger: quietLogger()})
		c.Update(snap(web("n", "new.example.com", 30000)))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { _ = c.Run(ctx) }()
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := d.count(); n != 1 || d.applied[0].Hosts[0].Name != "new.example.com" {
			t.Errorf("applied %v, want only Docker's table", d.applied)
		}
	})
}

// TestPrimed: Primed closes only once the saved table is live (a proxy
// that waits for it never answers from an empty table), and at once when
// there is none to restore.
func TestPrimed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		saved     bool
		wantHosts int
	}{
		{"saved table", true, 1},
		{"nothing saved", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "table.json")
				if tc.saved {
					savedOf(t, path, "a.example.com")
				}
				d := &fakeDriver{}
				c := New(d, discovery.Options{}, Options{SavedTable: path, Logger: quietLogger()})
				select {
				case <-c.Primed():
					t.Fatal("primed before Run")
				default:
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() { _ = c.Run(ctx) }()
				<-c.Primed()
				if n := d.count(); n != tc.wantHosts {
					t.Fatalf("primed with %d applies, want %d", n, tc.wantHosts)
				}
				if got := c.Status().Applied; got != tc.saved {
					t.Errorf("primed with applied=%v, want %v", got, tc.saved)
				}
				cancel()
				synctest.Wait()
			})
		})
	}
}
