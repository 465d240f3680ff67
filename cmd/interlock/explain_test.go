package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestExplainCommand asks a running Interlock about real containers:
// one routed, one whose typo keeps it out of routing altogether (no
// problem is listed for it anywhere else), and a name nobody has.
func TestExplainCommand(t *testing.T) {
	e := needDocker(t)
	in := startInterlock(t)
	host := hostFor(t, "explained")
	routed := e.Run(t, testenv.ContainerSpec{Name: "explained", PublishPort: 8000, Env: map[string]string{"NAME": "explained"}, Labels: labelsFor(host)})
	typo := e.Run(t, testenv.ContainerSpec{Name: "typo", PublishPort: 8000, Labels: map[string]string{"interlock.hostnmae": hostFor(t, "typo")}})
	in.waitStatus(t, host, "/", http.StatusOK)
	api := strings.TrimPrefix(in.api, "http://")
	explain := func(name string) (int, string) {
		var out, errOut bytes.Buffer
		code := realMain(context.Background(), []string{"explain", "--api-addr", api, name}, nil, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	for _, tc := range []struct {
		name string
		code int
		want []string
	}{
		{routed.Name, 0, []string{"container " + routed.Name, "routed: " + host, "interlock.hostname=" + host, "backs " + host + "/ through 127.0.0.1:", "host " + host}},
		{host, 0, []string{"container " + routed.Name, "host " + host, "the table with this is live since"}},
		{typo.Name, 0, []string{"container " + typo.Name, "not routed", "interlock.hostnmae: unknown label (did you mean interlock.hostname?)"}},
		{"nobody-" + env.RunID, 1, []string{`nothing named "nobody-`}},
	} {
		// Until the snapshot has every container of the test.
		testenv.WaitFor(t, 10*time.Second, "explain "+tc.name, func() error {
			code, out := explain(tc.name)
			if code != tc.code {
				return fmt.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					return fmt.Errorf("no %q in\n%s", w, out)
				}
			}
			return nil
		})
	}
	var out bytes.Buffer
	if code := realMain(context.Background(), []string{"explain", "--api-addr", "127.0.0.1:1", "x"}, nil, &out, &out); code != 1 || !strings.Contains(out.String(), "--api-addr") {
		t.Errorf("explain without an API: exit %d, %q; want 1 naming --api-addr", code, out.String())
	}
}

// TestExplainEdges asks a controller about a host: which of its edges
// serve it, since when, and which do not yet. Edge e2 stops; it is shown
// as not connected, its last version kept.
func TestExplainEdges(t *testing.T) {
	e := needDocker(t)
	p := testenv.NewPKI(t)
	host := hostFor(t, "fed")
	e.Run(t, testenv.ContainerSpec{Name: "fed", PublishPort: 8000, Env: map[string]string{"NAME": "fed"}, Labels: labelsFor(host)})
	url, ctl, _ := startController(t, p)
	e1, _ := startEdge(t, p, t.TempDir(), url)
	e2, stopE2 := startStoppable(t, append([]string{"--role", "edge", "--controllers", url, "--state-dir", t.TempDir(), "--edge-name", "e2",
		"--https-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}, feedArgs(p, false)...)...)
	e1.waitStatus(t, host, "/", http.StatusOK)
	e2.waitStatus(t, host, "/", http.StatusOK)
	api := strings.TrimPrefix(ctl.api, "http://")
	explain := func(name string) string {
		var out bytes.Buffer
		if code := realMain(context.Background(), []string{"explain", "--api-addr", api, name}, nil, &out, &out); code != 0 {
			t.Fatalf("explain %s: exit %d\n%s", name, code, out.String())
		}
		return out.String()
	}
	hostname, _ := os.Hostname()
	testenv.WaitFor(t, 10*time.Second, "both edges serve "+host, func() error {
		out := explain(host)
		for _, want := range []string{
			"edge " + hostname + " (127.0.0.1:", "edge e2 (127.0.0.1:",
			"connected): serves " + host + " since ", ", on the live version",
		} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("no %q in\n%s", want, out)
			}
		}
		if strings.Count(out, "serves "+host+" since") != 2 {
			return fmt.Errorf("want two edges serving in\n%s", out)
		}
		return nil
	})
	// The edges' metrics are the feed's, not Docker's; the controller
	// counts them.
	m := e1.scrape(t)
	if v, ok := sample(m, "interlock_edge_following", nil); !ok || v != 1 {
		t.Errorf("edge: interlock_edge_following = %v (found %v), want 1", v, ok)
	}
	if v, ok := sample(m, "interlock_edge_updates_total", nil); !ok || v < 1 {
		t.Errorf("edge: interlock_edge_updates_total = %v (found %v), want at least 1", v, ok)
	}
	if _, ok := sample(m, "interlock_docker_connected", nil); ok {
		t.Error("edge exports interlock_docker_connected; it has no Docker connection")
	}
	if v, ok := sample(ctl.scrape(t), "interlock_feed_edges_connected", nil); !ok || v != 2 {
		t.Errorf("controller: interlock_feed_edges_connected = %v (found %v), want 2", v, ok)
	}
	stopE2()
	testenv.WaitFor(t, 15*time.Second, "e2 shown as gone", func() error {
		out := explain(host)
		if !strings.Contains(out, "edge e2 (127.0.0.1:") || !strings.Contains(out, "not connected): serves "+host) {
			return fmt.Errorf("e2 not shown as not connected in\n%s", out)
		}
		return nil
	})
	// A new host: e1 gets it, e2 (stopped) does not.
	later := hostFor(t, "later")
	e.Run(t, testenv.ContainerSpec{Name: "later", PublishPort: 8000, Env: map[string]string{"NAME": "later"}, Labels: labelsFor(later)})
	e1.waitStatus(t, later, "/", http.StatusOK)
	testenv.WaitFor(t, 10*time.Second, "e1 serves "+later+", e2 does not", func() error {
		out := explain(later)
		if !strings.Contains(out, "edge "+hostname+" (127.0.0.1:") || !strings.Contains(out, "connected): serves "+later) ||
			!strings.Contains(out, "edge e2 (127.0.0.1:") || !strings.Contains(out, "not connected): does not serve "+later+" yet, on version") {
			return fmt.Errorf("unexpected:\n%s", out)
		}
		return nil
	})
	var js bytes.Buffer
	if code := realMain(context.Background(), []string{"explain", "--json", "--api-addr", api, host}, nil, &js, &js); code != 0 || !strings.Contains(js.String(), `"edges": {`) {
		t.Errorf("explain --json: exit %d, no edges in %s", code, js.String())
	}
}
