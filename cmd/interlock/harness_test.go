package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// env and image are this test binary's Docker fixtures, set up in TestMain.
var (
	env   *testenv.Env
	image string
)

func TestMain(m *testing.M) {
	code := func() int {
		ctx := context.Background()
		var err error
		env, err = testenv.New(ctx)
		if err != nil {
			if os.Getenv("CI") == "true" {
				fmt.Fprintln(os.Stderr, "integration tests need Docker:", err)
				return 1
			}
			fmt.Fprintln(os.Stderr, "skipping integration tests: no Docker:", err)
			env = nil
			return m.Run()
		}
		defer env.Sweep(ctx)
		image, err = env.BackendImage(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "build backend image:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needDocker(t *testing.T) *testenv.Env {
	t.Helper()
	if env == nil {
		t.Skip("no Docker engine")
	}
	return env
}

// instance is one Interlock running in this process, as `interlock run`.
type instance struct {
	proxy, api string // base URLs
	httpsAddr  string // the built-in proxy's HTTPS listener, 127.0.0.1:PORT
	logs       *syncBuffer
	done       chan int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startInterlock runs `interlock run` with args on free loopback ports and
// stops it when the test ends, printing its log if the test failed.
func startInterlock(t *testing.T, args ...string) *instance {
	t.Helper()
	in := &instance{logs: &syncBuffer{}, done: make(chan int, 1)}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	in.httpsAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	in.proxy, in.api = "http://"+httpAddr, "http://"+apiAddr
	// A free HTTPS port too, so no two instances fight over the default
	// :8443 (args may name another one: the last flag wins).
	// A state directory of its own (args may name another one): instances
	// must not restore each other's last good table.
	all := append([]string{"run", "--http-addr", httpAddr, "--https-addr", in.httpsAddr, "--api-addr", apiAddr, "--log-level", "debug",
		"--state-dir", t.TempDir()}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { in.done <- realMain(ctx, all, []string{}, io.Discard, in.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-in.done:
			if code != 0 {
				t.Errorf("interlock exited with %d", code)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("interlock did not stop within 15s of its context ending")
		}
		if t.Failed() {
			t.Logf("interlock log:\n%s", in.logs.String())
		}
	})
	testenv.WaitFor(t, 20*time.Second, "interlock ready", func() error {
		select {
		case code := <-in.done:
			in.done <- code
			return fmt.Errorf("interlock exited with %d:\n%s", code, in.logs.String())
		default:
		}
		code, body, err := httpGet(in.api+"/readyz", "")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	return in
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// response is what a request through the proxy returned.
type response struct {
	code    int
	backend string // X-Backend: which container answered
	body    string
}

// get sends GET path with Host host through the proxy.
func (in *instance) get(host, path string) (response, error) {
	return getThrough(in.proxy, host, path)
}

// getThrough sends GET path with Host host to the proxy at base
// ("http://127.0.0.1:PORT").
func getThrough(base, host, path string) (response, error) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return response{}, err
	}
	req.Host = host
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, backend: resp.Header.Get("X-Backend"), body: string(b)}, err
}

// waitStatus polls until host answers with code through the proxy.
func (in *instance) waitStatus(t *testing.T, host, path string, code int) response {
	t.Helper()
	var last response
	testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("%s%s answers %d", host, path, code), func() error {
		r, err := in.get(host, path)
		if err != nil {
			return err
		}
		last = r
		if r.code != code {
			return fmt.Errorf("got %d from %q: %s", r.code, r.backend, strings.TrimSpace(r.body))
		}
		return nil
	})
	return last
}

func (in *instance) routes(t *testing.T) api.RoutesResponse {
	t.Helper()
	code, body, err := httpGet(in.api+"/api/routes", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/routes: %d %v %s", code, err, body)
	}
	var out api.RoutesResponse
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("decode /api/routes: %v", err)
	}
	return out
}

func httpGet(url, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// hostFor gives a host name unique to this run and test, so parallel test
// binaries sharing the engine never collide.
func hostFor(t *testing.T, name string) string {
	t.Helper()
	return fmt.Sprintf("%s.%s.%s.test", name, strings.ToLower(sanitize(t.Name())), env.RunID)
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

func labelsFor(host string, extra ...string) map[string]string {
	l := map[string]string{"interlock.hostname": host}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// load sends requests from several clients until stopped, counting the
// failures (an error or any status but 200).
type load struct {
	stop          chan struct{}
	wg            sync.WaitGroup
	total, failed atomic.Int64
	first         atomic.Value // the first failure, as text
}

// startLoad runs clients goroutines, each calling get in a loop.
func startLoad(clients int, get func() (response, error)) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r, err := get()
				l.total.Add(1)
				if err != nil || r.code != http.StatusOK {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, fmt.Sprintf("%v %d %s", err, r.code, strings.TrimSpace(r.body)))
				}
			}
		}()
	}
	return l
}

// Stop ends the load and returns the totals.
func (l *load) Stop() (total, failed int64, first any) {
	close(l.stop)
	l.wg.Wait()
	return l.total.Load(), l.failed.Load(), l.first.Load()
}
