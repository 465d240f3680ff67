package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The last good table on disk (Options.SavedTable). After every apply
// that changed the live table, the table is written there, atomically and
// off the loop's goroutine; at start, before Docker has answered, the loop
// puts it live, so the proxy serves the routes it served before within
// moments of a restart, even while Docker is unreachable. The first table
// built from Docker replaces it (or, when it is the same, leaves it live
// without another apply).

// savedVersion is the file format's version.
const savedVersion = 1

// maxSavedSize bounds what is read back: far above any real table (10,000
// backends are about 2 MB), far below what would hurt.
const maxSavedSize = 256 << 20

// savedTable is the file's content. Hash is the table's routing hash,
// checked on load, so a truncated or edited file is refused rather than
// served.
type savedTable struct {
	Version int           `json:"version"`
	Hash    string        `json:"hash"`
	SavedAt time.Time     `json:"saved_at"`
	Table   routing.Table `json:"table"`
}

// loadSaved reads the table saved at path.
func loadSaved(path string) (routing.Table, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return routing.Table{}, time.Time{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSavedSize+1))
	if err != nil {
		return routing.Table{}, time.Time{}, err
	}
	if len(data) > maxSavedSize {
		return routing.Table{}, time.Time{}, fmt.Errorf("%s is over %d bytes", path, maxSavedSize)
	}
	var s savedTable
	if err := json.Unmarshal(data, &s); err != nil {
		return routing.Table{}, time.Time{}, fmt.Errorf("%s is not a saved table (truncated or corrupt?): %w", path, err)
	}
	if s.Version != savedVersion {
		return routing.Table{}, time.Time{}, fmt.Errorf("%s is a saved table of version %d; this Interlock reads version %d", path, s.Version, savedVersion)
	}
	s.Table.Normalize()
	if h := s.Table.Hash(); h != s.Hash {
		return routing.Table{}, time.Time{}, fmt.Errorf("%s does not match its own hash (truncated or edited?): %s, want %s", path, h, s.Hash)
	}
	return s.Table, s.SavedAt, nil
}

// writeSaved writes t to path atomically.
func writeSaved(path string, t routing.Table) error {
	data, err := json.Marshal(savedTable{Version: savedVersion, Hash: t.Hash(), SavedAt: time.Now().UTC(), Table: t})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// restoreSaved puts the saved table live, unless a snapshot from Docker
// is already waiting (fresh state beats saved state) or there is none to
// restore. A bad file is logged and left alone: the table from Docker
// comes next anyway.
func (c *Controller) restoreSaved(ctx context.Context) {
	if len(c.mailbox) > 0 {
		return
	}
	t, savedAt, err := loadSaved(c.opts.SavedTable)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		c.log.Warn("the last good table is not restored; routes come from Docker once it answers", "error", err)
		return
	}
	start := time.Now()
	if err := c.safeApply(ctx, t); err != nil {
		c.log.Error("the last good table could not be put live; routes come from Docker once it answers", "path", c.opts.SavedTable, "error", err)
		return
	}
	hash := t.Hash()
	c.mu.Lock()
	c.status.Applied, c.status.Restored = true, true
	c.status.Hash, c.status.Table = hash, t
	c.status.LastApply = Apply{At: start, Duration: time.Since(start), Hash: hash}
	c.status.Applies++
	c.liveIDs = backendIDs(t)
	c.saved = hash
	c.mu.Unlock()
	c.log.Info("serving the last good table from disk until Docker answers", "path", c.opts.SavedTable,
		"saved_at", savedAt, "hosts", len(t.Hosts), "backends", t.BackendCount())
}

// saveLoop writes the newest live table whenever it changed, until ctx
// ends. A failed write is retried with the next change, and logged when
// it starts failing (or fails otherwise), not at every change.
func (c *Controller) saveLoop(ctx context.Context) {
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.saveKick:
		}
		c.mu.Lock()
		t, hash, applied, saved := c.status.Table, c.status.Hash, c.status.Applied, c.saved
		c.mu.Unlock()
		if !applied || hash == saved {
			continue
		}
		if err := writeSaved(c.opts.SavedTable, t); err != nil {
			if err.Error() != lastErr {
				c.log.Warn("the last good table was not saved; a restart waits for Docker for its routes", "path", c.opts.SavedTable, "error", err)
			}
			lastErr = err.Error()
			continue
		}
		lastErr = ""
		c.mu.Lock()
		c.saved = hash
		c.mu.Unlock()
	}
}

// kickSave asks saveLoop for a write; it never blocks.
func (c *Controller) kickSave() {
	select {
	case c.saveKick <- struct{}{}:
	default:
	}
}
