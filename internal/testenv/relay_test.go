package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// dockerSocket returns the unix socket the Env talks to, or skips.
func dockerSocket(t *testing.T, env *Env) string {
	t.Helper()
	host := env.Client.DaemonHost()
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		t.Skipf("engine at %s is not a unix socket; the relay needs one", host)
	}
	return path
}

func ping(ctx context.Context, c *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return err
}

func TestRelayCutAndRestore(t *testing.T) {
	env := Require(t)
	t.Parallel()
	r, err := NewRelay(dockerSocket(t, env))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	addr := r.Addr()
	if !strings.HasPrefix(addr, "tcp://127.0.0.1:") {
		t.Fatalf("Addr = %q, want tcp://127.0.0.1:PORT", addr)
	}
	c, err := client.New(client.WithHost(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := ping(t.Context(), c); err != nil {
		t.Fatalf("ping through relay: %v", err)
	}

	// An event stream through the relay, proven live by an event.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events := c.Events(ctx, client.EventsListOptions{
		Filters: make(client.Filters).Add("type", "network").Add("event", "create"),
	})
	var name string
	WaitFor(t, 10*time.Second, "a network event through the relay", func() error {
		if name == "" {
			name = env.Network(t)
		}
		select {
		case m := <-events.Messages:
			if m.Actor.Attributes["name"] == name {
				return nil
			}
			return errors.New("event for another network")
		case err := <-events.Err:
			t.Fatalf("event stream failed before the cut: %v", err)
		case <-time.After(time.Second):
		}
		return errors.New("no event yet")
	})

	r.Cut()
	select {
	case err := <-events.Err:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("event stream error after cut = %v, want a broken connection", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("event stream still open 10s after the cut")
	}
	if err := ping(t.Context(), c); err == nil {
		t.Fatal("ping succeeded through a cut relay")
	}

	if err := r.Restore(); err != nil {
		t.Fatal(err)
	}
	if r.Addr() != addr {
		t.Errorf("Addr after restore = %q, want %q", r.Addr(), addr)
	}
	WaitFor(t, 5*time.Second, "ping through the restored relay", func() error { return ping(t.Context(), c) })

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(); err == nil {
		t.Error("Restore after Close succeeded")
	}
}
