package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

const evil = `<img src=x onerror="alert(1)">`

func dashboardServer(t *testing.T, opts ...Option) *Server {
	t.Helper()
	tbl := table(routing.Host{Name: "web.example", Aliases: []string{"www.example"}, Routes: []routing.Route{{
		Path: "/", Backends: []routing.Backend{
			{Address: "127.0.0.1:32768", Container: "abc", Name: "web-1"},
			{Address: "10.0.0.5:80", Task: "t1", Name: "svc.1", Node: "node-2"},
		},
	}, {Path: "/empty", StripPath: true}}})
	st := controller.Status{Driver: "builtin", Applied: true, Hash: tbl.Hash(), Table: tbl, Applies: 3,
		LastApply: controller.Apply{At: time.Now().Add(-2 * time.Second), Duration: 40 * time.Microsecond}, LastConvergence: 3 * time.Millisecond,
		Problems: []routing.Problem{{Kind: "container", ID: "bad1", Name: "bad", Label: "interlock.hostname", Reason: routing.ReasonInvalidLabel, Message: "value " + evil + " is not a host name"}}}
	return New(fakeController{st}, fakeDocker{docker.Status{Connected: true, APIVersion: "1.41", Since: time.Now()}}, "v9", nil, opts...)
}

func TestDashboardRendersWithoutScript(t *testing.T) {
	f := NewFeed()
	f.Publish(Event{Kind: KindLeftOut, Level: LevelWarn, Message: "container bad: " + evil})
	s := dashboardServer(t, WithFeed(f), WithBackendHealth(func() []BackendHealth {
		return []BackendHealth{{Address: "127.0.0.1:32768", Requests: 7}, {Address: "10.0.0.5:80", Ejected: true}}
	}))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("GET / = %d: %s", rec.Code, body)
	}
	h := rec.Header()
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{
		`data-host="web.example"`, "www.example", "127.0.0.1:32768", "web-1", "svc.1", "node-2",
		`data-health="live">live · 0 in flight · 7 req`, `data-health="ejected"`,
		"no live backend: requests get 503", "interlock.hostname", "invalid_label",
		"connected", "1.41", "builtin", "atomic swaps", "<noscript>", `data-last-event="1"`,
		`<script src="/static/dashboard.js" defer></script>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, evil) || strings.Contains(body, "<img") {
		t.Error("untrusted text reached the page unescaped")
	}
	if !strings.Contains(body, "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") {
		t.Error("untrusted text not shown escaped")
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "style=") || strings.Contains(body, "<style") {
		t.Error("inline script or style: the CSP forbids them")
	}
}

func TestDashboardEmptyState(t *testing.T) {
	s := New(fakeController{controller.Status{Driver: "builtin"}}, fakeDocker{}, "test", nil)
	code, body := serve(t, s, "/")
	if code != 200 || !strings.Contains(body, "No host is routed yet") || !strings.Contains(body, "nothing applied yet") ||
		!strings.Contains(body, "not ready: not connected to docker yet") || !strings.Contains(body, `data-live="false"`) {
		t.Errorf("empty dashboard = %d:\n%s", code, body)
	}
}

// TestDashboardDegraded: after a table was applied and Docker was lost,
// the page says the proxy serves its last table, not that it is down.
func TestDashboardDegraded(t *testing.T) {
	lost := docker.Status{LastError: "event stream: EOF", Since: time.Unix(0, 0)}
	s := New(fakeController{controller.Status{Driver: "builtin", Applied: true, Hash: strings.Repeat("ab", 32)}}, fakeDocker{lost}, "test", nil)
	code, body := serve(t, s, "/")
	if code != 200 || !strings.Contains(body, `data-ok="false">degraded: not connected to docker (event stream: EOF)`) ||
		strings.Contains(body, "not ready") {
		t.Errorf("degraded dashboard = %d:\n%s", code, body)
	}
}

func TestStaticFiles(t *testing.T) {
	s := New(fakeController{}, fakeDocker{}, "test", nil)
	for path, want := range map[string]string{
		"/static/dashboard.js":  "text/javascript; charset=utf-8",
		"/static/dashboard.css": "text/css; charset=utf-8",
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != want || rec.Body.Len() < 500 {
			t.Errorf("GET %s = %d %q (%d bytes)", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
		}
	}
	for _, path := range []string{"/static/index.html", "/static/", "/static/x/../index.html", "/nope"} {
		if code, _ := serve(t, s, path); code == http.StatusOK {
			t.Errorf("GET %s = %d, want no file", path, code)
		}
	}
}

func TestScriptUsesNoMarkupSinks(t *testing.T) {
	js, err := dashboardFiles.ReadFile("dashboard/dashboard.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(string(js), sink) {
			t.Errorf("dashboard.js uses %s: build nodes with textContent instead", sink)
		}
	}
}

func TestShuttingDown(t *testing.T) {
	f := NewFeed()
	s := New(fakeController{controller.Status{Applied: true}}, fakeDocker{docker.Status{Connected: true}}, "test", nil, WithFeed(f))
	if code, _ := serve(t, s, "/readyz"); code != 200 {
		t.Fatalf("readyz = %d before shutdown", code)
	}
	s.ShuttingDown()
	s.ShuttingDown()
	if code, body := serve(t, s, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("readyz while shutting down = %d %q", code, body)
	}
	var st StatusResponse
	_, body := serve(t, s, "/api/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Ready || !st.ShuttingDown {
		t.Errorf("status while shutting down: %+v %v", st, err)
	}
	if e := f.Recent(0); len(e) != 1 || e[0].Kind != KindLifecycle {
		t.Errorf("feed %+v, want one lifecycle event", e)
	}
}

func TestOptions(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("interlock_up 1\n")) })
	s := New(fakeController{}, fakeDocker{}, "test", nil,
		WithMetrics(metrics),
		WithReloads(func() int64 { return 4 }),
		WithBackendHealth(func() []BackendHealth { return []BackendHealth{{Address: "127.0.0.1:1", InFlight: 2}} }))
	if code, body := serve(t, s, "/metrics"); code != 200 || body != "interlock_up 1\n" {
		t.Errorf("/metrics = %d %q", code, body)
	}
	var st StatusResponse
	_, body := serve(t, s, "/api/status")
	if json.Unmarshal([]byte(body), &st); st.Reloads != 4 {
		t.Errorf("reloads = %d, want 4", st.Reloads)
	}
	var b BackendsResponse
	_, body = serve(t, s, "/api/backends")
	if json.Unmarshal([]byte(body), &b); !b.Available || len(b.Backends) != 1 || b.Backends[0].InFlight != 2 {
		t.Errorf("/api/backends = %s", body)
	}

	plain := New(fakeController{}, fakeDocker{}, "test", nil)
	if code, _ := serve(t, plain, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without metrics = %d, want 404", code)
	}
	if _, body := serve(t, plain, "/api/backends"); !strings.Contains(body, `"available": false`) || !strings.Contains(body, `"backends": []`) {
		t.Errorf("/api/backends without a source = %s", body)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:             "0s",
		850 * time.Microsecond:   "850µs",
		12300 * time.Microsecond: "12.3ms",
		4200 * time.Millisecond:  "4.2s",
		185 * time.Second:        "3m5s",
		2 * time.Hour:            "2h0m0s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
