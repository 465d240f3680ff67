package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestFastEngineWithRealContainers: `interlock run --builtin-engine
// fasthttp` routes real containers like the default engine: a host with
// replicas balanced over both, a path route with its prefix stripped, a
// WebSocket upgrade (which the fast path hands to net/http), a stopped
// replica leaving without a failed request for the others.
func TestFastEngineWithRealContainers(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t, "--builtin-engine", "fasthttp")
	host, app := hostFor(t, "fast"), hostFor(t, "fastapp")
	r1 := e.Run(t, testenv.ContainerSpec{Name: "f1", PublishPort: 8000, Env: map[string]string{"NAME": "f1"}, Labels: labelsFor(host)})
	e.Run(t, testenv.ContainerSpec{Name: "f2", PublishPort: 8000, Env: map[string]string{"NAME": "f2"}, Labels: labelsFor(host)})
	e.Run(t, testenv.ContainerSpec{Name: "fa", PublishPort: 8000, Env: map[string]string{"NAME": "fa"},
		Labels: labelsFor(app, "interlock.context_root", "/app", "interlock.context_root_rewrite", "true")})
	waitThrough(t, in.proxy, host, "f1", "f2")
	if r := in.waitStatus(t, app, "/app/users", http.StatusOK); r.backend != "fa" || !strings.Contains(r.body, `"path":"/users"`) {
		t.Errorf("/app/users: %q %s; want fa seeing /users", r.backend, r.body)
	}
	if r, err := in.get(host, "/"); err != nil || r.code != http.StatusOK {
		t.Fatalf("GET: %v %+v", err, r)
	}
	// The WebSocket echo of the backend, through the fast listener.
	checkWebSocketEcho(t, strings.TrimPrefix(in.proxy, "http://"), host)

	l := startLoad(2, func() (response, error) { return in.get(host, "/") })
	if err := e.Stop(context.Background(), r1.ID); err != nil {
		t.Fatal(err)
	}
	waitThrough(t, in.proxy, host, "f2")
	total, failed, first := l.Stop()
	if failed != 0 || total < 10 {
		t.Errorf("%d of %d requests failed while a replica stopped (want none of at least 10); first: %v", failed, total, first)
	}
}
