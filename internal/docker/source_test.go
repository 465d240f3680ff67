package docker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	cli := engineClient(t)
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

// engineClient is a client of the test engine, its API version agreed.
func engineClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := NewClient(Endpoint{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	if _, err := cli.Ping(context.Background(), client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		t.Fatal(err)
	}
	return cli
}

// Containers created one after the other, within a second, as "docker
// compose up --scale" does, list in the order they were created: a list's
// whole seconds would leave their random IDs to decide which one defines
// the host.
func TestListKeepsCreationOrder(t *testing.T) {
	e := testenv.Require(t)
	ctx := context.Background()
	first := e.Run(t, testenv.ContainerSpec{Labels: map[string]string{"interlock.hostname": "first"}})
	second := e.Run(t, testenv.ContainerSpec{Labels: map[string]string{"interlock.hostname": "second"}})
	cli := engineClient(t)
	st := newState()
	if err := st.listAll(ctx, cli); err != nil {
		t.Fatal(err)
	}
	a, b := st.containers[first.ID], st.containers[second.ID]
	if !a.Created.Before(b.Created) {
		t.Errorf("listed creation times %v and %v: the first container must come first", a.Created, b.Created)
	}
	// A second list reuses what it knows instead of inspecting again, and
	// keeps the exact times.
	if err := st.listAll(ctx, cli); err != nil {
		t.Fatal(err)
	}
	if got := st.containers[first.ID].Created; !got.Equal(a.Created) {
		t.Errorf("relisted creation time %v, want %v", got, a.Created)
	}
}

// TestSourceContainersOnly: a Source for the proxy containers' engine lists
// containers and nothing of the swarm, even when that engine is a manager
// (a fake one here, which fails the test if asked for swarm state).
func TestSourceContainersOnly(t *testing.T) {
	var (
		mu    sync.Mutex
		asked []string
	)
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(asked) }
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if v, rest, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/"); ok && strings.HasPrefix(v, "v") {
			path = "/" + rest // without the /v1.41 version prefix
		}
		mu.Lock()
		asked = append(asked, path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch path {
		case "/_ping":
			w.Header().Set("Api-Version", "1.41")
			_, _ = w.Write([]byte("OK"))
		case "/containers/json":
			_, _ = w.Write([]byte(`[{"Id":"abc","Names":["/nginx"],"Created":1767225600,"State":"running","Labels":{"interlock.ext.name":"nginx"}}]`))
		case "/containers/abc/json":
			_, _ = w.Write([]byte(`{"Id":"abc","Name":"/nginx","Created":"2026-01-01T00:00:00.25Z"}`))
		case "/info":
			_, _ = w.Write([]byte(`{"Swarm":{"LocalNodeState":"active","ControlAvailable":true}}`))
		default:
			http.Error(w, "not in this fake", http.StatusNotFound)
		}
	}))
	defer engine.Close()
	cli, err := NewClient(Endpoint{Host: "tcp://" + engine.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	snap, err := NewSource(cli, SourceOptions{ContainersOnly: true}).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Swarm || len(snap.Containers) != 1 || snap.Containers[0].ID != "abc" {
		t.Errorf("snapshot = %+v, want the one container and no swarm", snap)
	} else if want := time.Date(2026, 1, 1, 0, 0, 0, 250e6, time.UTC); !snap.Containers[0].Created.Equal(want) {
		t.Errorf("creation time %v, want the inspected %v", snap.Containers[0].Created, want)
	}
	for _, p := range seen() {
		if p != "/_ping" && !strings.HasPrefix(p, "/containers/") {
			t.Errorf("asked the engine for %s; want containers only", p)
		}
	}

	// Without it, the same engine is a manager and its swarm is listed.
	mu.Lock()
	asked = nil
	mu.Unlock()
	if _, err := NewSource(cli, SourceOptions{}).Snapshot(context.Background()); err == nil || !slices.Contains(seen(), "/info") {
		t.Errorf("without ContainersOnly: err %v after %v; want /info asked, then the fake's missing /nodes", err, seen())
	}
}
