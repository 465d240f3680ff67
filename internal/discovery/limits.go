package discovery

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/config"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The per-route overrides of Interlock's global backend timeouts and body
// limit (routing.Limits). Each label is named after the setting it
// overrides (--backend-connect-timeout: interlock.backend_connect_timeout),
// in both dialects. The client-side timeouts and the header size limit
// have no label: a proxy applies them on the listener, before a request
// has named its host, so no route can change them.

// limitLabelSet names the override labels of one dialect.
type limitLabelSet struct {
	connect, responseHeader, idle, maxBody string
}

var (
	limitLabels = limitLabelSet{
		connect:        LabelBackendConnectTimeout,
		responseHeader: LabelBackendResponseHeaderTimeout,
		idle:           LabelBackendIdleTimeout,
		maxBody:        LabelMaxBodyBytes,
	}
	lbLimitLabels = limitLabelSet{
		connect:        LabelLBBackendConnectTimeout,
		responseHeader: LabelLBBackendResponseHeaderTimeout,
		idle:           LabelLBBackendIdleTimeout,
		maxBody:        LabelLBMaxBodyBytes,
	}
)

// Bounds of the overrides. A connect that takes more than a minute is a
// backend that is not there (nginx cannot wait longer than about 75s
// anyway); a day is the longest any other wait needs to be.
const (
	minLimitTimeout   = time.Millisecond
	maxConnectTimeout = time.Minute
	maxLimitTimeout   = 24 * time.Hour
	// maxBodyLimit is the largest body limit a label may set, 1 TiB.
	maxBodyLimit = config.ByteSize(1 << 40)
)

// limits reads a route's overrides; nil when none is set (or all are bad,
// which has been recorded).
func (r *reader) limits(l limitLabelSet) *routing.Limits {
	var lim routing.Limits
	lim.ConnectTimeout, _ = read(r, l.connect, timeoutParser("backend connect timeout", maxConnectTimeout, false))
	lim.ResponseHeaderTimeout, _ = read(r, l.responseHeader, timeoutParser("backend response header timeout", maxLimitTimeout, true))
	lim.IdleTimeout, _ = read(r, l.idle, timeoutParser("backend idle timeout", maxLimitTimeout, false))
	lim.MaxBodyBytes, _ = read(r, l.maxBody, parseBodyLimit)
	if lim == (routing.Limits{}) {
		return nil
	}
	return &lim
}

// timeoutParser returns the parser of one timeout override: a Go duration
// ("30s", "1500ms") or a bare decimal number of milliseconds ("1500"), the
// grammar of interlock.health_check_interval, from 1ms to max. With
// zeroUnlimited, "0" (or "0s") means no limit on this route
// (routing.Unlimited), as 0 does for the global setting.
func timeoutParser(what string, max time.Duration, zeroUnlimited bool) func(string) (time.Duration, error) {
	return func(v string) (time.Duration, error) {
		zero := ""
		if zeroUnlimited {
			zero = ", or 0 for no limit"
		}
		d, err := parseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s %s is not a duration, use a Go duration such as 30s or 1500ms, or a number of milliseconds%s", what, quote(v), zero)
		}
		if d == 0 && zeroUnlimited {
			return routing.Unlimited, nil
		}
		if d < minLimitTimeout || d > max {
			return 0, fmt.Errorf("%s %s is out of range, use %s to %s%s, or remove the label for Interlock's global setting", what, quote(v), minLimitTimeout, max, zero)
		}
		return d, nil
	}
}

// parseBodyLimit reads a body size override: config.ByteSize's grammar (a
// whole number of bytes, or with a unit B, KiB, MiB or GiB), at most
// maxBodyLimit; "0" means no limit on this route (routing.Unlimited).
func parseBodyLimit(v string) (int64, error) {
	n, err := config.ParseByteSize(v)
	if err != nil {
		// Not config's message: that one quotes the whole value.
		return 0, fmt.Errorf("body size %s is not a size, use a whole number of bytes, or one with a unit B, KiB, MiB or GiB (such as 65536, 64KiB or 10MiB), or 0 for no limit", quote(v))
	}
	if n > maxBodyLimit {
		return 0, fmt.Errorf("body size %s is more than %s, use a smaller size, or 0 for no limit", quote(v), maxBodyLimit)
	}
	if n == 0 {
		return routing.Unlimited, nil
	}
	return int64(n), nil
}

// parseDuration is the duration grammar of the interval and timeout
// labels: a Go duration, or a bare decimal number of milliseconds (as
// Interlock 1 took intervals). Range checks are the caller's.
func parseDuration(v string) (time.Duration, error) {
	if v != "" && strings.TrimLeft(v, "0123456789") == "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms > math.MaxInt64/int64(time.Millisecond) {
			// Longer than any bound: the caller's range check says so.
			return math.MaxInt64, nil
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	return time.ParseDuration(v)
}

// limitSettings are the route's overrides as shared settings (spec.go), in
// the fixed order of routeSettings: "" for the global setting, "0" for no
// limit.
func limitSettings(l *routing.Limits) []setting {
	var lim routing.Limits
	if l != nil {
		lim = *l
	}
	dur := func(d time.Duration) string {
		switch d {
		case 0:
			return ""
		case routing.Unlimited:
			return "0"
		}
		return d.String()
	}
	size := ""
	switch lim.MaxBodyBytes {
	case 0:
	case routing.Unlimited:
		size = "0"
	default:
		size = config.ByteSize(lim.MaxBodyBytes).String()
	}
	return []setting{
		{label: LabelBackendConnectTimeout, value: dur(lim.ConnectTimeout)},
		{label: LabelBackendResponseHeaderTimeout, value: dur(lim.ResponseHeaderTimeout)},
		{label: LabelBackendIdleTimeout, value: dur(lim.IdleTimeout)},
		{label: LabelMaxBodyBytes, value: size},
	}
}
