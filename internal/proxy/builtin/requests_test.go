package builtin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeRequests records observations per host, and which hosts were asked
// for and forgotten.
type fakeRequests struct {
	mu        sync.Mutex
	asked     map[string]int
	forgotten []string
	codes     map[string]map[int]int
}

func newFakeRequests() *fakeRequests {
	return &fakeRequests{asked: map[string]int{}, codes: map[string]map[int]int{}}
}

func (f *fakeRequests) Host(name string) RequestRecorder {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[name]++
	return fakeRecorder{f: f, host: name}
}

func (f *fakeRequests) Forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten = append(f.forgotten, name)
}

func (f *fakeRequests) count(host string, code int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.codes[host][code]
}

type fakeRecorder struct {
	f    *fakeRequests
	host string
}

func (r fakeRecorder) Observe(code int, took time.Duration) {
	if took < 0 {
		panic("negative duration")
	}
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if r.f.codes[r.host] == nil {
		r.f.codes[r.host] = map[int]int{}
	}
	r.f.codes[r.host][code]++
}

func TestRequestMetricsByHostAndStatus(t *testing.T) {
	ok := newBackend(t, "ok")
	teapot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(teapot.Close)
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(silent.Close)
	ws := newUpgradeBackend(t, "")

	rec := newFakeRequests()
	p := newTestProxy(t, Options{Requests: rec, EjectFor: -1}, nil)
	empty := hostOf("empty.example", routeOf("/"))
	app := hostOf("app.example", routeOf("/", addr(ok)), routeOf("/tea", addr(teapot)), routeOf("/silent", addr(silent)),
		routeOf("/dead", deadAddr(t)))
	app.Aliases = []string{"alias.example"}
	mustApply(t, p, tableOf(app, empty, hostOf("ws.example", routeOf("/", addr(ws)))))
	srv := serve(t, p)

	for _, tc := range []struct {
		name, host, path string
		wantHost         string
		wantCode         int
	}{
		{name: "proxied", host: "app.example", path: "/", wantHost: "app.example", wantCode: 200},
		{name: "alias counts under the primary name", host: "ALIAS.example:8080", path: "/x", wantHost: "app.example", wantCode: 200},
		{name: "backend status", host: "app.example", path: "/tea", wantHost: "app.example", wantCode: http.StatusTeapot},
		{name: "backend wrote nothing", host: "app.example", path: "/silent", wantHost: "app.example", wantCode: 200},
		{name: "backend unavailable", host: "app.example", path: "/dead", wantHost: "app.example", wantCode: http.StatusBadGateway},
		{name: "no live backend", host: "empty.example", path: "/", wantHost: "empty.example", wantCode: http.StatusServiceUnavailable},
		{name: "unknown host", host: "evil-" + fmt.Sprint(time.Now().UnixNano()) + ".example", path: "/", wantHost: UnknownHost, wantCode: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.count(tc.wantHost, tc.wantCode)
			if res := get(t, srv, tc.host, tc.path); res.status != tc.wantCode {
				t.Fatalf("status %d, want %d", res.status, tc.wantCode)
			}
			if got := rec.count(tc.wantHost, tc.wantCode); got != before+1 {
				t.Errorf("recorded %d requests for %s %d, want %d", got, tc.wantHost, tc.wantCode, before+1)
			}
		})
	}

	t.Run("upgrade counts as 101", func(t *testing.T) {
		conn, br, res := upgrade(t, srv, "ws.example")
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %s", res.Status)
		}
		echoes(t, conn, br, "ping")
		conn.Close()
		eventually(t, 5*time.Second, "the tunnel recorded", func() bool { return rec.count("ws.example", 101) == 1 })
	})

	t.Run("hosts are looked up at apply and forgotten when they leave", func(t *testing.T) {
		rec.mu.Lock()
		asked := cloneCounts(rec.asked)
		rec.mu.Unlock()
		if asked[UnknownHost] != 1 || asked["app.example"] != 1 || asked["alias.example"] != 0 {
			t.Errorf("Host calls %v, want one per primary name per Apply and one for %q", asked, UnknownHost)
		}
		mustApply(t, p, tableOf(app))
		rec.mu.Lock()
		forgotten := slices.Sorted(slices.Values(rec.forgotten))
		asked = cloneCounts(rec.asked)
		rec.mu.Unlock()
		if !slices.Equal(forgotten, []string{"empty.example", "ws.example"}) {
			t.Errorf("forgotten %v, want the two hosts that left", forgotten)
		}
		if asked["app.example"] != 2 {
			t.Errorf("app.example asked %d times after two Applies, want 2", asked["app.example"])
		}
	})
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// nopRecorder records nothing, so that allocation tests measure the proxy.
type nopRecorder struct{}

func (nopRecorder) Host(string) RequestRecorder { return nopRecorder{} }
func (nopRecorder) Forget(string)               {}
func (nopRecorder) Observe(int, time.Duration)  {}

func TestRequestMetricsAddNoAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	be := newBackend(t, "be")
	measure := func(opts Options, host string) float64 {
		p := newTestProxy(t, opts, nil)
		mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(be))), hostOf("empty.example", routeOf("/"))))
		req := httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil)
		w := &discardWriter{h: http.Header{}}
		return testing.AllocsPerRun(200, func() {
			w.code = 0
			clear(w.h)
			p.ServeHTTP(w, req)
		})
	}
	// The proxy's own answers run entirely on this goroutine, so their
	// counts are exact; the proxied path is measured by BenchmarkServeHTTP.
	for _, host := range []string{"nowhere.example", "empty.example"} {
		without := measure(Options{}, host)
		with := measure(Options{Requests: nopRecorder{}}, host)
		if with > without {
			t.Errorf("%s: %.1f allocs per request with request metrics, %.1f without", host, with, without)
		}
	}
}
