package builtin

import "strings"

// hostname turns a Host header (or a table host name) into the key the
// compiled table is indexed by: lowercase, without a port, without a trailing
// dot. IPv6 literals lose their brackets. It allocates only when the input
// has upper-case letters, which real clients almost never send.
func hostname(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// matchPrefix reports whether path falls under the route prefix: equal to it,
// or continuing it after a "/". So "/app" matches "/app", "/app/" and
// "/app/x" but not "/apps"; "/" matches everything. prefix is a clean route
// path as routing.Route documents (no trailing slash except "/").
func matchPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// stripPrefix removes a matched route prefix from path and keeps the result
// absolute: "/app/x" -> "/x", "/app" -> "/", "/app/" -> "/". The caller has
// checked matchPrefix(path, prefix).
func stripPrefix(path, prefix string) string {
	if prefix == "/" {
		return path
	}
	rest := path[len(prefix):]
	if rest == "" {
		return "/"
	}
	return rest
}
