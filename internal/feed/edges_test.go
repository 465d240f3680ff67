package feed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// edgeNamed is the state of the edge called name, or fails the test.
func edgeNamed(t *testing.T, edges []EdgeState, name string) EdgeState {
	t.Helper()
	for _, e := range edges {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no edge %q in %+v", name, edges)
	return EdgeState{}
}

func hostOf(t *testing.T, edges []EdgeHost, name string) EdgeHost {
	t.Helper()
	for _, e := range edges {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no edge %q in %+v", name, edges)
	return EdgeHost{}
}

func applied(srv *Server, names ...string) bool {
	v := srv.Stats().Version
	edges := srv.Edges()
	for _, n := range names {
		ok := false
		for _, e := range edges {
			ok = ok || (e.Name == n && e.Version == v && e.Current)
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestEdges: two edges following one controller, as explain sees them:
// what they applied, since when they serve a host, and whether they are
// still there.
func TestEdges(t *testing.T) {
	t.Parallel() // it waits for an edge to be seen gone
	_, k := newPKI(t)
	srv := NewServer(ServerOptions{Logger: quiet})
	v1, v2 := table("a.example"), table("a.example", "b.example")
	if err := srv.Apply(context.Background(), v1); err != nil {
		t.Fatal(err)
	}
	url := serve(t, srv, k.server)
	if edges := srv.Edges(); len(edges) != 0 {
		t.Fatalf("edges %+v before any poll", edges)
	}
	one := follow(t, ClientOptions{Controllers: []string{url}, TLS: k.client, Wait: 20 * time.Second, Name: "edge-1"})
	two := follow(t, ClientOptions{Controllers: []string{url}, TLS: k.client, Wait: 20 * time.Second, Name: "edge-2"})
	one.next(t, 5*time.Second)
	two.next(t, 5*time.Second)
	// An edge says what it applied in its next poll.
	waitFor(t, func() bool { return applied(srv, "edge-1", "edge-2") })
	edges := srv.Edges()
	if len(edges) != 2 || edges[0].Name != "edge-1" || edges[1].Name != "edge-2" {
		t.Fatalf("edges %+v; want edge-1 and edge-2, by name", edges)
	}
	first := map[string]time.Time{}
	for _, e := range edges {
		if e.Version != srv.Stats().Version || !e.Current || !e.Connected || e.AppliedAt.IsZero() || e.LastSeen.IsZero() || e.Remote == "" {
			t.Errorf("edge %+v; want version %s, current, connected", e, short(srv.Stats().Version))
		}
		first[e.Name] = e.AppliedAt
	}
	for _, e := range srv.EdgesServing("b.example") {
		if e.Applied {
			t.Errorf("edge %s serves b.example before any table has it", e.Name)
		}
	}

	changed := time.Now()
	if err := srv.Apply(context.Background(), v2); err != nil {
		t.Fatal(err)
	}
	one.next(t, 5*time.Second)
	two.next(t, 5*time.Second)
	waitFor(t, func() bool { return applied(srv, "edge-1", "edge-2") })
	for _, tc := range []struct {
		host      string
		applied   bool
		sinceFrom func(name string) time.Time // Since must be this
	}{
		{host: "b.example", applied: true},
		{host: "B.Example.", applied: true},
		{host: "a.example", applied: true, sinceFrom: func(name string) time.Time { return first[name] }},
		{host: "c.example"},
	} {
		for _, e := range srv.EdgesServing(tc.host) {
			if e.Applied != tc.applied || !e.Current || !e.Connected || e.Version != srv.Stats().Version {
				t.Errorf("%s: edge %+v; want applied=%v, current, connected", tc.host, e, tc.applied)
			}
			switch {
			case !tc.applied:
				if !e.Since.IsZero() {
					t.Errorf("%s: edge %s since %v; want none", tc.host, e.Name, e.Since)
				}
			case tc.sinceFrom != nil:
				if want := tc.sinceFrom(e.Name); !e.Since.Equal(want) {
					t.Errorf("%s: edge %s since %v; want %v, when it first applied a table with it", tc.host, e.Name, e.Since, want)
				}
			default:
				if e.Since.Before(changed) {
					t.Errorf("%s: edge %s since %v, before the table that has it (%v)", tc.host, e.Name, e.Since, changed)
				}
			}
		}
	}

	// edge-2 stops: it is listed, no longer connected, once its last poll
	// is a few seconds old.
	two.cancel()
	<-two.done
	deadline := time.Now().Add(15 * time.Second)
	for edgeNamed(t, srv.Edges(), "edge-2").Connected {
		if time.Now().After(deadline) {
			t.Fatalf("edge-2 stopped, still connected: %+v", srv.Edges())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e := edgeNamed(t, srv.Edges(), "edge-1"); !e.Connected || !e.Current {
		t.Errorf("edge-1 %+v; want connected and current while its poll is held", e)
	}
	if e := hostOf(t, srv.EdgesServing("b.example"), "edge-2"); !e.Applied || e.Connected {
		t.Errorf("edge-2 %+v; want what it applied kept, not connected", e)
	}
}

// edgePoll polls srv as an edge at once (wait=0s: a held version is
// answered 304 at once) and returns the status.
func edgePoll(t *testing.T, srv *Server, name, after string) int {
	t.Helper()
	q := url.Values{EdgeParam: {name}, "wait": {"0s"}}
	if after != "" {
		q.Set("after", after)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path+"?"+q.Encode(), nil))
	return rec.Code
}

// TestEdgesServing: whether an edge serves a host follows the versions it
// reported; Since is the start of its latest run of versions with the
// host.
func TestEdgesServing(t *testing.T) {
	srv := NewServer(ServerOptions{Logger: quiet})
	withAlias := table("a.example", "b.example")
	withAlias.Hosts[1].Aliases = []string{"www.b.example"}
	withAlias.Normalize()
	versions := map[string]routing.Table{
		"v1": table("a.example"),
		"v2": withAlias,
		"v4": table("a.example"),
		"v5": table("a.example", "b.example"),
	}
	live := map[string]string{}
	applyV := func(name string) {
		t.Helper()
		if err := srv.Apply(context.Background(), versions[name]); err != nil {
			t.Fatal(err)
		}
		live[name] = srv.Stats().Version
	}
	// at is when each report was made: Since must be within one.
	type window struct{ from, to time.Time }
	at := map[string]window{}
	report := func(edge, v string) {
		t.Helper()
		from := time.Now()
		if code := edgePoll(t, srv, edge, live[v]); code != http.StatusNotModified {
			t.Fatalf("poll after the live version: %d, want 304", code)
		}
		at[v] = window{from, time.Now()}
	}
	check := func(step string, want map[string]struct {
		applied bool
		since   string // the version whose report Since is ("" none)
	}) {
		t.Helper()
		for host, w := range want {
			e := hostOf(t, srv.EdgesServing(host), "e")
			if e.Applied != w.applied {
				t.Errorf("%s: %s applied=%v, want %v", step, host, e.Applied, w.applied)
				continue
			}
			if w.since == "" {
				if !e.Since.IsZero() {
					t.Errorf("%s: %s since %v, want none", step, host, e.Since)
				}
				continue
			}
			if win := at[w.since]; e.Since.Before(win.from) || e.Since.After(win.to) {
				t.Errorf("%s: %s since %v; want when %s was reported (%v to %v)", step, host, e.Since, w.since, win.from, win.to)
			}
		}
	}
	type hw = struct {
		applied bool
		since   string
	}

	applyV("v1")
	if code := edgePoll(t, srv, "e", ""); code != http.StatusOK {
		t.Fatalf("first poll: %d", code)
	}
	if e := hostOf(t, srv.EdgesServing("a.example"), "e"); e.Applied || e.Version != "" || e.Current {
		t.Errorf("before it reported a version: %+v; want nothing applied", e)
	}
	report("e", "v1")
	check("v1", map[string]hw{"a.example": {true, "v1"}, "b.example": {}, "www.b.example": {}})

	time.Sleep(5 * time.Millisecond)
	applyV("v2")
	report("e", "v2")
	check("v2", map[string]hw{"a.example": {true, "v1"}, "b.example": {true, "v2"}, "WWW.B.Example.": {true, "v2"}})

	// Certificates only: a new version, the same table; b.example stays
	// served since v2.
	time.Sleep(5 * time.Millisecond)
	if err := srv.SetCertificates(&Certificates{Failures: map[string]string{"b.example": "pending"}}); err != nil {
		t.Fatal(err)
	}
	live["v3"] = srv.Stats().Version
	if !strings.HasPrefix(live["v3"], withAlias.Hash()+"+") {
		t.Fatalf("version %q with certificates", live["v3"])
	}
	report("e", "v3")
	check("v3", map[string]hw{"a.example": {true, "v1"}, "b.example": {true, "v2"}})

	// b.example leaves, then comes back: served since it came back.
	time.Sleep(5 * time.Millisecond)
	applyV("v4")
	report("e", "v4")
	check("v4", map[string]hw{"a.example": {true, "v1"}, "b.example": {}, "www.b.example": {}})
	time.Sleep(5 * time.Millisecond)
	applyV("v5")
	report("e", "v5")
	check("v5", map[string]hw{"a.example": {true, "v1"}, "b.example": {true, "v5"}, "www.b.example": {}})

	// A version the controller never had (another controller's, say):
	// not known to have any host.
	if code := edgePoll(t, srv, "e", "0000+1111"); code != http.StatusOK {
		t.Fatalf("poll after an unknown version: %d, want the live snapshot", code)
	}
	if e := hostOf(t, srv.EdgesServing("a.example"), "e"); e.Applied || e.Current {
		t.Errorf("after an unknown version: %+v; want not applied, not current", e)
	}
}

// TestEdgeName: the "edge" parameter names an edge, else its client
// certificate's common name, else its address.
func TestEdgeName(t *testing.T) {
	srv := NewServer(ServerOptions{Logger: quiet})
	if err := srv.Apply(context.Background(), table("a.example")); err != nil {
		t.Fatal(err)
	}
	peer := func(cn string) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: cn}}}}
	}
	long := strings.Repeat("e", 300)
	for _, tc := range []struct {
		name, query string
		tls         *tls.ConnectionState
		want        string
	}{
		{name: "parameter", query: "?edge=edge-7", want: "edge-7"},
		{name: "parameter over certificate", query: "?edge=edge-7", tls: peer("interlock"), want: "edge-7"},
		{name: "certificate", tls: peer("edge-cn"), want: "edge-cn"},
		{name: "certificate without CN", tls: peer(""), want: "192.0.2.1:1234"},
		{name: "empty parameter", query: "?edge=", tls: peer("edge-cn"), want: "edge-cn"},
		{name: "address", want: "192.0.2.1:1234"},
		{name: "long parameter cut", query: "?edge=" + long, want: long[:253]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := NewServer(ServerOptions{Logger: quiet})
			_ = srv.Apply(context.Background(), table("a.example"))
			req := httptest.NewRequest(http.MethodGet, Path+tc.query, nil)
			req.TLS = tc.tls
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("poll: %d", rec.Code)
			}
			edges := srv.Edges()
			if len(edges) != 1 || edges[0].Name != tc.want {
				t.Errorf("edges %+v; want one named %q", edges, tc.want)
			}
		})
	}

	// Over the feed's mutual TLS, without the parameter: the client
	// certificate's CN ("interlock", testenv's).
	_, k := newPKI(t)
	u := serve(t, srv, k.server)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: k.client}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(u + Path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if edges := srv.Edges(); len(edges) != 1 || edges[0].Name != "interlock" {
		t.Errorf("edges %+v; want the certificate's CN, interlock", edges)
	}
}

// TestEdgeStateOf: Current and Connected from a record.
func TestEdgeStateOf(t *testing.T) {
	srv := NewServer(ServerOptions{Logger: quiet})
	if err := srv.Apply(context.Background(), table("a.example")); err != nil {
		t.Fatal(err)
	}
	live := srv.Stats().Version
	now := time.Now()
	for _, tc := range []struct {
		name               string
		rec                edgeRecord
		current, connected bool
	}{
		{name: "held", rec: edgeRecord{EdgeState: EdgeState{Version: live, LastSeen: now.Add(-time.Hour)}, holding: 1}, current: true, connected: true},
		{name: "just answered", rec: edgeRecord{EdgeState: EdgeState{Version: live, LastSeen: now.Add(-time.Second)}}, current: true, connected: true},
		{name: "gone", rec: edgeRecord{EdgeState: EdgeState{Version: live, LastSeen: now.Add(-time.Minute)}}, current: true},
		{name: "older version", rec: edgeRecord{EdgeState: EdgeState{Version: "old", LastSeen: now}, holding: 1}, connected: true},
		{name: "no version yet", rec: edgeRecord{EdgeState: EdgeState{LastSeen: now}}, connected: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.mu.Lock()
			st := srv.stateOf(&tc.rec)
			srv.mu.Unlock()
			if st.Current != tc.current || st.Connected != tc.connected {
				t.Errorf("state %+v; want current=%v connected=%v", st, tc.current, tc.connected)
			}
		})
	}
	// No version on either side is not current.
	empty := NewServer(ServerOptions{Logger: quiet})
	if st := empty.stateOf(&edgeRecord{}); st.Current {
		t.Errorf("an edge without a version of a server without one is current: %+v", st)
	}
}
