package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

type fakeController struct{ st controller.Status }

func (f fakeController) Status() controller.Status { return f.st }

type fakeDocker struct{ st docker.Status }

func (f fakeDocker) Status() docker.Status { return f.st }

func serve(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestReadiness(t *testing.T) {
	applied := controller.Status{Applied: true, Hash: "h"}
	for _, tc := range []struct {
		name     string
		ctl      controller.Status
		dock     docker.Status
		wantCode int
		wantBody string
	}{
		{name: "starting", ctl: controller.Status{}, dock: docker.Status{}, wantCode: 503, wantBody: "not connected to docker yet"},
		{name: "connected, nothing applied", ctl: controller.Status{}, dock: docker.Status{Connected: true}, wantCode: 503, wantBody: "no routing table applied"},
		{name: "ready", ctl: applied, dock: docker.Status{Connected: true}, wantCode: 200, wantBody: "ready"},
		// The last good table still serves: degraded, not down.
		{name: "lost docker after a table was applied", ctl: applied, dock: docker.Status{LastError: "event stream: EOF", Since: time.Unix(0, 0)}, wantCode: 200, wantBody: "degraded: not connected to docker (event stream: EOF)"},
		{name: "lost docker before any table", ctl: controller.Status{}, dock: docker.Status{LastError: "dial: refused", Since: time.Unix(0, 0)}, wantCode: 503, wantBody: "dial: refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(fakeController{tc.ctl}, fakeDocker{tc.dock}, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
			code, body := serve(t, s, "/readyz")
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("readyz = %d %q, want %d containing %q", code, body, tc.wantCode, tc.wantBody)
			}
			if code, _ := serve(t, s, "/healthz"); code != 200 {
				t.Errorf("healthz = %d, want 200 whatever the state", code)
			}
		})
	}
}

func TestRoutesShowsTableAndLeftOut(t *testing.T) {
	table := routing.Table{Hosts: []routing.Host{{Name: "web.example.com", Routes: []routing.Route{{
		Path: "/", Balance: routing.RoundRobin, Protocol: routing.HTTP,
		Backends: []routing.Backend{{Address: "127.0.0.1:32768", Container: "abc", Name: "web"}},
	}}}}}
	problems := []routing.Problem{{Kind: "container", ID: "def", Name: "bad", Label: "interlock.port", Reason: routing.ReasonInvalidLabel, Message: "not a port"}}
	s := New(fakeController{controller.Status{Applied: true, Hash: table.Hash(), Table: table, Problems: problems}},
		fakeDocker{docker.Status{Connected: true}}, "test", nil)
	code, body := serve(t, s, "/api/routes")
	if code != 200 {
		t.Fatalf("GET /api/routes = %d", code)
	}
	var got RoutesResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Hash != table.Hash() || len(got.Hosts) != 1 || got.Hosts[0].Routes[0].Backends[0].Name != "web" {
		t.Errorf("routes = %+v, want the table", got)
	}
	if len(got.LeftOut) != 1 || got.LeftOut[0] != problems[0] {
		t.Errorf("left_out = %+v, want %+v", got.LeftOut, problems)
	}
}

func TestEmptyListsAreArrays(t *testing.T) {
	s := New(fakeController{}, fakeDocker{}, "test", nil)
	_, body := serve(t, s, "/api/routes")
	if !strings.Contains(body, `"hosts": []`) || !strings.Contains(body, `"left_out": []`) {
		t.Errorf("empty lists must be [] for clients, got %s", body)
	}
}

func TestStatus(t *testing.T) {
	s := New(fakeController{controller.Status{Driver: "builtin", Applied: true, LastApply: controller.Apply{Error: "nginx: [emerg] unexpected \"}\""}}},
		fakeDocker{docker.Status{Connected: true, APIVersion: "1.41"}}, "v1.2.3", nil)
	code, body := serve(t, s, "/api/status")
	var got StatusResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("GET /api/status = %d %v", code, err)
	}
	if got.Version != "v1.2.3" || !got.Ready || got.Docker.APIVersion != "1.41" || got.Controller.LastApply.Error == "" {
		t.Errorf("status = %+v", got)
	}
}

func TestUnknownPathAndMethod(t *testing.T) {
	s := New(fakeController{}, fakeDocker{}, "test", nil)
	if code, _ := serve(t, s, "/api/nope"); code != http.StatusNotFound {
		t.Errorf("unknown path = %d, want 404", code)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/routes", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/routes = %d, want 405", rec.Code)
	}
}

// TestProxyContainers: with side-loaded proxy containers, /api/status
// shows them, and /readyz says degraded (200) while a table is applied
// but no proxy container runs to get it: the configuration reaches
// nothing.
func TestProxyContainers(t *testing.T) {
	applied := controller.Status{Applied: true, Hash: "h", LastApply: controller.Apply{At: time.Unix(0, 0).UTC()}}
	connected := docker.Status{Connected: true}
	none := ProxyContainers{Label: "interlock.ext.name=nginx", Host: "tcp://10.0.0.10:2376"}
	one := none
	one.Targets, one.Signals = 1, 3
	lost := none
	lost.Host, lost.Docker = "unix:///var/run/docker.sock", &docker.Status{LastError: "dial unix: permission denied"}
	for _, tc := range []struct {
		name     string
		ctl      controller.Status
		proxies  *ProxyContainers
		wantCode int
		wantBody string
	}{
		{name: "no proxy containers to drive", ctl: applied, wantCode: 200, wantBody: "ready"},
		{name: "a proxy container", ctl: applied, proxies: &one, wantCode: 200, wantBody: "ready"},
		{name: "none running", ctl: applied, proxies: &none, wantCode: 200,
			wantBody: "degraded: no proxy container labelled interlock.ext.name=nginx is running on tcp://10.0.0.10:2376; the table applied at 1970-01-01T00:00:00Z reaches no proxy"},
		{name: "their engine unreachable", ctl: applied, proxies: &lost, wantCode: 200,
			wantBody: "degraded: no proxy container labelled interlock.ext.name=nginx is running on unix:///var/run/docker.sock (not connected to it: dial unix: permission denied)"},
		// Nothing applied yet: not ready, whatever the containers.
		{name: "none running, nothing applied", ctl: controller.Status{}, proxies: &none, wantCode: 503, wantBody: "no routing table applied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []Option
			if tc.proxies != nil {
				opts = append(opts, WithProxyContainers(func() ProxyContainers { return *tc.proxies }))
			}
			s := New(fakeController{tc.ctl}, fakeDocker{connected}, "test", nil, opts...)
			code, body := serve(t, s, "/readyz")
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("readyz = %d %q, want %d with %q", code, body, tc.wantCode, tc.wantBody)
			}
			_, body = serve(t, s, "/api/status")
			var got StatusResponse
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if tc.proxies == nil {
				if got.ProxyContainers != nil || strings.Contains(body, "proxy_containers") {
					t.Errorf("status shows proxy_containers without any: %s", body)
				}
				return
			}
			if got.ProxyContainers == nil || !reflect.DeepEqual(*got.ProxyContainers, *tc.proxies) {
				t.Errorf("status proxy_containers = %+v, want %+v", got.ProxyContainers, *tc.proxies)
			}
			if want, ok := strings.CutPrefix(tc.wantBody, "degraded: "); ok && !strings.HasPrefix(got.Degraded, want) {
				t.Errorf("status degraded = %q, want what /readyz says: %q", got.Degraded, want)
			}
		})
	}
}
