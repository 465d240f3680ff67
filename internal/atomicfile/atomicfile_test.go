package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeAndKeepsMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.conf")
	for _, content := range []string{"first\n", "second, longer than the first\n", "3\n"} {
		if err := Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("after Write: %q %v, want %q", got, err, content)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v, want 0600", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestWriteSyncedThenPromote(t *testing.T) {
	dir := t.TempDir()
	live, cand := filepath.Join(dir, "live"), filepath.Join(dir, "live.candidate")
	if err := os.WriteFile(live, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSynced(cand, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(live); string(got) != "old" {
		t.Fatalf("live changed before Promote: %q", got)
	}
	if err := Promote(cand, live); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(live); string(got) != "new" {
		t.Errorf("live after Promote: %q", got)
	}
	if _, err := os.Stat(cand); !os.IsNotExist(err) {
		t.Errorf("candidate still there after Promote: %v", err)
	}
}

func TestWriteIntoMissingDirectoryFails(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "nope", "f"), []byte("x"), 0o600); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}
