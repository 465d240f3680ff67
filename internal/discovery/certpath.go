package discovery

import (
	"errors"
	"fmt"
	"strings"
)

// maxCertPathLen bounds a certificate path.
const maxCertPathLen = 255

// parseCertPath checks a certificate or key file path, which is relative to
// the configured certificate directory and must stay inside it.
//
// Accepted: segments of ASCII letters, digits, '.', '_' and '-', joined by
// single '/', 255 bytes at most. Refused: a leading '/', empty segments,
// "." and ".." segments, and segments starting with '-' (so a path can never
// be mistaken for a command-line option).
func parseCertPath(v string) (string, error) {
	if v == "" {
		return "", errors.New("certificate path is empty, set a file name relative to the certificate directory")
	}
	if len(v) > maxCertPathLen {
		return "", fmt.Errorf("certificate path %s is %d bytes long, the limit is %d", quote(v), len(v), maxCertPathLen)
	}
	if v[0] == '/' {
		return "", fmt.Errorf("certificate path %s is absolute, use a path relative to the certificate directory", quote(v))
	}
	for i := 0; i < len(v); i++ {
		if !isCertPathByte(v[i]) {
			return "", fmt.Errorf("certificate path %s contains %s, only ASCII letters, digits, . _ - and / are allowed", quote(v), quote(charAt(v, i)))
		}
	}
	for seg := range strings.SplitSeq(v, "/") {
		switch {
		case seg == "":
			return "", fmt.Errorf("certificate path %s has an empty segment, separate directories with single slashes and drop any trailing slash", quote(v))
		case seg == "." || seg == "..":
			return "", fmt.Errorf("certificate path %s has a %s segment, the path must stay inside the certificate directory", quote(v), quote(seg))
		case seg[0] == '-':
			return "", fmt.Errorf("certificate path %s has segment %s starting with '-', rename it", quote(v), quote(seg))
		}
	}
	return v, nil
}

func isCertPathByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/'
}
