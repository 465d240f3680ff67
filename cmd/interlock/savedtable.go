package main

import (
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/config"
)

// savedTableFile is the last good table's file in the state directory
// (controller.Options.SavedTable): a restart serves it until Docker
// answers.
const savedTableFile = "last-table.json"

// savedTablePath is where cfg keeps the last good table.
func savedTablePath(cfg config.Config) string {
	p, err := filepath.Abs(filepath.Join(cfg.StateDir, savedTableFile))
	if err != nil {
		return filepath.Join(cfg.StateDir, savedTableFile)
	}
	return p
}
