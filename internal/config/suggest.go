package config

import "strings"

// maxSuggestDistance is the largest edit distance at which an unknown name
// is taken for a typo of a known one.
const maxSuggestDistance = 2

// suggest returns the known name nearest to name, if it is within
// maxSuggestDistance and no other known name is as near. Case and the
// choice of '-' or '_' do not count as edits, so "PROXY" suggests "proxy"
// and "docker-host" suggests "docker_host".
func suggest(name string, known []string) (string, bool) {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	n := norm(name)
	best, bestDist, tie := "", maxSuggestDistance+1, false
	for _, k := range known {
		d := editDistance(n, norm(k))
		switch {
		case d < bestDist:
			best, bestDist, tie = k, d, false
		case d == bestDist:
			tie = true
		}
	}
	if best == "" || tie {
		return "", false
	}
	return best, true
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes each cost 1 (Damerau-Levenshtein without repeated edits of one
// substring; https://en.wikipedia.org/wiki/Damerau%E2%80%93Levenshtein_distance).
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; three rows suffice.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
