package discovery

import (
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// maxValueLen bounds every label value before any grammar looks at it.
const maxValueLen = 1024

// quoteLen is how much of a bad value an error message shows.
const quoteLen = 64

// checkValue rejects what no label may hold, whatever its grammar: invalid
// UTF-8, control characters (NUL, newlines, tabs, DEL, C1 controls) and values
// longer than maxValueLen. Doing it once here means no grammar below has to
// think about line breaks or NUL smuggled into a config file.
func checkValue(v string) error {
	if len(v) > maxValueLen {
		return fmt.Errorf("value is %d bytes long, the limit is %d", len(v), maxValueLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("value %s is not valid UTF-8, use UTF-8 text", quote(v))
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("value %s contains the control character %U, remove it (no newlines, tabs or NUL)", quote(v), r)
		}
	}
	return nil
}

// quote renders a user-supplied value for an error message: Go-quoted, so
// control and invisible characters show as escapes, and cut to about quoteLen
// bytes, so a huge value cannot flood a log line.
func quote(v string) string {
	if len(v) <= quoteLen {
		return strconv.Quote(v)
	}
	n := quoteLen
	// Back off to a rune start so the cut does not invent a bad byte.
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return strconv.Quote(v[:n]) + fmt.Sprintf("... (%d bytes)", len(v))
}
