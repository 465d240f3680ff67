package testenv

import (
	"context"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Network creates a user-defined bridge network carrying the run labels and
// returns its name (usable as ContainerSpec.Network and as the value of
// interlock.network). A t.Cleanup removes it; cleanups run last-in first-out,
// so containers the test ran on it afterwards are gone by then.
func (e *Env) Network(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := e.name("", "net")
	res, err := e.Client.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: e.Labels()})
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// A container removed a moment ago may still hold an endpoint.
		WaitFor(t, 20*time.Second, "removal of network "+name, func() error {
			_, err := e.Client.NetworkRemove(ctx, res.ID, client.NetworkRemoveOptions{})
			if err != nil && !cerrdefs.IsNotFound(err) {
				return err
			}
			return nil
		})
	})
	return name
}
