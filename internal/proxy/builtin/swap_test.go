package builtin

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestApplySwapUnderLoad swaps two tables while requests run. Each table is
// recognizable from the answer alone: in t1 "/v2/x" reaches a or b with its
// path intact, in t2 it reaches c with "/v2" stripped. Any other combination
// would be a request served from a half-built table.
func TestApplySwapUnderLoad(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	v2 := routeOf("/v2", addr(c))
	v2.StripPath = true
	t1 := tableOf(
		hostOf("app.example", routeOf("/", addr(a), addr(b))),
		hostOf("other.example", routeOf("/", addr(b))),
	)
	t2 := tableOf(
		hostOf("app.example", v2, routeOf("/", addr(b), addr(c))),
		hostOf("other.example", routeOf("/", addr(b))),
	)
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, t1)
	srv := serve(t, p)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(client.CloseIdleConnections)

	var (
		stop     atomic.Bool
		served   atomic.Int64
		tick     = make(chan struct{}, 64) // one per request, dropped when full
		quit     = make(chan struct{})     // closed when every worker has returned
		seenT1   atomic.Bool
		seenT2   atomic.Bool
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				host := "app.example"
				if (w+i)%4 == 0 {
					host = "other.example"
				}
				res, err := fetch(client, srv, http.MethodGet, host, "/v2/x", nil, nil)
				if err != nil {
					fail("request: %v", err)
					return
				}
				served.Add(1)
				select {
				case tick <- struct{}{}:
				default:
				}
				e := res.echo
				switch {
				case res.status != 200:
					fail("%s: status %d %q", host, res.status, res.body)
				case host == "other.example":
					if e.Backend != "b" || e.Path != "/v2/x" {
						fail("other.example reached %s %s", e.Backend, e.Path)
					}
				case (e.Backend == "a" || e.Backend == "b") && e.Path == "/v2/x":
					seenT1.Store(true)
				case e.Backend == "c" && e.Path == "/x":
					seenT2.Store(true)
				default:
					fail("app.example reached %s with path %s: in neither table", e.Backend, e.Path)
				}
			}
		})
	}
	// On a failed Apply too, the workers stop before the server closes.
	t.Cleanup(func() { stop.Store(true); wg.Wait() })
	tables := []routing.Table{t2, t1}
	go func() {
		wg.Wait()
		close(quit)
	}()
	// 300 swaps, each after a few more requests, so that swaps and requests
	// interleave however many CPUs there are. The loop ends early if every
	// worker gave up (their failures say why).
swaps:
	for i := range 300 {
		mustApply(t, p, tables[i%2])
		for range 4 {
			select {
			case <-tick:
			case <-quit:
				break swaps
			}
		}
	}
	stop.Store(true)
	wg.Wait()

	for _, f := range failures {
		t.Error(f)
	}
	if !seenT1.Load() || !seenT2.Load() {
		t.Errorf("answers seen from t1: %v, t2: %v; want both (%d requests)", seenT1.Load(), seenT2.Load(), served.Load())
	}
	if e := p.Errors(); e != (ErrorStats{}) {
		t.Errorf("Errors() = %+v, want none", e)
	}
}
