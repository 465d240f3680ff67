package testenv

import (
	"context"
	"path/filepath"
)

// InterlockRepo is the repository of the Interlock image the tests build
// from ./cmd/interlock, for tests that must run Interlock inside Docker
// (on an overlay network, say).
const InterlockRepo = "interlock-test-interlock"

// InterlockPath is the binary's path inside that image.
const InterlockPath = "/interlock"

// InterlockImage returns the tag of an image FROM scratch holding a static
// build of this checkout's cmd/interlock, building it when the sources
// changed. Like the backend image, it is labelled and not swept.
func (e *Env) InterlockImage(ctx context.Context) (string, error) {
	e.imageMu.Lock()
	defer e.imageMu.Unlock()
	if e.interlockImage != "" {
		return e.interlockImage, nil
	}
	tag, err := e.buildGoImage(ctx, goImage{repo: InterlockRepo, kind: "interlock", bin: "interlock", source: func(ctx context.Context) (string, error) {
		dir, err := packageDir(ctx)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, "..", "..", "cmd", "interlock"), nil
	}})
	if err != nil {
		return "", err
	}
	e.interlockImage = tag
	return tag, nil
}
