package main

import (
	"path/filepath"

	"github.com/interlock-proxy/interlock/internal/config"
)

// savedTableFile is the last good table's file in the state directory
// (controller.Options.SavedTable): a restart serves it until Docker
// answers.
const savedTableFile = "last-table.json"

// savedTablePath is where cfg keeps the last good table, or "" when a
// restart gains nothing from one: a proxy Interlock does not run itself
// (side-loaded containers, nginx behind a pid file) keeps serving its own
// configuration while Interlock is away, and is adopted as it is when
// Interlock returns; a table put live before Docker answers would only
// reach it before Interlock knows which containers it is.
func savedTablePath(cfg config.Config) string {
	switch {
	case cfg.Proxy == config.ProxyNginx && (cfg.NginxTarget == config.NginxContainers || cfg.NginxPidFile != ""),
		cfg.Proxy == config.ProxyHAProxy && cfg.HAProxyTarget == config.TargetContainers:
		return ""
	}
	p, err := filepath.Abs(filepath.Join(cfg.StateDir, savedTableFile))
	if err != nil {
		return filepath.Join(cfg.StateDir, savedTableFile)
	}
	return p
}
