package controller

import (
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// Status is what the controller last did.
type Status struct {
	Driver string `json:"driver"`
	// Applied is true once a table has been put live.
	Applied bool `json:"applied"`
	// Restored is true while the live table is the last good one from
	// disk (Options.SavedTable), not yet confirmed or replaced by Docker.
	Restored bool `json:"restored,omitempty"`
	// Hash identifies the live table.
	Hash     string            `json:"hash"`
	Table    routing.Table     `json:"-"`
	Problems []routing.Problem `json:"-"`
	// LastApply is the most recent attempt, failed or not.
	LastApply Apply `json:"last_apply"`
	Applies   int64 `json:"applies"`
	Failures  int64 `json:"failures"`
	// LastConvergence is the time from the oldest snapshot an apply covered
	// to that apply's end.
	LastConvergence time.Duration `json:"last_convergence_ns"`
}

// Apply records one attempt to put a table live.
type Apply struct {
	At       time.Time     `json:"at"`
	Duration time.Duration `json:"duration_ns"`
	Hash     string        `json:"hash"`
	Error    string        `json:"error,omitempty"`
}

// Status returns a copy of the current status. Its Table and Problems are
// shared and must not be modified.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Snapshot returns the Docker snapshot the last table was built from
// (the zero Snapshot before the first): what `interlock explain` looks
// up. It is shared and must not be modified.
func (c *Controller) Snapshot() docker.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}
