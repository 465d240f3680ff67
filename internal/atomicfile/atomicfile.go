// Package atomicfile writes the files that proxies read while Interlock
// rewrites them: durably (fsync of the file and its directory) and without
// a reader ever seeing half a file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write puts data at path: a temporary file beside it, fsynced, then
// renamed over it, then the directory fsynced. A reader sees the old file
// or the new one, never a part.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	if err := writeAndSync(f, data); err != nil {
		return err
	}
	return Promote(tmp, path)
}

// WriteSynced writes data to path in place and fsyncs it: for a candidate
// that no one reads while it is written.
func WriteSynced(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	return writeAndSync(f, data)
}

// Promote renames a written, synced file over live and fsyncs the
// directory, so the swap survives a crash.
func Promote(from, live string) error {
	if err := os.Rename(from, live); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(live)); err != nil {
		return fmt.Errorf("sync directory of %s: %w", live, err)
	}
	return nil
}

// SyncDir fsyncs a directory, making renames in it durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func writeAndSync(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
