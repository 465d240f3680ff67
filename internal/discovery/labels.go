package discovery

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The Interlock 1 container labels. See README.md for each one's grammar.
const (
	LabelHostname            = "interlock.hostname"
	LabelDomain              = "interlock.domain"
	LabelAliasDomain         = "interlock.alias_domain"
	LabelPort                = "interlock.port"
	LabelNetwork             = "interlock.network"
	LabelContextRoot         = "interlock.context_root"
	LabelContextRootRewrite  = "interlock.context_root_rewrite"
	LabelWebSocketEndpoint   = "interlock.websocket_endpoint"
	LabelSSL                 = "interlock.ssl"
	LabelSSLOnly             = "interlock.ssl_only"
	LabelSSLACME             = "interlock.ssl_acme"
	LabelSSLCert             = "interlock.ssl_cert"
	LabelSSLCertKey          = "interlock.ssl_cert_key"
	LabelSSLBackend          = "interlock.ssl_backend"
	LabelSSLBackendTLSVerify = "interlock.ssl_backend_tls_verify"
	LabelHealthCheck         = "interlock.health_check"
	LabelHealthCheckInterval = "interlock.health_check_interval"
	LabelBalanceAlgorithm    = "interlock.balance_algorithm"
	LabelIPHash              = "interlock.ip_hash"
	LabelBackendOption       = "interlock.backend_option"
	LabelProtocol            = "interlock.protocol"
	// The per-route overrides of Interlock's global backend timeouts and
	// body limit (limits.go); each is named after the setting it overrides.
	LabelBackendConnectTimeout        = "interlock.backend_connect_timeout"
	LabelBackendResponseHeaderTimeout = "interlock.backend_response_header_timeout"
	LabelBackendIdleTimeout           = "interlock.backend_idle_timeout"
	LabelMaxBodyBytes                 = "interlock.max_body_bytes"
	// LabelExtName marks the side-loaded proxy container; such a container
	// is never routed.
	LabelExtName = "interlock.ext.name"
)

const labelPrefix = "interlock."

// plainLabels are the labels that take one value under one exact name.
// Sorted; read-only.
var plainLabels = []string{
	LabelBackendConnectTimeout,
	LabelBackendIdleTimeout,
	LabelBackendResponseHeaderTimeout,
	LabelBalanceAlgorithm,
	LabelContextRoot,
	LabelContextRootRewrite,
	LabelDomain,
	LabelHealthCheck,
	LabelHealthCheckInterval,
	LabelHostname,
	LabelIPHash,
	LabelMaxBodyBytes,
	LabelNetwork,
	LabelPort,
	LabelProtocol,
	LabelSSL,
	LabelSSLACME,
	LabelSSLBackend,
	LabelSSLBackendTLSVerify,
	LabelSSLCert,
	LabelSSLCertKey,
	LabelSSLOnly,
	LabelWebSocketEndpoint,
}

// indexedLabels may also be repeated as "<label>.N", N a decimal number.
// Read-only.
var indexedLabels = []string{LabelAliasDomain, LabelBackendOption}

// labelKind says what discovery does with a label key.
type labelKind int

const (
	labelForeign labelKind = iota // not an interlock.* label: not ours to judge
	labelIgnored                  // ours, deliberately not read here
	labelPlain                    // one of plainLabels
	labelIndexed                  // one of indexedLabels, bare or with .N
	labelUnknown                  // under interlock. but not in the dialect
)

// classify returns what key is; for labelIndexed, base is the label without
// its ".N" suffix.
func classify(key string) (kind labelKind, base string) {
	switch {
	case !strings.HasPrefix(key, labelPrefix):
		return labelForeign, ""
	case key == LabelExtName:
		return labelIgnored, ""
	}
	for _, l := range plainLabels {
		if key == l {
			return labelPlain, l
		}
	}
	for _, l := range indexedLabels {
		if key == l {
			return labelIndexed, l
		}
		if n, ok := strings.CutPrefix(key, l+"."); ok && isDecimal(n) {
			return labelIndexed, l
		}
	}
	return labelUnknown, ""
}

func isDecimal(s string) bool {
	return s != "" && strings.TrimLeft(s, "0123456789") == ""
}

// unknownLabelMessage explains an unknown interlock.* key, with a guess at
// the label that was meant when one is close.
func unknownLabelMessage(key string) string {
	known := make([]string, 0, len(plainLabels)+len(indexedLabels)+1)
	known = append(known, plainLabels...)
	for _, l := range indexedLabels {
		known = append(known, l, l+".N")
	}
	known = append(known, LabelExtName)
	slices.Sort(known)
	msg := "unknown label"
	if s := suggest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return msg + "; known labels are " + strings.Join(known, ", ")
}

// suggest returns the candidate closest to key by edit distance, ignoring
// case, when it is at most 2 edits away; "" otherwise.
func suggest(key string, candidates []string) string {
	const maxEdits = 2
	best, bestDist := "", maxEdits+1
	k := strings.ToLower(key)
	for _, c := range candidates {
		if d := editDistance(k, c, maxEdits+1); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b in bytes, capped
// at limit (anything farther returns limit) so that a long hostile key costs
// little.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// UnknownLabels explains each interlock.* label of labels that Interlock
// does not know, as routing would (a guess at the label meant, and the
// known ones), sorted by label: for a container that does not take part
// because a typo hid its interlock.hostname, which Build cannot report.
func UnknownLabels(labels map[string]string) []string {
	var out []string
	for _, key := range slices.Sorted(maps.Keys(labels)) {
		if kind, _ := classify(key); kind == labelUnknown {
			out = append(out, safeLabel(key)+": "+unknownLabelMessage(key))
		}
	}
	return out
}
