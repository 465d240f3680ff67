package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
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
