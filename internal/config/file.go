package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
)

// applyFile decodes the TOML document data, read from path, and sets every
// setting it names in c, recording the origin in o. Relative TLS paths are
// made relative to path's directory, so a file means the same thing from
// any working directory.
//
// ok is false when the document could not be decoded at all (a syntax
// error, a duplicate key): nothing was applied and err says where, as
// path:line:column. Otherwise err, if any, joins one error per unknown key
// and per value of the wrong type; the other values were applied.
//
// The document is decoded into a map rather than a struct because
// BurntSushi/toml matches struct fields case-insensitively, which would
// quietly accept "Proxy" or "PROXY"; keys here are exact.
func applyFile(c *Config, o origins, path string, data []byte) (ok bool, err error) {
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return false, fileSyntaxError(path, err)
	}
	var errs []error
	// md.Keys is in document order, so errors are too.
	for _, k := range md.Keys() {
		if len(k) != 1 {
			continue // inside a table, reported with the table's key
		}
		key := k[0]
		s, known := settingByKey(key)
		if !known {
			errs = append(errs, unknownKeyError(path, key, raw[key]))
			continue
		}
		if err := s.setTOML(c, raw[key], filepath.Dir(path)); err != nil {
			errs = append(errs, fmt.Errorf("%s in %s: %w", key, path, err))
			continue
		}
		o[key] = source{kind: srcFile, file: path}
	}
	return true, errors.Join(errs...)
}

// fileSyntaxError names the file, line and column of a TOML decoding error.
func fileSyntaxError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d:%d: invalid TOML: %s", path, pe.Position.Line, pe.Position.Col, pe.Message)
	}
	return fmt.Errorf("%s: invalid TOML: %w", path, err)
}

// unknownKeyError reports a key that is no setting, with the nearest
// setting's key when one is close enough to be a typo.
func unknownKeyError(path, key string, v any) error {
	if key == flagConfig {
		return fmt.Errorf("%s: unknown key %q: a file cannot name another; use --config or %s", path, key, envConfig)
	}
	what := "key"
	if _, ok := v.(map[string]any); ok {
		what = "table" // [name] or name.sub = ...: the file is flat
	}
	known := make([]string, len(settings))
	for i, s := range settings {
		known[i] = s.key()
	}
	if m, ok := suggest(key, known); ok {
		return fmt.Errorf("%s: unknown %s %q; did you mean %q?", path, what, key, m)
	}
	return fmt.Errorf("%s: unknown %s %q; the file is flat, and its keys are the flags of interlock run -h with '_' for '-'", path, what, key)
}

// setTOML sets the setting in c from a decoded TOML value; dir is the
// file's directory, for relative paths.
func (s setting) setTOML(c *Config, v any, dir string) error {
	switch p := s.field(c).(type) {
	case *string:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a string, got %s", describeTOML(v))
		}
		if s.isPath() && str != "" && str != AccessLogStdout && !filepath.IsAbs(str) {
			str = filepath.Join(dir, str)
		}
		*p = str
	case *bool:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("want true or false (unquoted), got %s", describeTOML(v))
		}
		*p = b
	case *time.Duration:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a duration string such as \"30s\", got %s", describeTOML(v))
		}
		d, err := parseDuration(str)
		if err != nil {
			return err
		}
		*p = d
	case *ByteSize:
		switch v := v.(type) {
		case int64:
			if v < 0 {
				return fmt.Errorf("%d is negative; want a size such as 65536 or \"64KiB\"", v)
			}
			*p = ByteSize(v)
		case string:
			b, err := ParseByteSize(v)
			if err != nil {
				return err
			}
			*p = b
		default:
			return fmt.Errorf("want a size: an integer (bytes) or a string such as \"64KiB\", got %s", describeTOML(v))
		}
	}
	return nil
}

// isPath reports whether the setting names a file.
func (s setting) isPath() bool {
	switch s.flag {
	case "tls-ca", "tls-cert", "tls-key", "cert-dir", "template", "state-dir", "nginx-config", "nginx-pid-file", "access-log",
		"acme-ca-root", "acme-storage", "feed-ca", "feed-cert", "feed-key":
		return true
	}
	return false
}

// describeTOML names the TOML type of a decoded value, with the value when
// it is short, for "want X, got Y" errors.
func describeTOML(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}
