#!/usr/bin/env bash
# fuzz.sh DURATION — run every Go fuzz target of the module for DURATION
# each (go test -fuzz takes one target at a time), and print one line per
# target with what it found. New failing inputs land in each package's
# testdata/fuzz/, where the normal test run replays them.
set -euo pipefail
duration=${1:-20s}
status=0
while read -r dir; do
	pkg="./${dir#./}"
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		start=$(date +%s)
		if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" "$pkg" 2>&1); then
			execs=$(printf '%s\n' "$out" | grep -o 'execs: [0-9]*' | tail -1 | cut -d' ' -f2)
			echo "ok    $pkg $target ($(( $(date +%s) - start ))s, ${execs:-?} execs)"
		else
			echo "FAIL  $pkg $target"
			printf '%s\n' "$out" | tail -20
			status=1
		fi
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
exit $status
