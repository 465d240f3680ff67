package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// clusterDirPrefix starts the name of a cluster's host directory (node
// sockets, certificates) in os.TempDir(): the prefix, then
// "<RunID>-<pid>-" and a random suffix, so that a sweep can tell whose it
// is as it does for labelled objects.
const clusterDirPrefix = "interlock-cluster-"

// sweepClusterDirs removes the cluster directories for whose run and pid
// remove returns true (given as the labels the objects of that run carry).
// label is the sweep's filter: LabelRun (every run) or LabelRun=ID (one).
// Call it after the node containers are gone: they mount these.
func sweepClusterDirs(label string, remove func(map[string]string) bool) []error {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterDirPrefix+"*"))
	var errs []error
	for _, d := range dirs {
		// interlock-cluster-<run>-<pid>-<random>
		parts := strings.SplitN(strings.TrimPrefix(filepath.Base(d), clusterDirPrefix), "-", 3)
		if len(parts) != 3 {
			continue
		}
		labels := map[string]string{LabelTest: "1", LabelRun: parts[0], LabelPID: parts[1]}
		if run, ok := strings.CutPrefix(label, LabelRun+"="); ok && run != parts[0] {
			continue
		}
		if !remove(labels) {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("sweep: remove cluster directory: %w", err))
		}
	}
	return errs
}
