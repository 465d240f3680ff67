package api

import (
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
)

func TestExplain(t *testing.T) {
	port := func(p uint16) []docker.Port {
		return []docker.Port{{Private: 80, Proto: "tcp", HostIP: "0.0.0.0", Public: p}}
	}
	snap := docker.Snapshot{Containers: []docker.Container{
		{ID: "aaaa1111", Name: "web", State: "running", Labels: map[string]string{"interlock.hostname": "web.example.com", "other": "x"}, Ports: port(30001)},
		{ID: "bbbb2222", Name: "typo", State: "running", Labels: map[string]string{"interlock.hostnmae": "typo.example.com"}, Ports: port(30002)},
		{ID: "cccc3333", Name: "plain", State: "running", Labels: map[string]string{"maintainer": "me"}, Ports: port(30003)},
		{ID: "dddd4444", Name: "sleeping", State: "exited", Labels: map[string]string{"interlock.hostname": "sleep.example.com"}, Ports: port(30004)},
		{ID: "eeee5555", Name: "web-2", State: "running", Labels: map[string]string{"interlock.hostname": "web.example.com"}, Ports: port(30005)},
	}}
	table, problems := discovery.Build(snap, discovery.Options{BackendAddress: "127.0.0.1"})
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		q       string
		objects []string // names, in order
		hosts   []string
		verdict []string // a part of each object's verdict
	}{
		{q: "web", objects: []string{"web"}, hosts: []string{"web.example.com"}, verdict: []string{"routed: web.example.com"}},
		{q: "aaaa", objects: []string{"web"}, hosts: []string{"web.example.com"}, verdict: []string{"routed"}},
		{q: "web.example.com", objects: []string{"web", "web-2"}, hosts: []string{"web.example.com"}, verdict: []string{"routed", "routed"}},
		{q: "WEB.example.com.", objects: []string{"web", "web-2"}, hosts: []string{"web.example.com"}, verdict: []string{"routed", "routed"}},
		{q: "typo", objects: []string{"typo"}, verdict: []string{"interlock.hostnmae: unknown label (did you mean interlock.hostname?)"}},
		{q: "plain", objects: []string{"plain"}, verdict: []string{"no label Interlock reads"}},
		{q: "sleeping", objects: []string{"sleeping"}, verdict: []string{"not running and healthy (exited)"}},
		{q: "nothing.example.com"},
		{q: "aa"}, // too short for an ID prefix
	} {
		t.Run(tc.q, func(t *testing.T) {
			ex := Explain(tc.q, snap, table, problems, true, at)
			var names []string
			for _, o := range ex.Objects {
				names = append(names, o.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.objects, ",") {
				t.Errorf("objects %v, want %v", names, tc.objects)
			}
			var hosts []string
			for _, h := range ex.Hosts {
				hosts = append(hosts, h.Name)
			}
			if strings.Join(hosts, ",") != strings.Join(tc.hosts, ",") {
				t.Errorf("hosts %v, want %v", hosts, tc.hosts)
			}
			for i, want := range tc.verdict {
				obj := ex.Objects[min(i, len(ex.Objects)-1)]
				if !strings.Contains(obj.Verdict+" "+strings.Join(problemLabels(obj), " "), want) {
					t.Errorf("%s: verdict %q (problems %v), want it to say %q", obj.Name, obj.Verdict, obj.Problems, want)
				}
			}
			for _, o := range ex.Objects {
				if _, ok := o.Labels["other"]; ok {
					t.Errorf("%s: labels %v include one Interlock does not read", o.Name, o.Labels)
				}
			}
			if !ex.Applied || !ex.AppliedAt.Equal(at) {
				t.Errorf("applied %v at %v", ex.Applied, ex.AppliedAt)
			}
		})
	}
}

func problemLabels(o ExplainedObject) []string {
	var out []string
	for _, p := range o.Problems {
		out = append(out, p.Label)
	}
	return out
}
