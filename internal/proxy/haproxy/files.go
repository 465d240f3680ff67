package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// ValidationError is a candidate haproxy -c rejected. Output is HAProxy's
// own message.
type ValidationError struct {
	File   string
	Output string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("haproxy -c rejected the new configuration (kept at %s); the previous one keeps serving: %s", e.File, e.Output)
}

// Validate runs bin -c -f file. A rejection is a *ValidationError carrying
// HAProxy's alerts.
func Validate(ctx context.Context, bin, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", "-f", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	// A killed check says nothing about the file: report why it was
	// killed, not a rejection.
	if ctx.Err() != nil {
		return fmt.Errorf("haproxy -c %s: not finished: %w", file, context.Cause(ctx))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("haproxy -c: run %s: %w", bin, err)
	}
	return &ValidationError{File: file, Output: cleanOutput(out.String())}
}

// logLine matches HAProxy's start-up messages: "[ALERT]    (123) : msg".
var logLine = regexp.MustCompile(`^\[(\w+)\]\s+\(\d+\)\s+:\s+(.*)$`)

// cleanOutput keeps HAProxy's alerts (and any unrecognised line), one line
// each, without the NOTICE banner and the generic trailer.
func cleanOutput(s string) string {
	var lines []string
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := logLine.FindStringSubmatch(line); m != nil {
			if m[1] == "NOTICE" || strings.Contains(m[2], "Fatal errors found in configuration") ||
				strings.Contains(m[2], "Error(s) found in configuration file") {
				continue
			}
			line = "[" + m[1] + "] " + m[2]
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return "haproxy -c failed without a message"
	}
	return strings.Join(lines, "; ")
}

// defaultCertName is the bundle (certificate and key in one PEM) that
// serves TLS hosts naming no certificate of their own. Interlock makes a
// self-signed one once and keeps it; clients that must trust the host need
// a real one named with interlock.ssl_cert.
const defaultCertName = "interlock-default.pem"

// ensureDefaultCert writes a self-signed bundle to path unless it exists.
func ensureDefaultCert(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	cert, key, err := tlsconf.SelfSigned("interlock-default.invalid")
	if err != nil {
		return fmt.Errorf("haproxy: default certificate: %w", err)
	}
	if err := atomicfile.Write(path, append(cert, key...), 0o600); err != nil {
		return fmt.Errorf("haproxy: default certificate: %w", err)
	}
	return nil
}

// writeBundles joins each named certificate and its key into the bundle
// HAProxy reads, rewriting a bundle only when its content changed.
func writeBundles(certs []Cert) error {
	for _, c := range certs {
		if c.Cert == "" {
			continue
		}
		cert, err := os.ReadFile(c.Cert)
		if err != nil {
			return fmt.Errorf("haproxy: certificate: %w", err)
		}
		key, err := os.ReadFile(c.Key)
		if err != nil {
			return fmt.Errorf("haproxy: certificate key: %w", err)
		}
		data := append(append(bytes.TrimRight(cert, "\n"), '\n'), key...)
		if old, err := os.ReadFile(c.Path); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return fmt.Errorf("haproxy: certificate bundle: %w", err)
		}
		if err := atomicfile.Write(c.Path, data, 0o600); err != nil {
			return fmt.Errorf("haproxy: certificate bundle %s: %w", c.Path, err)
		}
	}
	return nil
}

// unreadable reports whether path cannot be opened for reading.
func unreadable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	_ = f.Close()
	return false
}
