package discovery

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// parsePath checks a URL path label value (context root, WebSocket endpoint,
// health check) and returns it in canonical form.
//
// The grammar is deliberately narrower than RFC 3986: the path must start
// with "/" and may hold only ASCII letters, digits, '.', '_', '~', '-', '/'
// and percent escapes "%XX" (two hex digits, returned uppercase). That keeps
// every character that means something in a proxy config (; { } # ' " `
// whitespace ? \ and so on) out, whatever the driver. Escapes of control
// characters, of '/', '\' and of unreserved characters are refused too: the
// first two smuggle structure past the segment checks (%2e%2e is ".."
// once decoded), the last have a plain spelling that must be used instead.
//
// The path must be clean (path.Clean leaves it unchanged: no "//", "." or
// ".." segments); one trailing slash is allowed and removed, so "/app/" and
// "/app" are the same route. "/" stays "/".
func parsePath(v string) (string, error) {
	if v == "" {
		return "", errors.New("path is empty, set an absolute path such as /app")
	}
	if v[0] != '/' {
		return "", fmt.Errorf("path %s does not start with '/', use an absolute path such as /app", quote(v))
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case isPathByte(c):
			b.WriteByte(c)
		case c == '%':
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return "", fmt.Errorf("path %s has a '%%' that is not followed by two hex digits, write a literal %% as %%25", quote(v))
			}
			dec := unhex(v[i+1])<<4 | unhex(v[i+2])
			if dec < 0x20 || dec == 0x7f || dec == '/' || dec == '\\' {
				return "", fmt.Errorf("path %s encodes a control character, '/' or '\\' as %s, which is not allowed", quote(v), quote(v[i:i+3]))
			}
			if isPathByte(dec) {
				return "", fmt.Errorf("path %s escapes the plain character %q as %s, write it unescaped", quote(v), dec, quote(v[i:i+3]))
			}
			b.WriteString(strings.ToUpper(v[i : i+3]))
			i += 2
		default:
			return "", fmt.Errorf("path %s contains %s, only ASCII letters, digits, . _ ~ - / and %%XX escapes are allowed", quote(v), quote(charAt(v, i)))
		}
	}
	p := b.String()
	if len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
		p = p[:len(p)-1]
	}
	if path.Clean(p) != p {
		return "", fmt.Errorf("path %s is not clean (no \"//\", \".\" or \"..\" segments), use %s", quote(v), quote(path.Clean(p)))
	}
	return p, nil
}

// parsePathList parses a comma-separated list of paths. Spaces around each
// item are ignored; empty items are not.
func parsePathList(v string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		item = strings.Trim(item, " ")
		if item == "" {
			return nil, fmt.Errorf("path list %s has an empty item, separate paths with single commas", quote(v))
		}
		p, err := parsePath(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func isPathByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '~' || c == '-' || c == '/'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
