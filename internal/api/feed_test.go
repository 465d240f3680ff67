package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

func table(hosts ...routing.Host) routing.Table {
	t := routing.Table{Hosts: hosts}
	t.Normalize()
	return t
}

func hostWith(name string, addrs ...string) routing.Host {
	r := routing.Route{Path: "/"}
	for _, a := range addrs {
		r.Backends = append(r.Backends, routing.Backend{Address: a, Name: "c-" + a})
	}
	return routing.Host{Name: name, Routes: []routing.Route{r}}
}

func kinds(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Kind+" "+e.Host+" "+e.Address)
	}
	return out
}

// apply feeds f the way the controller does: Built, then Applied.
func apply(f *Feed, t routing.Table, problems ...routing.Problem) {
	f.Built(t, problems)
	f.Applied("builtin", time.Microsecond, nil, time.Millisecond)
}

func TestFeedReportsTableChanges(t *testing.T) {
	f := NewFeed()
	apply(f, table(hostWith("a.example", "127.0.0.1:1")))
	apply(f, table(hostWith("a.example", "127.0.0.1:1", "127.0.0.1:2"), hostWith("b.example", "127.0.0.1:3")))
	apply(f, table(hostWith("b.example", "127.0.0.1:3")))

	got := kinds(f.Recent(0))
	want := []string{
		"table_changed  ", "host_added a.example ", "backend_added a.example 127.0.0.1:1",
		"backend_added a.example 127.0.0.1:2", "host_added b.example ", "backend_added b.example 127.0.0.1:3",
		"backend_removed a.example 127.0.0.1:1", "backend_removed a.example 127.0.0.1:2", "host_removed a.example ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	last := f.Recent(0)[len(want)-1]
	if last.Hash != table(hostWith("b.example", "127.0.0.1:3")).Hash() {
		t.Errorf("event hash %q is not the live table's", last.Hash)
	}
	if e := f.Recent(0)[2]; !strings.Contains(e.Message, "127.0.0.1:1 (c-127.0.0.1:1)") || e.ID != 3 {
		t.Errorf("backend event = %+v, want the address and container named, ID 3", e)
	}
	if e := f.Recent(0)[0]; e.Message != "first routing table live: 1 host, 1 backend" {
		t.Errorf("first event %q", e.Message)
	}

	t.Run("settings-only change", func(t *testing.T) {
		h := hostWith("b.example", "127.0.0.1:3")
		h.Routes[0].Balance = routing.LeastConn
		apply(f, table(h))
		if e := f.Recent(0); e[len(e)-1].Kind != KindTableChanged {
			t.Errorf("last event %+v, want table_changed", e[len(e)-1])
		}
	})
	t.Run("failed apply", func(t *testing.T) {
		f.Built(table(), nil)
		f.Applied("nginx", time.Second, errors.New("nginx -t: bad"), 0)
		e := f.Recent(0)
		if last := e[len(e)-1]; last.Kind != KindApplyFailed || last.Level != LevelError || !strings.Contains(last.Message, "nginx -t: bad") {
			t.Errorf("last event %+v, want apply_failed with the error", last)
		}
		// The failed table never went live: the next success diffs from b.example.
		apply(f, table(hostWith("b.example", "127.0.0.1:3"), hostWith("c.example", "127.0.0.1:4")))
		if k := kinds(f.Recent(e[len(e)-1].ID)); !slices.Equal(k, []string{"host_added c.example ", "backend_added c.example 127.0.0.1:4"}) {
			t.Errorf("after a failed apply: %v", k)
		}
	})
}

func TestFeedCapsOneApply(t *testing.T) {
	f := NewFeed()
	var hosts []routing.Host
	for i := range 100 {
		hosts = append(hosts, hostWith(fmt.Sprintf("h%03d.example", i), fmt.Sprintf("127.0.0.1:%d", 1000+i)))
	}
	apply(f, table(hosts...))
	e := f.Recent(0)
	if len(e) != perApply+2 || e[perApply+1].Kind != KindTableChanged || !strings.Contains(e[perApply+1].Message, "175 more") {
		t.Errorf("%d events, last %+v; want the first-table event, %d changes and a summary", len(e), e[len(e)-1], perApply)
	}
}

func TestFeedReportsLeftOut(t *testing.T) {
	f := NewFeed()
	bad := routing.Problem{Kind: "container", ID: "abc", Name: "bad", Label: "interlock.port", Reason: routing.ReasonInvalidLabel, Message: "not a port"}
	f.Built(table(), []routing.Problem{bad})
	f.Built(table(), []routing.Problem{bad}) // unchanged: nothing new
	f.Built(table(), nil)
	got := f.Recent(0)
	if len(got) != 2 || got[0].Kind != KindLeftOut || got[0].Level != LevelWarn || got[1].Kind != KindLeftOutCleared || got[0].Name != "bad" {
		t.Fatalf("events %+v, want left_out then left_out_cleared", got)
	}
	if !strings.Contains(got[0].Message, "interlock.port") {
		t.Errorf("left_out message %q does not name the label", got[0].Message)
	}
}

func TestFeedRing(t *testing.T) {
	f := NewFeed()
	for i := range FeedSize + 10 {
		f.Publish(Event{Kind: KindLifecycle, Message: fmt.Sprint(i)})
	}
	e := f.Recent(0)
	if len(e) != FeedSize || e[0].ID != 11 || e[len(e)-1].ID != FeedSize+10 {
		t.Errorf("ring holds %d events, %d..%d; want the newest %d", len(e), e[0].ID, e[len(e)-1].ID, FeedSize)
	}
	if r := f.Recent(FeedSize + 5); len(r) != 5 {
		t.Errorf("Recent(after) = %d events, want 5", len(r))
	}
}

type dockerSeq struct {
	mu sync.Mutex
	st docker.Status
}

func (d *dockerSeq) Status() docker.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

func (d *dockerSeq) set(st docker.Status) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st = st
}

func TestFeedWatchDocker(t *testing.T) {
	f := NewFeed()
	d := &dockerSeq{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.WatchDocker(ctx, d, time.Millisecond) }()
	waitKinds := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var got []string
			for _, e := range f.Recent(0) {
				got = append(got, e.Kind)
			}
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("events %v, want %v", got, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	d.set(docker.Status{Connected: true, APIVersion: "1.41", Since: time.Now()})
	waitKinds(KindDockerConnected)
	d.set(docker.Status{LastError: "EOF", Since: time.Now()})
	waitKinds(KindDockerConnected, KindDockerDisconnected)
	cancel()
	<-done
}

// stream reads SSE events from url until n data lines arrived.
func stream(t *testing.T, req *http.Request, n int) []Event {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	var out []Event
	sc := bufio.NewScanner(res.Body)
	id := ""
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			var e Event
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				t.Fatalf("data %q: %v", v, err)
			}
			if fmt.Sprint(e.ID) != id {
				t.Errorf("id line %q for event %d", id, e.ID)
			}
			out = append(out, e)
		}
	}
	if len(out) < n {
		t.Fatalf("stream ended after %d events (%v), want %d", len(out), sc.Err(), n)
	}
	return out
}

func TestEventStream(t *testing.T) {
	f := NewFeed()
	s := New(fakeController{}, fakeDocker{}, "test", nil, WithFeed(f))
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	for i := range 3 {
		f.Publish(Event{Kind: KindLifecycle, Message: fmt.Sprint("old ", i)})
	}

	t.Run("backlog then live", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/events", nil)
		go func() {
			for f.subscribers() == 0 {
				time.Sleep(time.Millisecond)
			}
			f.Publish(Event{Kind: KindLifecycle, Message: "new"})
		}()
		got := stream(t, req, 4)
		if got[0].Message != "old 0" || got[3].Message != "new" {
			t.Errorf("events %+v", got)
		}
	})
	t.Run("resume after Last-Event-ID", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/events?after=1", nil)
		req.Header.Set("Last-Event-ID", "3")
		if got := stream(t, req, 1); got[0].ID != 4 {
			t.Errorf("resumed at %d, want 4", got[0].ID)
		}
	})
	t.Run("an ID from another process gets everything", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/events?after=99999", nil)
		if got := stream(t, req, 1); got[0].ID != 1 {
			t.Errorf("started at %d, want 1", got[0].ID)
		}
	})
	t.Run("a slow subscriber is dropped, never blocks", func(t *testing.T) {
		_, sub, _ := f.subscribe(0)
		for range subscriberBuffer + 10 {
			f.Publish(Event{Kind: KindLifecycle, Message: "flood"})
		}
		n := 0
		for range sub.ch {
			n++
		}
		if n != subscriberBuffer {
			t.Errorf("slow subscriber got %d events before being dropped, want %d", n, subscriberBuffer)
		}
	})
	t.Run("close ends streams", func(t *testing.T) {
		res, err := http.Get(srv.URL + "/api/events")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		for f.subscribers() == 0 {
			time.Sleep(time.Millisecond)
		}
		s.CloseStreams()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for sc := bufio.NewScanner(res.Body); sc.Scan(); {
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("stream still open after CloseStreams")
		}
		if code, _ := serve(t, s, "/api/events"); code != http.StatusServiceUnavailable {
			t.Errorf("new stream after close = %d, want 503", code)
		}
	})
}

func TestEventsWithoutFeed(t *testing.T) {
	s := New(fakeController{}, fakeDocker{}, "test", nil)
	if code, _ := serve(t, s, "/api/events"); code != http.StatusNotFound {
		t.Errorf("GET /api/events without a feed = %d, want 404", code)
	}
}
