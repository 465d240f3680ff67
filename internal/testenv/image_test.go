package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

func TestBackendImage(t *testing.T) {
	env := Require(t)
	ctx := t.Context()
	tag, err := env.BackendImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tag, BackendRepo+":") {
		t.Errorf("tag = %q, want prefix %q", tag, BackendRepo+":")
	}
	img, err := env.Client.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatalf("inspect %s: %v", tag, err)
	}
	if got := img.Config.Labels[LabelTest]; got != "1" {
		t.Errorf("label %s = %q, want 1", LabelTest, got)
	}
	if got := img.Config.Entrypoint; len(got) != 1 || got[0] != backendPath {
		t.Errorf("entrypoint = %q, want [%s]", got, backendPath)
	}

	// A fresh Env finds the existing tag instead of building again.
	e2, err := New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	tag2, err := e2.BackendImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tag2 != tag {
		t.Errorf("second Env built %q, want the same tag %q", tag2, tag)
	}
	img2, err := env.Client.ImageInspect(ctx, tag2)
	if err != nil {
		t.Fatal(err)
	}
	if img2.ID != img.ID {
		t.Errorf("image rebuilt: id %s, want %s", img2.ID, img.ID)
	}
}

func TestRemoveStaleImages(t *testing.T) {
	env := Require(t)
	ctx := t.Context()
	current, err := env.BackendImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stale := BackendRepo + ":stale" + env.RunID
	if _, err := env.Client.ImageTag(ctx, client.ImageTagOptions{Source: current, Target: stale}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = env.Client.ImageRemove(ctx, stale, client.ImageRemoveOptions{})
	})
	if err := env.RemoveStaleImages(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.ImageInspect(ctx, stale); !cerrdefs.IsNotFound(err) {
		t.Errorf("stale tag %s: inspect error = %v, want not found", stale, err)
	}
	if _, err := env.Client.ImageInspect(ctx, current); err != nil {
		t.Errorf("current tag %s removed: %v", current, err)
	}
}
