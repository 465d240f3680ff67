package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// TestRouteLimitsFromLabels: per-route overrides from container labels,
// end to end through each driver: the labelled route refuses a body over
// its own limit (413) and gives up on a backend slower than its own
// response-header timeout (504), while another route of the same proxy,
// at the defaults, takes the same body and waits; a bad value leaves only
// its container out, named by its label.
func TestRouteLimitsFromLabels(t *testing.T) {
	e := needDocker(t)
	for _, driver := range []string{"builtin", "nginx", "haproxy"} {
		t.Run(driver, func(t *testing.T) {
			limited, open, bad := hostFor(t, "limited"), hostFor(t, "open"), hostFor(t, "bad")
			limitedLabels := labelsFor(limited, "interlock.max_body_bytes", "1KiB", "interlock.backend_response_header_timeout", "300ms")
			badLabels := labelsFor(bad, "interlock.max_body_bytes", "lots")
			var run func(name string, labels map[string]string)
			var args []string
			switch driver {
			case "builtin":
				run = func(name string, labels map[string]string) {
					e.Run(t, testenv.ContainerSpec{Name: name, PublishPort: 8000, Env: map[string]string{"NAME": name}, Labels: labels})
				}
			case "nginx":
				args = newNginxRun(t).args()
				run = func(name string, labels map[string]string) {
					e.Run(t, testenv.ContainerSpec{Name: name, PublishPort: 8000, Env: map[string]string{"NAME": name}, Labels: labels})
				}
			case "haproxy":
				h := newHAProxyRun(t, e)
				args = h.args()
				run = func(name string, labels map[string]string) { h.container(t, e, name, labels, nil) }
			}
			run("limited", limitedLabels)
			run("open", labelsFor(open))
			run("bad", badLabels)
			in := startInterlock(t, args...)
			in.waitStatus(t, limited, "/", http.StatusOK)
			in.waitStatus(t, open, "/", http.StatusOK)

			client := &http.Client{Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			do := func(method, host, path string, body []byte) (int, string) {
				t.Helper()
				req, err := http.NewRequest(method, in.proxy+path, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Host = host
				res, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s%s: %v", method, host, path, err)
				}
				defer res.Body.Close()
				io.Copy(io.Discard, res.Body)
				return res.StatusCode, res.Header.Get("X-Backend")
			}
			body := bytes.Repeat([]byte("x"), 4<<10)
			for _, tc := range []struct {
				name, method, host, path string
				body                     []byte
				code                     int
			}{
				{"a body over the route's limit", http.MethodPost, limited, "/upload", body, http.StatusRequestEntityTooLarge},
				{"the same body on a route at the defaults", http.MethodPost, open, "/upload", body, http.StatusOK},
				{"a body under the route's limit", http.MethodPost, limited, "/upload", body[:512], http.StatusOK},
				{"a backend slower than the route's timeout", http.MethodGet, limited, "/slow?d=2s", nil, http.StatusGatewayTimeout},
				{"the same backend on a route at the defaults", http.MethodGet, open, "/slow?d=2s", nil, http.StatusOK},
			} {
				if code, from := do(tc.method, tc.host, tc.path, tc.body); code != tc.code {
					t.Errorf("%s: %s %s%s answered %d (from %q), want %d", tc.name, tc.method, tc.host, tc.path, code, from, tc.code)
				}
			}

			testenv.WaitFor(t, 10*time.Second, "the bad label reported", func() error {
				for _, p := range in.routes(t).LeftOut {
					if p.Label == "interlock.max_body_bytes" && strings.Contains(p.Message, "lots") {
						return nil
					}
				}
				return fmt.Errorf("left out: %+v", in.routes(t).LeftOut)
			})
			for _, h := range in.routes(t).Hosts {
				if h.Name == bad {
					t.Errorf("%s has a bad label but is routed", bad)
				}
			}
		})
	}
}
