package feed

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

func table(hosts ...string) routing.Table {
	var t routing.Table
	for _, h := range hosts {
		t.Hosts = append(t.Hosts, routing.Host{Name: h, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:8000"}}}}})
	}
	t.Normalize()
	return t
}

var quiet = slog.New(slog.DiscardHandler)

// pki is a CA with a server certificate for 127.0.0.1 and a client one.
type pki struct{ server, client *tls.Config }

func newPKI(t *testing.T) (*testenv.PKI, pki) {
	t.Helper()
	p := testenv.NewPKI(t)
	s, err := ServerTLS(p.CA, p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ClientTLS(p.CA, p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return p, pki{server: s, client: c}
}

// serve runs h over mutual TLS on loopback.
func serve(t *testing.T, h http.Handler, cfg *tls.Config) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = cfg
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.URL
}

// follower runs a client and collects the versions it applies.
type follower struct {
	c       *Client
	applied chan string
	cancel  func()
	done    chan struct{}
}

func follow(t *testing.T, opts ClientOptions) *follower {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{c: c, applied: make(chan string, 16), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		_ = c.Run(ctx, func(t routing.Table) { f.applied <- t.Hash() })
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *follower) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case v := <-f.applied:
		return v
	case <-time.After(within):
		t.Fatalf("no table applied within %v; status %+v", within, f.c.Status())
		return ""
	}
}

func (f *follower) none(t *testing.T, during time.Duration) {
	t.Helper()
	select {
	case v := <-f.applied:
		t.Fatalf("applied %s; want nothing", short(v))
	case <-time.After(during):
	}
}

// TestResume: an edge that holds the live version waits; the next version
// reaches it as soon as it is applied, not after the wait.
func TestResume(t *testing.T) {
	_, k := newPKI(t)
	srv := NewServer(ServerOptions{Logger: quiet})
	v1, v2 := table("a.example"), table("a.example", "b.example")
	if err := srv.Apply(context.Background(), v1); err != nil {
		t.Fatal(err)
	}
	url := serve(t, srv, k.server)
	f := follow(t, ClientOptions{Controllers: []string{url}, TLS: k.client, Wait: 20 * time.Second})
	if got := f.next(t, 5*time.Second); got != v1.Hash() {
		t.Fatalf("first version %s, want %s", short(got), short(v1.Hash()))
	}
	// Held: nothing new while the version is the same.
	waitFor(t, func() bool { return srv.Stats().Waiting == 1 })
	f.none(t, 300*time.Millisecond)
	start := time.Now()
	if err := srv.Apply(context.Background(), v2); err != nil {
		t.Fatal(err)
	}
	if got := f.next(t, 5*time.Second); got != v2.Hash() {
		t.Fatalf("second version %s, want %s", short(got), short(v2.Hash()))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the change took %v to reach the edge; want it at once, not after the wait", took)
	}
	if st := f.c.Status(); !st.Following || st.Version != v2.Hash() || st.Updates != 2 {
		t.Errorf("status %+v; want following at version 2 after 2 updates", st)
	}
	// The same version again is no apply.
	_ = srv.Apply(context.Background(), v2)
	f.none(t, 200*time.Millisecond)
}

// TestWaitEndsNotModified: a wait that ends without a change is a 304, and
// the edge asks again.
func TestWaitEndsNotModified(t *testing.T) {
	_, k := newPKI(t)
	srv := NewServer(ServerOptions{Logger: quiet, MaxWait: 100 * time.Millisecond})
	_ = srv.Apply(context.Background(), table("a.example"))
	url := serve(t, srv, k.server)
	f := follow(t, ClientOptions{Controllers: []string{url}, TLS: k.client, Wait: time.Minute})
	f.next(t, 5*time.Second)
	waitFor(t, func() bool { return srv.Stats().NotModified >= 3 })
	f.none(t, 100*time.Millisecond)
	if st := f.c.Status(); !st.Following || st.LastError != "" {
		t.Errorf("status %+v; want following without error", st)
	}
}

// TestNoTableYet: a controller that has not applied a table answers 503,
// and an edge never gets an empty table from it.
func TestNoTableYet(t *testing.T) {
	_, k := newPKI(t)
	srv := NewServer(ServerOptions{Logger: quiet})
	url := serve(t, srv, k.server)
	f := follow(t, ClientOptions{Controllers: []string{url}, TLS: k.client, RetryMin: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	f.none(t, 300*time.Millisecond)
	if st := f.c.Status(); st.Following || !strings.Contains(st.LastError, "no routing table yet") {
		t.Errorf("status %+v; want not following, with the 503's reason", st)
	}
	v1 := table("a.example")
	_ = srv.Apply(context.Background(), v1)
	if got := f.next(t, 5*time.Second); got != v1.Hash() {
		t.Errorf("applied %s, want %s", short(got), short(v1.Hash()))
	}
	srv.Close()
	waitFor(t, func() bool { return strings.Contains(f.c.Status().LastError, "shutting down") })
}

// badBodies are snapshots an edge must refuse, each with the error it
// must give.
func badBodies(t *testing.T) []struct {
	name, body string
	want       error
	wantText   string
} {
	good, v, err := Encode(table("a.example"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	_ = json.Unmarshal(good, &s)
	other := func(k string, val any) string {
		m := map[string]any{}
		for kk, vv := range s {
			m[kk] = vv
		}
		m[k] = val
		b, _ := json.Marshal(m)
		return string(b)
	}
	altered := strings.Replace(string(good), "a.example", "b.example", 1)
	return []struct {
		name, body string
		want       error
		wantText   string
	}{
		{name: "hash mismatch", body: altered, want: ErrCorrupt, wantText: "does not match its version"},
		{name: "wrong version", body: other("version", strings.Repeat("0", len(v))), want: ErrCorrupt, wantText: "does not match its version"},
		{name: "truncated", body: string(good[:len(good)/2]), want: ErrCorrupt, wantText: "truncated"},
		{name: "empty", body: "", want: ErrCorrupt, wantText: "not a feed snapshot"},
		{name: "no protocol", body: `{"version":"x","table":{"hosts":[]}}`, want: ErrCorrupt, wantText: "no protocol field"},
		{name: "newer protocol", body: other("protocol", Protocol+1), want: ErrProtocol, wantText: fmt.Sprintf("sends protocol %d, this Interlock reads protocol %d", Protocol+1, Protocol)},
		{name: "older protocol", body: other("protocol", 0), want: ErrProtocol, wantText: "sends protocol 0"},
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range badBodies(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("Decode: %v; want %v containing %q", err, tc.want, tc.wantText)
			}
		})
	}
	good, v, _ := Encode(table("b.example", "a.example"), nil)
	got, err := Decode(good)
	if err != nil || got.Version != v || got.Table.Hash() != v {
		t.Errorf("Decode(good) = %s, %v; want version %s", short(got.Version), err, short(v))
	}
}

// TestRefusedSnapshotKeepsTable: a controller that sends a bad snapshot is
// left for the next one, and the table in use is never replaced by it.
func TestRefusedSnapshotKeepsTable(t *testing.T) {
	_, k := newPKI(t)
	v1 := table("a.example")
	goodBody, _, _ := Encode(v1, nil)
	cases := badBodies(t)
	cases = append(cases, struct {
		name, body string
		want       error
		wantText   string
	}{name: "too large", body: string(goodBody) + strings.Repeat(" ", 4096), want: ErrTooLarge, wantText: "over"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The first controller answers well once, then badly.
			var mu sync.Mutex
			n := 0
			bad := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				first := n == 1
				mu.Unlock()
				if first {
					_, _ = w.Write(goodBody)
					return
				}
				_, _ = io.WriteString(w, tc.body)
			}), k.server)
			// The second has the same table, as equal Docker state gives.
			srv := NewServer(ServerOptions{Logger: quiet})
			_ = srv.Apply(context.Background(), v1)
			good := serve(t, srv, k.server)
			f := follow(t, ClientOptions{Controllers: []string{bad, good}, TLS: k.client, Wait: 50 * time.Millisecond,
				MaxBody: int64(len(goodBody) + 1024)})
			if got := f.next(t, 5*time.Second); got != v1.Hash() {
				t.Fatalf("applied %s, want %s", short(got), short(v1.Hash()))
			}
			waitFor(t, func() bool { st := f.c.Status(); return st.Refused >= 1 && st.Controller == good && st.Following })
			f.none(t, 200*time.Millisecond) // the same version from the second: no apply
			st := f.c.Status()
			if st.Version != v1.Hash() {
				t.Errorf("version %s, want the table in use kept (%s)", short(st.Version), short(v1.Hash()))
			}
			if st.Switches < 1 {
				t.Errorf("status %+v; want a switch to the second controller", st)
			}
		})
	}
	// The error itself names the problem.
	for _, tc := range cases[:1] {
		bad := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, tc.body) }), k.server)
		f := follow(t, ClientOptions{Controllers: []string{bad}, TLS: k.client, RetryMin: 10 * time.Millisecond})
		waitFor(t, func() bool { return f.c.Status().LastError != "" })
		if st := f.c.Status(); !strings.Contains(st.LastError, "refused") || !strings.Contains(st.LastError, tc.wantText) || st.Following {
			t.Errorf("status %+v; want not following, with %q", st, tc.wantText)
		}
	}
}

// TestMutualTLS: only a client certificate of the feed CA reaches the
// controller, and the edge accepts only a controller certificate of it.
func TestMutualTLS(t *testing.T) {
	p, k := newPKI(t)
	other := testenv.NewPKI(t)
	srv := NewServer(ServerOptions{Logger: quiet})
	_ = srv.Apply(context.Background(), table("a.example"))
	url := serve(t, srv, k.server)
	otherClient, err := ClientTLS(p.CA, other.Cert, other.Key) // right roots, a stranger's certificate
	if err != nil {
		t.Fatal(err)
	}
	wrongRoots, err := ClientTLS(other.CA, p.Cert, p.Key) // a controller of another CA
	if err != nil {
		t.Fatal(err)
	}
	noCert := k.client.Clone()
	noCert.Certificates = nil
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{name: "same CA", cfg: k.client, ok: true},
		{name: "no client certificate", cfg: noCert},
		{name: "client certificate of another CA", cfg: otherClient},
		{name: "controller of another CA", cfg: wrongRoots},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.cfg}}
			defer c.CloseIdleConnections()
			resp, err := c.Get(url + Path)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status + " " + string(body))
				}
			}
			if tc.ok != (err == nil) {
				t.Errorf("GET %s: %v; want ok=%v", Path, err, tc.ok)
			}
		})
	}
	// TLS 1.1 is refused.
	old := k.client.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: old}}
	if resp, err := c.Get(url + Path); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 accepted")
	}
}

func TestServerRequests(t *testing.T) {
	srv := NewServer(ServerOptions{Logger: quiet, Ready: func() error { return errors.New("not connected to docker") }})
	_ = srv.Apply(context.Background(), table("a.example"))
	for _, tc := range []struct {
		name, method, target string
		code                 int
		want                 string
	}{
		{name: "not ready", method: http.MethodGet, target: Path, code: http.StatusServiceUnavailable, want: "not connected to docker"},
		{name: "other path", method: http.MethodGet, target: "/v2/table", code: http.StatusNotFound, want: "GET /v1/table"},
		{name: "post", method: http.MethodPost, target: Path, code: http.StatusMethodNotAllowed},
		{name: "bad wait", method: http.MethodGet, target: Path + "?after=x&wait=soon", code: http.StatusBadRequest, want: "not a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("%s %s: %d %q; want %d with %q", tc.method, tc.target, rec.Code, rec.Body, tc.code, tc.want)
			}
		})
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
