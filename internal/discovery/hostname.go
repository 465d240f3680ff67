package discovery

import (
	"errors"
	"fmt"
	"strings"
)

// maxHostNameLen is the RFC 1123 limit for a name written without its
// trailing dot.
const maxHostNameLen = 253

// maxHostLabelLen is the limit for one dot-separated label (RFC 1035 2.3.4).
const maxHostLabelLen = 63

// parseHostName checks an RFC 1123 host name and returns it lowercased.
//
// Accepted: one or more labels of 1-63 ASCII letters, digits and '-', not
// starting or ending with '-', joined by single dots, 253 bytes at most, no
// trailing dot. A single label ("localhost") is accepted. Wildcards ("*.")
// and internationalized names in Unicode form are not; a Unicode look-alike
// such as a Cyrillic 'е' fails instead of being folded to ASCII, because the
// check runs on the bytes before lowercasing (strings.ToLower would turn the
// Kelvin sign U+212A into a plain 'k').
func parseHostName(v string) (string, error) {
	if v == "" {
		return "", errors.New("host name is empty, set a name such as app.example.com")
	}
	if strings.HasPrefix(v, "*.") {
		return "", fmt.Errorf("host name %s is a wildcard, wildcards are not supported: name each host", quote(v))
	}
	if len(v) > maxHostNameLen {
		return "", fmt.Errorf("host name %s is %d bytes long, the limit is %d", quote(v), len(v), maxHostNameLen)
	}
	if strings.HasSuffix(v, ".") {
		return "", fmt.Errorf("host name %s ends with a dot, remove the trailing dot", quote(v))
	}
	for i := 0; i < len(v); i++ {
		if !isHostByte(v[i]) {
			return "", fmt.Errorf("host name %s contains %s, only ASCII letters, digits, '-' and '.' are allowed (use the xn-- form for international names)", quote(v), quote(charAt(v, i)))
		}
	}
	v = asciiLower(v)
	for label := range strings.SplitSeq(v, ".") {
		switch {
		case label == "":
			return "", fmt.Errorf("host name %s has an empty label, separate labels with single dots", quote(v))
		case len(label) > maxHostLabelLen:
			return "", fmt.Errorf("host name %s has a label of %d bytes, the limit is %d", quote(v), len(label), maxHostLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", fmt.Errorf("host name %s has label %s that starts or ends with '-', labels must start and end with a letter or digit", quote(v), quote(label))
		}
	}
	return v, nil
}

func isHostByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.'
}

// asciiLower lowercases ASCII letters only; see parseHostName for why not
// strings.ToLower.
func asciiLower(v string) string {
	b := []byte(v)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// charAt returns the whole (possibly multi-byte) character starting at byte
// i, for error messages.
func charAt(v string, i int) string {
	for _, r := range v[i:] {
		return string(r)
	}
	return ""
}
