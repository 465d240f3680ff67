package discovery

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// epoch anchors container creation times in tests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// ctr returns a running container created `created` seconds after epoch,
// publishing private port 80 on 0.0.0.0:32768 and [::]:32768 (as Docker
// lists it) and attached to network "bridge" as 172.17.0.<n>.
func ctr(id string, created int, labels map[string]string) docker.Container {
	return docker.Container{
		ID:      id,
		Name:    "c-" + id,
		Created: epoch.Add(time.Duration(created) * time.Second),
		Labels:  labels,
		State:   "running",
		Ports: []docker.Port{
			{Private: 80, Proto: "tcp", HostIP: "0.0.0.0", Public: 32768},
			{Private: 80, Proto: "tcp", HostIP: "::", Public: 32768},
		},
		Networks: map[string]string{"bridge": "172.17.0.2"},
	}
}

// with returns base plus extra labels (extra wins).
func with(base map[string]string, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string)
	}
	maps.Copy(out, extra)
	return out
}

// appLabels is the smallest routed container: app.example.com.
func appLabels(extra map[string]string) map[string]string {
	return with(map[string]string{LabelHostname: "app", LabelDomain: "example.com"}, extra)
}

// wantProblem matches a routing.Problem by label, reason and a message
// substring.
type wantProblem struct {
	id     string // "" matches any
	label  string
	reason string
	msg    string
}

// checkProblems asserts that got matches want one to one, in order, and
// that every problem is well-formed.
func checkProblems(t *testing.T, got []routing.Problem, want []wantProblem) {
	t.Helper()
	for _, p := range got {
		if (p.Kind != "container" && p.Kind != "service") || p.ID == "" || p.Name == "" || p.Reason == "" || p.Message == "" {
			t.Errorf("malformed problem %+v", p)
		}
		if strings.ContainsAny(p.Message, "\n\r\x00") {
			t.Errorf("problem message has a control character: %q", p.Message)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), describe(got))
	}
	for i, w := range want {
		p := got[i]
		if (w.id != "" && p.ID != w.id) || p.Label != w.label || p.Reason != w.reason || !strings.Contains(p.Message, w.msg) {
			t.Errorf("problem %d = %+v\nwant id=%q label=%q reason=%q message containing %q", i, p, w.id, w.label, w.reason, w.msg)
		}
	}
}

func describe(ps []routing.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.ID + " " + p.Error() + " [" + p.Reason + "]\n")
	}
	return b.String()
}

// checkTable asserts that got equals want once want is normalized.
func checkTable(t *testing.T, got, want routing.Table) {
	t.Helper()
	want.Normalize()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table mismatch\n got: %+v\nwant: %+v", got, want)
	}
}

// backend is the Backend of ctr(id, ...) reached at addr.
func backend(id, addr string) routing.Backend {
	return routing.Backend{Address: addr, Container: id, Name: "c-" + id}
}

// defaultRoute is the route "/" of a container with no route labels.
func defaultRoute(backends ...routing.Backend) routing.Route {
	return routing.Route{Path: "/", Protocol: routing.HTTP, Balance: routing.RoundRobin, Backends: backends}
}
