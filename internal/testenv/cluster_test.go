package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestSweepClusterDirs(t *testing.T) {
	// Directories as Env.Cluster names them, for: a run of a dead
	// process, a run of a live one, and the run being swept.
	mk := func(run string, pid int) string {
		t.Helper()
		d, err := os.MkdirTemp("", clusterDirPrefix+run+"-"+strconv.Itoa(pid)+"-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(d, "manager1"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		return d
	}
	stale := mk("deadrun", deadPID(t))
	live := mk("liverun", os.Getpid())
	mine := mk("minerun", os.Getpid())
	exists := func(d string) bool { _, err := os.Stat(d); return err == nil }
	isStale := func(labels map[string]string) bool {
		pid, err := strconv.Atoi(labels[LabelPID])
		return err != nil || !processAlive(pid)
	}

	// One run: only its own directory goes.
	if errs := sweepClusterDirs(LabelRun+"=minerun", func(map[string]string) bool { return true }); len(errs) > 0 {
		t.Fatal(errs)
	}
	if exists(mine) || !exists(live) || !exists(stale) {
		t.Errorf("sweep of one run: its directory exists %v (want false), others %v %v (want true)", exists(mine), exists(live), exists(stale))
	}
	// Stale runs: the dead process's directory goes, the live one's stays.
	if errs := sweepClusterDirs(LabelRun, isStale); len(errs) > 0 {
		t.Fatal(errs)
	}
	if exists(stale) || !exists(live) {
		t.Errorf("stale sweep: dead process's directory exists %v (want false), live one's %v (want true)", exists(stale), exists(live))
	}
}
