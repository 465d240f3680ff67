package discovery

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// parseBool accepts exactly "true" or "false". Interlock 1 treated any value,
// "false" included, as true; being strict turns that trap into an error.
func parseBool(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("value %s is not a boolean, use exactly true or false (unlike Interlock 1, any other value is an error, not true)", quote(v))
}

// parsePort accepts a decimal port 1-65535 without sign or leading zeros.
func parsePort(v string) (uint16, error) {
	if v == "" || len(v) > 5 || strings.TrimLeft(v, "0123456789") != "" || v[0] == '0' {
		return 0, fmt.Errorf("port %s is not a decimal number 1-65535, set the container port to route to", quote(v))
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is not a decimal number 1-65535, set the container port to route to", quote(v))
	}
	return uint16(n), nil
}

// Health check interval bounds and default.
const (
	minInterval     = 100 * time.Millisecond
	maxInterval     = time.Hour
	defaultInterval = 5 * time.Second
)

// parseInterval accepts a Go duration ("5s", "500ms", "1m30s") or, as
// Interlock 1 did, a bare decimal integer meaning milliseconds ("5000"). The
// result lies in [minInterval, maxInterval].
func parseInterval(v string) (time.Duration, error) {
	d, err := parseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("interval %s is not a duration, use a Go duration such as 5s or 500ms, or a number of milliseconds", quote(v))
	}
	if d < minInterval || d > maxInterval {
		return 0, fmt.Errorf("interval %s is out of range, use %s to %s", quote(v), minInterval, maxInterval)
	}
	return d, nil
}

// parseBalance accepts one of routing.Balances, spelled exactly.
func parseBalance(v string) (routing.Balance, error) {
	if slices.Contains(routing.Balances, routing.Balance(v)) {
		return routing.Balance(v), nil
	}
	names := make([]string, len(routing.Balances))
	for i, b := range routing.Balances {
		names[i] = string(b)
	}
	return "", fmt.Errorf("balance algorithm %s is unknown, use one of %s", quote(v), strings.Join(names, ", "))
}

// parseProtocol accepts "http" or "tcp".
func parseProtocol(v string) (routing.Protocol, error) {
	switch routing.Protocol(v) {
	case routing.HTTP, routing.TCP:
		return routing.Protocol(v), nil
	}
	return "", fmt.Errorf("protocol %s is unknown, use http or tcp", quote(v))
}

// parseVerify reads interlock.ssl_backend_tls_verify: true/false, or the
// original's required/none.
func parseVerify(v string) (bool, error) {
	switch v {
	case "true", "required":
		return true, nil
	case "false", "none":
		return false, nil
	}
	return false, fmt.Errorf("value %s is not a verify mode, use true or false (required and none are accepted too)", quote(v))
}

// backendOptions are the HAProxy "option" names a container may ask for:
// options that take no argument and cannot break routing for other hosts.
// Sorted; read-only.
var backendOptions = []string{
	"abortonclose",
	"allbackups",
	"forwardfor",
	"http-buffer-request",
	"http-keep-alive",
	"http-pretend-keepalive",
	"http-server-close",
	"httpclose",
	"log-health-checks",
	"redispatch",
}

// parseBackendOption accepts one name from backendOptions.
func parseBackendOption(v string) (string, error) {
	if slices.Contains(backendOptions, v) {
		return v, nil
	}
	return "", fmt.Errorf("backend option %s is not allowed, use one of %s (one option per label)", quote(v), strings.Join(backendOptions, ", "))
}

// maxNetworkNameLen bounds a Docker network name.
const maxNetworkNameLen = 128

// parseNetworkName checks a Docker network name:
// [A-Za-z0-9][A-Za-z0-9_.-]*, 128 bytes at most.
func parseNetworkName(v string) (string, error) {
	if v == "" || len(v) > maxNetworkNameLen {
		return "", fmt.Errorf("network name %s must be 1-%d characters long", quote(v), maxNetworkNameLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return "", fmt.Errorf("network name %s is invalid, use a letter or digit followed by letters, digits, _ . or -", quote(v))
		}
	}
	return v, nil
}
