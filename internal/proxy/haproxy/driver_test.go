package haproxy

import (
	"strings"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

func TestRoutingThroughHAProxy(t *testing.T) {
	r := newRig(t, nil)
	root, api, v2, other := newBackend(t, "root"), newBackend(t, "api"), newBackend(t, "v2"), newBackend(t, "other")
	r.apply(t, table(
		routing.Host{Name: "web.test", Aliases: []string{"www.web.test"}, Routes: []routing.Route{
			{Path: "/", Backends: []routing.Backend{root.rb()}},
			{Path: "/api", StripPath: true, Backends: []routing.Backend{api.rb()}},
			{Path: "/api/v2", Backends: []routing.Backend{v2.rb()}},
		}},
		routing.Host{Name: "other.test", Routes: []routing.Route{{Path: "/app", Backends: []routing.Backend{other.rb()}}}},
	))
	cases := []struct {
		name, host, path string
		code             int
		body             string // prefix of the answer
	}{
		{name: "root", host: "web.test", path: "/x?q=1", code: 200, body: "root /x?q=1"},
		{name: "alias", host: "www.web.test", path: "/", code: 200, body: "root /"},
		{name: "host case port and dot", host: "WEB.test.:80", path: "/", code: 200, body: "root /"},
		{name: "strip exact", host: "web.test", path: "/api", code: 200, body: "api /"},
		{name: "strip prefix", host: "web.test", path: "/api/users?id=2", code: 200, body: "api /users?id=2"},
		{name: "not a segment", host: "web.test", path: "/apix", code: 200, body: "root /apix"},
		{name: "nested route no strip", host: "web.test", path: "/api/v2/x", code: 200, body: "v2 /api/v2/x"},
		{name: "decoded match", host: "web.test", path: "/%61pi/v2", code: 200, body: "v2 /%61pi/v2"},
		{name: "no root route", host: "other.test", path: "/", code: 404, body: "interlock: no route"},
		{name: "route without root", host: "other.test", path: "/app/1", code: 200, body: "other /app/1"},
		{name: "unknown host", host: "nope.test", path: "/", code: 404, body: "interlock: no route"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, h := get(t, r.http, c.host, c.path)
			if code != c.code || !strings.HasPrefix(body, c.body) {
				t.Fatalf("got %d %q, want %d %q...", code, body, c.code, c.body)
			}
			if code == 404 && h.Get("X-Interlock-Error") != "no-route" {
				t.Errorf("X-Interlock-Error = %q, want no-route", h.Get("X-Interlock-Error"))
			}
		})
	}
	t.Run("forwarded headers replaced", func(t *testing.T) {
		req := "GET / HTTP/1.1\r\nHost: web.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nConnection: close\r\n\r\n"
		out := rawRequest(t, r.http, req)
		if !strings.Contains(out, "xff=127.0.0.1 proto=http fhost=web.test fwd=\n") && !strings.HasSuffix(out, "xff=127.0.0.1 proto=http fhost=web.test fwd=") {
			t.Fatalf("headers not replaced: %q", out)
		}
	})
	if s := r.d.Stats(); s.Starts != 1 || s.Reloads != 0 || s.LastError != "" {
		t.Errorf("stats = %+v, want one start and no reload", s)
	}
}
