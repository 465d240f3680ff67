package docker

import (
	"context"
	"os"
	"reflect"
	"testing"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/client"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// A container seen through a list (connect, resync) and through an inspect
// (after an event) must project to the same value, or every resync would
// look like a change.
func TestListAndInspectProjectAlike(t *testing.T) {
	e := testenv.Require(t)
	ctx := context.Background()
	net := e.Network(t)
	c := e.Run(t, testenv.ContainerSpec{
		Labels:      map[string]string{"interlock.hostname": "alike"},
		PublishPort: 8000, ExposePorts: []uint16{9000}, Network: net,
	})
	cli, err := NewClient(Endpoint{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatal(err)
	}
	st := newState()
	if err := st.listAll(ctx, cli); err != nil {
		t.Fatal(err)
	}
	listed, ok := st.containers[c.ID]
	if !ok {
		t.Fatalf("container %s not listed", c.ID)
	}
	if err := st.refresh(ctx, cli, c.ID); err != nil {
		t.Fatal(err)
	}
	inspected := st.containers[c.ID]
	if !reflect.DeepEqual(listed, inspected) {
		t.Errorf("list and inspect differ:\nlist:    %+v\ninspect: %+v", listed, inspected)
	}
	if len(listed.Ports) != 2 || listed.Ports[0].Public == 0 || listed.Ports[1].Public != 0 || listed.Networks[net] == "" || listed.State != "running" {
		t.Errorf("projection %+v: want 8000 published, 9000 exposed, and an IP on %s", listed, net)
	}

	// A paused container must read as paused right after the event.
	if err := e.Pause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.refresh(ctx, cli, c.ID); err != nil {
		t.Fatal(err)
	}
	if got := st.containers[c.ID].State; got != "paused" {
		t.Errorf("state right after pause = %q, want paused", got)
	}
	if err := e.Unpause(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.Remove(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.refresh(ctx, cli, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.containers[c.ID]; ok {
		t.Error("a removed container is still in the state after refresh")
	}
}
