package builtin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

func TestRoundRobinThroughProxy(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(a), addr(b), addr(c)))))
	srv := serve(t, p)

	got := map[string]int{}
	for range 30 {
		got[get(t, srv, "app.example", "/").echo.Backend]++
	}
	if got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
		t.Errorf("30 requests spread %v, want 10 each", got)
	}
}

func TestLeastConnPrefersIdleBackend(t *testing.T) {
	// busy holds every request until release is closed; idle answers at once.
	arrived, release := make(chan struct{}, 16), make(chan struct{})
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("busy"))
	}))
	t.Cleanup(busy.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets busy.Close finish
	idle := newBackend(t, "idle")

	r := routeOf("/", addr(busy), addr(idle))
	r.Balance = routing.LeastConn
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", r)))
	srv := serve(t, p)

	// Send requests until one lands on busy and stays there; ties between
	// two idle backends rotate, so that takes two requests at most.
	held := make(chan response, 1)
	for i := 0; ; i++ {
		if i == 4 {
			t.Fatal("no request reached the busy backend")
		}
		done := make(chan response, 1)
		go func() {
			res, err := fetch(srv.Client(), srv, http.MethodGet, "app.example", "/", nil, nil)
			if err != nil {
				res = response{status: -1, body: err.Error()}
			}
			done <- res
		}()
		select {
		case <-arrived:
			go func() { held <- <-done }()
		case res := <-done:
			if res.echo.Backend != "idle" {
				t.Fatalf("unexpected answer %+v", res)
			}
			continue
		case <-time.After(10 * time.Second):
			t.Fatal("request neither answered nor held")
		}
		break
	}
	if s := statsOf(t, p, addr(busy)); s.InFlight != 1 {
		t.Fatalf("busy backend has %d in flight, want 1", s.InFlight)
	}

	for i := range 20 {
		if res := get(t, srv, "app.example", "/"); res.echo.Backend != "idle" {
			t.Fatalf("request %d went to %q while busy had a request in flight, want idle", i, res.echo.Backend)
		}
	}
	if s := statsOf(t, p, addr(idle)); s.InFlight != 0 || s.Requests < 20 {
		t.Errorf("idle backend %+v: want 20+ requests and none in flight", s)
	}
	release <- struct{}{}
	if res := <-held; res.status != 200 || res.body != "busy" {
		t.Errorf("held request: %d %q, want 200 busy", res.status, res.body)
	}
	eventually(t, 5*time.Second, "busy backend idle again", func() bool { return statsOf(t, p, addr(busy)).InFlight == 0 })
}

func TestSourceThroughProxy(t *testing.T) {
	byName := map[string]string{} // backend name -> address
	var all []string
	for _, name := range []string{"a", "b", "c", "d"} {
		byName[name] = addr(newBackend(t, name))
		all = append(all, byName[name])
	}
	sourceRoute := func(addrs ...string) routing.Route {
		r := routeOf("/", addrs...)
		r.Balance = routing.Source
		return r
	}
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("app.example", sourceRoute(all...))))

	// ServeHTTP directly, so each request can come from its own client IP.
	send := func(remote, forgedXFF string) string {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		req.RemoteAddr = remote
		if forgedXFF != "" {
			req.Header.Set("X-Forwarded-For", forgedXFF)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		var e echo
		if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != 200 || err != nil {
			t.Fatalf("status %d body %q: %v", w.Code, w.Body, err)
		}
		return e.Backend
	}
	clientIPs := clients(40)
	first := map[string]string{}
	for _, ip := range clientIPs {
		first[ip] = send(ip+":1000", "")
		for _, other := range []struct{ port, xff string }{{"2000", "1.1.1.1"}, {"3000", "2.2.2.2"}, {"4000", ""}} {
			if again := send(ip+":"+other.port, other.xff); again != first[ip] {
				t.Fatalf("client %s moved from %s to %s (port %s, X-Forwarded-For %q)", ip, first[ip], again, other.port, other.xff)
			}
		}
	}

	// Remove the backend of the first client: only clients it had move.
	goneName := first[clientIPs[0]]
	gone := byName[goneName]
	var rest []string
	for _, a := range all {
		if a != gone {
			rest = append(rest, a)
		}
	}
	mustApply(t, p, tableOf(hostOf("app.example", sourceRoute(rest...))))
	moved := 0
	for _, ip := range clientIPs {
		now := send(ip+":1000", "")
		if now != first[ip] {
			moved++
			if first[ip] != goneName {
				t.Errorf("client %s moved from %s to %s, but only %s went away", ip, first[ip], now, goneName)
			}
		}
	}
	if moved == 0 {
		t.Error("no client moved after its backend was removed")
	}
}
