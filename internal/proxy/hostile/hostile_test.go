// Package hostile_test runs a fixed corpus of hostile labels through
// discovery and into every driver, with the real nginx and haproxy: each
// hostile container is left out with a reason, the files the drivers put
// live pass nginx -t and haproxy -c and hold none of the injected text,
// and the well-formed containers beside them keep being served.
package hostile_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/discovery"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/proxy/haproxy"
	"github.com/interlock-proxy/interlock/internal/proxy/nginx"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// marker is in every injected directive, so a file that holds it holds
// an injection.
const marker = "pwned"

// hostile is the corpus: one label value each, meant to break out of the
// value into the proxy's configuration, next to the label it targets. The
// good labels around it make the container otherwise routable.
var hostile = []struct{ name, label, value string }{
	{"semicolon", "interlock.hostname", "x; return 200 " + marker},
	{"brace", "interlock.hostname", "x } server { listen 81; return 200 " + marker + "; }"},
	{"newline", "interlock.hostname", "x\n    return 200 " + marker + ";"},
	{"carriage return", "interlock.domain", "example.test\r\nacl " + marker + " always_true"},
	{"hash", "interlock.hostname", "x#" + marker},
	{"single quote", "interlock.context_root", "/a' " + marker + " '"},
	{"double quote", "interlock.context_root", `/a" ` + marker + ` "`},
	{"nul", "interlock.hostname", "x\x00" + marker},
	{"very long", "interlock.hostname", strings.Repeat("a", 70) + marker},
	{"very long domain", "interlock.domain", strings.Repeat("b.", 130) + marker},
	{"unicode look-alike", "interlock.hostname", "аpp" + marker}, // Cyrillic а
	{"fullwidth dot", "interlock.domain", "example．test" + marker},
	{"variable", "interlock.context_root", "/$host/" + marker},
	{"haproxy variable", "interlock.context_root", "/%[src]/" + marker},
	{"template", "interlock.hostname", "{{.Hosts}}" + marker},
	{"alias directive", "interlock.alias_domain", "ok.test;" + marker},
	{"websocket newline", "interlock.websocket_endpoint", "/ws\nproxy_pass http://" + marker},
	{"health check", "interlock.health_check", "/h\n    option " + marker},
	{"health interval", "interlock.health_check_interval", "1s; " + marker},
	{"balance", "interlock.balance_algorithm", "roundrobin\n    server " + marker + " 1.2.3.4:80"},
	{"backend option", "interlock.backend_option", "forwardfor\n    " + marker},
	{"port", "interlock.port", "80;" + marker},
	{"protocol", "interlock.protocol", "tcp\nmode " + marker},
	{"cert traversal", "interlock.ssl_cert", "../../etc/" + marker + ".pem"},
	{"cert absolute", "interlock.ssl_cert", "/etc/ssl/" + marker + ".pem"},
	{"cert newline", "interlock.ssl_cert", "a.pem\nssl_certificate /tmp/" + marker},
	{"ssl boolean", "interlock.ssl", "yes; " + marker},
	{"rewrite boolean", "interlock.context_root_rewrite", "true " + marker},
}

func hostileSnapshot(t *testing.T, goodPorts []uint16) (docker.Snapshot, map[string]string) {
	t.Helper()
	var snap docker.Snapshot
	wantLeftOut := map[string]string{} // container ID -> label
	port := func(p uint16) []docker.Port {
		return []docker.Port{{Private: 8000, Proto: "tcp", HostIP: "0.0.0.0", Public: p}}
	}
	for i, p := range goodPorts {
		snap.Containers = append(snap.Containers, docker.Container{
			ID: fmt.Sprintf("good%02d", i), Name: fmt.Sprintf("good%d", i), State: "running", Ports: port(p),
			Created: time.Unix(int64(i), 0),
			Labels:  map[string]string{"interlock.hostname": fmt.Sprintf("good%d", i), "interlock.domain": "example.test"},
		})
	}
	for i, h := range hostile {
		labels := map[string]string{"interlock.hostname": fmt.Sprintf("bad%d", i), "interlock.domain": "example.test"}
		labels[h.label] = h.value
		id := fmt.Sprintf("bad%02d", i)
		snap.Containers = append(snap.Containers, docker.Container{
			ID: id, Name: "bad-" + strings.ReplaceAll(h.name, " ", "-"), State: "running", Ports: port(goodPorts[0]),
			Created: time.Unix(int64(100+i), 0), Labels: labels,
		})
		wantLeftOut[id] = h.label
	}
	return snap, wantLeftOut
}

// driver is what the test needs of each one.
type driver interface {
	Apply(ctx context.Context, t routing.Table) error
}

func freeAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

func TestHostileLabels(t *testing.T) {
	const goods = 3
	var ports []uint16
	for i := range goods {
		name := fmt.Sprintf("good%d", i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		ports = append(ports, uint16(srv.Listener.Addr().(*net.TCPAddr).Port))
	}
	snap, wantLeftOut := hostileSnapshot(t, ports)
	table, problems := discovery.Build(snap, discovery.Options{BackendAddress: "127.0.0.1"})
	for _, p := range problems {
		if label, ok := wantLeftOut[p.ID]; ok && p.Reason == routing.ReasonInvalidLabel && p.Message != "" {
			if p.Label != label {
				t.Errorf("container %s left out for %s, want %s", p.Name, p.Label, label)
			}
			delete(wantLeftOut, p.ID)
		}
	}
	for id, label := range wantLeftOut {
		t.Errorf("container %s with a hostile %s was not left out as invalid", id, label)
	}
	if len(table.Hosts) != goods {
		t.Fatalf("table has %d hosts, want the %d good ones: %+v", len(table.Hosts), goods, table.Hosts)
	}

	nginxBin, haproxyBin := testenv.NginxBinary(t), testenv.HAProxyBinary(t)
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, http string) (driver, func() string)
	}{
		{"builtin", func(t *testing.T, addr string) (driver, func() string) {
			p := builtin.New(builtin.Options{})
			t.Cleanup(func() { p.Close() })
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return p, func() string { return "" }
		}},
		{"nginx", func(t *testing.T, addr string) (driver, func() string) {
			state := t.TempDir()
			d, err := nginx.New(nginx.Options{HTTPAddr: addr, HTTPSAddr: freeAddr(t), CertDir: t.TempDir(),
				StateDir: state, Binary: nginxBin, Mode: nginx.Supervise})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close(context.Background()) })
			return d, func() string { return readFile(t, filepath.Join(state, "nginx.conf")) }
		}},
		{"haproxy", func(t *testing.T, addr string) (driver, func() string) {
			state, err := os.MkdirTemp("", "hh") // short: socket paths live there
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(state) })
			d, err := haproxy.New(haproxy.Options{HTTPAddr: addr, HTTPSAddr: freeAddr(t), CertDir: t.TempDir(),
				StateDir: state, Binary: haproxyBin, Mode: haproxy.Supervise})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close(context.Background()) })
			return d, func() string { return readFile(t, filepath.Join(state, "haproxy.cfg")) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			d, live := tc.build(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// The driver validates with the real binary before the file
			// goes live: an error here is a file nginx or haproxy refused.
			if err := d.Apply(ctx, table); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if conf := live(); strings.Contains(conf, marker) {
				i := strings.Index(conf, marker)
				t.Errorf("the live file holds injected text near %q", conf[max(0, i-80):min(len(conf), i+40)])
			}
			client := &http.Client{Timeout: 5 * time.Second}
			for i := range goods {
				host := fmt.Sprintf("good%d.example.test", i)
				testenv.WaitFor(t, 10*time.Second, host+" served", func() error {
					req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
					req.Host = host
					res, err := client.Do(req)
					if err != nil {
						return err
					}
					defer res.Body.Close()
					b, _ := io.ReadAll(res.Body)
					if res.StatusCode != 200 || string(b) != fmt.Sprintf("good%d", i) {
						return fmt.Errorf("%d %q", res.StatusCode, b)
					}
					return nil
				})
			}
			// No hostile name answers: each was left out.
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			req.Host = "bad0.example.test"
			if res, err := client.Do(req); err == nil {
				res.Body.Close()
				if res.StatusCode != http.StatusNotFound {
					t.Errorf("a left-out host answers %d, want 404", res.StatusCode)
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
