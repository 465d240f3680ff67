package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// InterlockRepo is the repository of the Interlock image the tests build
// from ./cmd/interlock, for tests that must run Interlock inside Docker
// (on an overlay network, say).
const InterlockRepo = "interlock-test-interlock"

// InterlockPath is the binary's path inside that image.
const InterlockPath = "/interlock"

// StateReadme is the one file of the image's state directory, which the
// Dockerfile copies from the build context's state/ (make image writes
// the same).
const StateReadme = "Interlock's state directory (--state-dir): the last good table, proxy configurations, ACME files.\n"

// InterlockImage returns the tag of the product image, built with the
// repository's Dockerfile from a static build of this checkout's
// cmd/interlock and the host's CA certificates, when the sources changed.
// Like the backend image, it is labelled and not swept.
func (e *Env) InterlockImage(ctx context.Context) (string, error) {
	e.imageMu.Lock()
	defer e.imageMu.Unlock()
	if e.interlockImage != "" {
		return e.interlockImage, nil
	}
	dir, err := packageDir(ctx)
	if err != nil {
		return "", err
	}
	root := filepath.Join(dir, "..", "..")
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return "", fmt.Errorf("interlock image: %w", err)
	}
	cas, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		return "", fmt.Errorf("interlock image: the host's CA bundle (Debian package ca-certificates): %w", err)
	}
	tag, err := e.buildGoImage(ctx, goImage{
		repo: InterlockRepo, kind: "interlock", bin: "interlock",
		source:           func(context.Context) (string, error) { return filepath.Join(root, "cmd", "interlock"), nil },
		customDockerfile: string(dockerfile),
		extra:            map[string][]byte{"ca-certificates.crt": cas, "state/README": []byte(StateReadme)},
	})
	if err != nil {
		return "", err
	}
	e.interlockImage = tag
	return tag, nil
}
