package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// serving checks that the first table still serves: web.test answers from
// a, and other.test is unknown.
func serving(t *testing.T, r *rig, a *backend) {
	t.Helper()
	if _, body, _ := get(t, r.http, "web.test", "/"); !strings.HasPrefix(body, a.name+" ") {
		t.Fatalf("web.test answered %q; the old configuration should still serve", body)
	}
	if code, _, _ := get(t, r.http, "other.test", "/"); code != 404 {
		t.Fatalf("other.test answered %d; the rejected table should not be live", code)
	}
}

func twoHosts(a, b *backend) routing.Table {
	return table(
		routing.Host{Name: "web.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
		routing.Host{Name: "other.test", Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{b.rb()}}}},
	)
}

func TestBrokenTemplateKeepsOldConfig(t *testing.T) {
	cases := []struct {
		name, inject string
		want         []string // substrings of the error
	}{
		{name: "haproxy rejects it", inject: "{{if gt (len .Hosts) 1}}    no-such-directive on\n{{end}}",
			want: []string{"haproxy -c rejected", "no-such-directive", "previous one keeps serving"}},
		{name: "template fails", inject: "{{if gt (len .Hosts) 1}}{{index .Hosts 7}}{{end}}",
			want: []string{"haproxy template", "index out of range"}},
		{name: "helper refuses", inject: "{{if gt (len .Hosts) 1}}    # {{word \"a b\"}}\n{{end}}",
			want: []string{"word:", "needs quoting"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := strings.Replace(DefaultTemplate, "\ndefaults\n", "\n"+c.inject+"\ndefaults\n", 1)
			tmpl, err := ParseTemplate("broken", text)
			if err != nil {
				t.Fatal(err)
			}
			r := newRig(t, func(o *Options) { o.Template = tmpl })
			a, b := newBackend(t, "a"), newBackend(t, "b")
			r.apply(t, webTable(routing.RoundRobin, nil, a))
			before, err := os.ReadFile(r.d.opts.ConfigPath)
			if err != nil {
				t.Fatal(err)
			}
			err = r.d.Apply(context.Background(), twoHosts(a, b))
			if err == nil {
				t.Fatal("apply succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			serving(t, r, a)
			after, _ := os.ReadFile(r.d.opts.ConfigPath)
			if !bytes.Equal(before, after) {
				t.Error("the live file changed")
			}
			if s := r.d.Stats(); s.Failures != 1 || s.LastError == "" || s.Reloads != 0 {
				t.Errorf("stats %+v: want one failure, no reload", s)
			}
			var ve *ValidationError
			if errors.As(err, &ve) && !strings.HasSuffix(ve.File, ".candidate") {
				t.Errorf("rejected file %s, want the candidate", ve.File)
			}
		})
	}
}

func TestBadValuesKeepOldConfig(t *testing.T) {
	r := newRig(t, nil)
	a, b := newBackend(t, "a"), newBackend(t, "b")
	r.apply(t, webTable(routing.RoundRobin, nil, a))
	cases := []struct {
		name   string
		change func(*routing.Table)
		want   string
	}{
		{name: "host name", change: func(t *routing.Table) { t.Hosts[0].Name = "other.test\n    bogus" }, want: "not a lowercase host name"},
		{name: "alias", change: func(t *routing.Table) { t.Hosts[0].Aliases = []string{"a b"} }, want: "not a lowercase host name"},
		{name: "path", change: func(t *routing.Table) { t.Hosts[0].Routes[0].Path = "/x' if TRUE" }, want: "outside the path grammar"},
		{name: "path escape", change: func(t *routing.Table) { t.Hosts[0].Routes[0].Path = "/%0A" }, want: "must not be escaped"},
		{name: "address", change: func(t *routing.Table) { t.Hosts[0].Routes[0].Backends[0].Address = "127.0.0.1:0" }, want: "port must be 1-65535"},
		{name: "address host", change: func(t *routing.Table) { t.Hosts[0].Routes[0].Backends[0].Address = "a;b:80" }, want: "neither an IP address"},
		{name: "option", change: func(t *routing.Table) { t.Hosts[0].Routes[0].BackendOptions = []string{"httpchk"} }, want: "not in the allow-list"},
		{name: "balance", change: func(t *routing.Table) { t.Hosts[0].Routes[0].Balance = "uri" }, want: "unknown balance algorithm"},
		{name: "protocol", change: func(t *routing.Table) { t.Hosts[0].Routes[0].Protocol = "udp" }, want: "unknown protocol"},
		{name: "health check", change: func(t *routing.Table) {
			t.Hosts[0].Routes[0].HealthCheck = &routing.HealthCheck{Path: "/h", Interval: time.Millisecond}
		}, want: "outside 100ms to 1h"},
		{name: "websocket", change: func(t *routing.Table) { t.Hosts[0].Routes[0].WebSocketPaths = []string{"ws"} }, want: "must start with /"},
		{name: "cert path", change: func(t *routing.Table) { t.Hosts[0].TLS = &routing.TLS{CertFile: "../x.pem", KeyFile: "k.pem"} }, want: "bad segment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := twoHosts(a, b)
			c.change(&tb)
			err := r.d.Apply(context.Background(), tb)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			serving(t, r, a)
		})
	}
	if s := r.d.Stats(); s.Reloads != 0 || s.Failures != int64(len(cases)) {
		t.Errorf("stats %+v", s)
	}
	// A good table after all that goes live.
	r.apply(t, twoHosts(a, b))
	if _, body, _ := get(t, r.http, "other.test", "/"); !strings.HasPrefix(body, "b ") {
		t.Fatalf("other.test answered %q", body)
	}
	if s := r.d.Stats(); s.LastError != "" || s.Reloads != 1 {
		t.Errorf("stats %+v after a good apply", s)
	}
}

func TestUnchangedTableDoesNothing(t *testing.T) {
	r := newRig(t, nil)
	a := newBackend(t, "a")
	r.apply(t, webTable(routing.RoundRobin, nil, a))
	info, _ := os.Stat(r.d.opts.ConfigPath)
	for range 3 {
		r.apply(t, webTable(routing.RoundRobin, nil, a))
	}
	again, _ := os.Stat(r.d.opts.ConfigPath)
	s := r.d.Stats()
	if s.Unchanged != 3 || s.Reloads != 0 || s.RuntimeApplies != 0 || s.RuntimeOps != 0 || !again.ModTime().Equal(info.ModTime()) {
		t.Errorf("stats %+v, file rewritten %v: want 3 unchanged applies and nothing done", s, !again.ModTime().Equal(info.ModTime()))
	}
}

func TestHostNameBackendFallsBackToReload(t *testing.T) {
	r := newRig(t, nil)
	a, b := newBackend(t, "a"), newBackend(t, "b")
	r.apply(t, webTable(routing.RoundRobin, nil, a))
	_, port, _ := strings.Cut(b.addr(), ":")
	tb := webTable(routing.RoundRobin, nil, a)
	tb.Hosts[0].Routes[0].Backends = []routing.Backend{{Address: "localhost:" + port, Name: "b"}}
	r.apply(t, tb)
	reached(t, r, b)
	if s := r.d.Stats(); s.RuntimeFallbacks != 1 || s.Reloads != 1 {
		t.Errorf("stats %+v: want one fallback to a reload", s)
	}
}

func TestRestartsHAProxyThatDies(t *testing.T) {
	r := newRig(t, nil)
	a, b := newBackend(t, "a"), newBackend(t, "b")
	r.apply(t, webTable(routing.RoundRobin, nil, a))
	r.apply(t, webTable(routing.RoundRobin, nil, a, b)) // a runtime change, in the file too
	p := proc(t, r)
	killGroupPid(t, p.MasterPID)
	waitFor(t, 10*time.Second, "haproxy restarted", func() error {
		if s := r.d.Stats(); s.Starts != 2 {
			return fmt.Errorf("starts %d", s.Starts)
		}
		_, err := r.d.Proc(context.Background())
		return err
	})
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		_, body, _ := get(t, r.http, "web.test", "/")
		name, _, _ := strings.Cut(body, " ")
		seen[name] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("after the restart answers came from %v; the file should list a and b", seen)
	}
	// The driver keeps working over the Runtime API of the new process.
	r.apply(t, webTable(routing.RoundRobin, nil, b))
	waitFor(t, 5*time.Second, "a drained", func() error {
		if s := r.d.Stats(); s.Draining != 0 {
			return fmt.Errorf("draining %d", s.Draining)
		}
		return nil
	})
}

func killGroupPid(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// Stopping Interlock while HAProxy re-executes itself for a reload must
// still stop it gracefully and promptly: the master loses a signal that
// arrives during the re-exec, so Close asks again.
func TestCloseDuringReloadIsPrompt(t *testing.T) {
	for _, after := range []time.Duration{60, 80, 100, 120, 150} {
		t.Run(fmt.Sprintf("%dms", after), func(t *testing.T) {
			r := newRig(t, nil)
			a := newBackend(t, "a")
			r.apply(t, webTable(routing.RoundRobin, nil, a))
			// A new host is a structural change: a reload.
			tb := webTable(routing.RoundRobin, nil, a)
			extra := tb.Hosts[0]
			extra.Name = "other.test"
			tb.Hosts = append(tb.Hosts, extra)
			tb.Normalize()
			ctx, cancel := context.WithTimeout(context.Background(), after*time.Millisecond)
			_ = r.d.Apply(ctx, tb) // cut short on purpose
			cancel()
			begin := time.Now()
			closeCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
			defer done()
			if err := r.d.Close(closeCtx); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(begin); took > 5*time.Second {
				t.Errorf("Close took %v during a reload, want a prompt graceful stop", took.Round(time.Millisecond))
			}
		})
	}
}
