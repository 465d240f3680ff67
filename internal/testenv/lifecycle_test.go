package testenv

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

func TestPauseUnpauseKill(t *testing.T) {
	env := Require(t)
	t.Parallel()
	ctx := t.Context()
	c := env.Run(t, ContainerSpec{PublishPort: 8000})

	if err := env.Pause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	short := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := short.Get(c.URL("/fast")); err == nil {
		resp.Body.Close()
		t.Fatalf("paused container answered: %s", resp.Status)
	}
	if err := env.Unpause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	waitServing(t, c)

	if err := env.Kill(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "killed container to exit", func() error {
		ci, err := env.Client.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		if st := ci.Container.State; st.Running || st.ExitCode != 137 {
			return fmt.Errorf("state %s, exit code %d", st.Status, st.ExitCode)
		}
		return nil
	})

	if err := env.Remove(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.Remove(ctx, c.ID); err != nil {
		t.Errorf("second Remove = %v, want nil for a container already gone", err)
	}
}
