package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// nginxRun is the state of one nginx-driving Interlock's files.
type nginxRun struct {
	stateDir, certDir string
	httpsAddr         string
}

// live is the nginx.conf Interlock writes.
func (n nginxRun) live() string { return filepath.Join(n.stateDir, "nginx", "nginx.conf") }

// newNginxRun makes a state and a certificate directory and picks the
// HTTPS port.
func newNginxRun(t *testing.T) nginxRun {
	t.Helper()
	testenv.NginxBinary(t)
	dir := t.TempDir()
	n := nginxRun{stateDir: filepath.Join(dir, "state"), certDir: filepath.Join(dir, "certs"),
		httpsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	if err := os.MkdirAll(n.certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n nginxRun) args(extra ...string) []string {
	return append([]string{"--proxy", "nginx", "--state-dir", n.stateDir, "--cert-dir", n.certDir,
		"--https-addr", n.httpsAddr, "--reload-quiet", "50ms"}, extra...)
}

// writeCert writes a self-signed certificate for name as dir/sub/cert.pem
// and key.pem.
func writeCert(t *testing.T, dir, sub, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, b := range map[string][]byte{
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(filepath.Join(dir, sub, file), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// status is the part of /api/status these tests read.
type status struct {
	Controller struct {
		Applied   bool  `json:"applied"`
		Applies   int64 `json:"applies"`
		Failures  int64 `json:"failures"`
		LastApply struct {
			Error string `json:"error"`
		} `json:"last_apply"`
	} `json:"controller"`
}

func (in *instance) status(t *testing.T) (status, string) {
	t.Helper()
	code, body, err := httpGet(in.api+"/api/status", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/status: %d %v %s", code, err, body)
	}
	var s status
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decode /api/status: %v\n%s", err, body)
	}
	return s, body
}

// TestNginxLocalRoutesLabels runs Interlock with a supervised local nginx
// and checks the label features end to end, the render command and a
// label crafted to break the config.
func TestNginxLocalRoutesLabels(t *testing.T) {
	e := needDocker(t)
	n := newNginxRun(t)
	web, alias, app := hostFor(t, "web"), hostFor(t, "alias"), hostFor(t, "app")
	secure, ws, bad := hostFor(t, "secure"), hostFor(t, "ws"), hostFor(t, "bad")
	writeCert(t, n.certDir, "secure", secure)

	webC := e.Run(t, testenv.ContainerSpec{Name: "web", Labels: labelsFor(web, "interlock.alias_domain", alias), PublishPort: 8000, Env: map[string]string{"NAME": "web"}})
	e.Run(t, testenv.ContainerSpec{Name: "app", Labels: labelsFor(app, "interlock.context_root", "/app", "interlock.context_root_rewrite", "true",
		"interlock.balance_algorithm", "leastconn"), PublishPort: 8000, Env: map[string]string{"NAME": "app"}})
	e.Run(t, testenv.ContainerSpec{Name: "secure", Labels: labelsFor(secure, "interlock.ssl_only", "true",
		"interlock.ssl_cert", "secure/cert.pem", "interlock.ssl_cert_key", "secure/key.pem"), PublishPort: 8000, Env: map[string]string{"NAME": "secure"}})
	e.Run(t, testenv.ContainerSpec{Name: "ws", Labels: labelsFor(ws, "interlock.websocket_endpoint", "/ws"), PublishPort: 8000})
	// A value that would end the location and add a directive of its own.
	e.Run(t, testenv.ContainerSpec{Name: "bad", Labels: labelsFor(bad, "interlock.context_root", `/x";return 200 "pwned`), PublishPort: 8000})

	in := startInterlock(t, n.args()...)
	r := in.waitStatus(t, web, "/", http.StatusOK)
	if r.backend != "web" {
		t.Errorf("web answered by %q", r.backend)
	}
	if r := in.waitStatus(t, alias, "/", http.StatusOK); r.backend != "web" {
		t.Errorf("alias answered by %q, want web", r.backend)
	}
	r = in.waitStatus(t, app, "/app/users", http.StatusOK)
	if r.backend != "app" || !strings.Contains(r.body, `"path":"/users"`) {
		t.Errorf("/app/users: %q %s; want app seeing /users (context_root_rewrite)", r.backend, r.body)
	}
	in.waitStatus(t, app, "/apps", http.StatusNotFound)

	// Headers: replaced, never appended (invariant 8).
	req, _ := http.NewRequest(http.MethodGet, in.proxy+"/", nil)
	req.Host = web
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "6.6.6.6") || !strings.Contains(string(body), `"X-Forwarded-Host":"`+web) || !strings.Contains(string(body), `"X-Forwarded-Proto":"http"`) {
		t.Errorf("forwarded headers: %s", body)
	}

	// ssl_only: plain HTTP is redirected, HTTPS serves with the labelled certificate.
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest(http.MethodGet, in.proxy+"/p?q=1", nil)
	req.Host = secure
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, httpsPort, _ := net.SplitHostPort(n.httpsAddr)
	if want := "https://" + secure + ":" + httpsPort + "/p?q=1"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Errorf("ssl_only GET over http: %d Location %q, want 301 %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		ServerName: secure, InsecureSkipVerify: true, //nolint:gosec // self-signed test certificate, checked by name below
	}}}
	req, _ = http.NewRequest(http.MethodGet, "https://"+n.httpsAddr+"/", nil)
	req.Host = secure
	resp, err = tlsClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != secure ||
		!strings.Contains(string(body), `"X-Forwarded-Proto":"https"`) {
		t.Errorf("https %s: %d, cert %v, body %s", secure, resp.StatusCode, resp.TLS != nil, body)
	}

	// WebSocket upgrade through nginx.
	conn, err := net.Dial("tcp", strings.TrimPrefix(in.proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	in.waitStatus(t, ws, "/", http.StatusOK)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", ws)
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket upgrade via nginx: %v %v", resp, err)
	}
	fmt.Fprint(conn, "ping over the tunnel\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping over the tunnel\n" {
		t.Fatalf("echo through the upgraded connection: %q %v", line, err)
	}

	// Unknown host: the default server.
	if r, _ := in.get(hostFor(t, "nobody"), "/"); r.code != http.StatusNotFound {
		t.Errorf("unknown host: %d", r.code)
	}

	// The bad label never reaches the file; its container is reported.
	routes := in.routes(t)
	leftOut := false
	for _, p := range routes.LeftOut {
		leftOut = leftOut || p.Label == "interlock.context_root" && strings.Contains(p.Name, "bad")
	}
	if !leftOut {
		t.Errorf("the bad container is not reported as left out: %+v", routes.LeftOut)
	}
	live, err := os.ReadFile(n.live())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(live, []byte("pwned")) || bytes.Contains(live, []byte(bad)) {
		t.Errorf("the bad label reached nginx.conf:\n%s", live)
	}

	// interlock render --proxy nginx prints exactly the live file. Other
	// test binaries share the engine, so the state may move between the
	// apply and the render: compare until both saw the same state.
	renderArgs := append([]string{"render", "--http-addr", strings.TrimPrefix(in.proxy, "http://")}, n.args()...)
	testenv.WaitFor(t, 20*time.Second, "render --proxy nginx equal to the live file", func() error {
		var out, errOut bytes.Buffer
		if code := realMain(context.Background(), renderArgs, []string{}, &out, &errOut); code != 0 {
			return fmt.Errorf("render exited %d: %s", code, errOut.String())
		}
		live, err := os.ReadFile(n.live())
		if err != nil {
			return err
		}
		if !bytes.Equal(out.Bytes(), live) {
			return fmt.Errorf("render differs from the live file:\n%s\n---- live:\n%s", out.Bytes(), live)
		}
		return nil
	})

	// A container that stops leaves nginx's configuration.
	if err := e.Stop(context.Background(), webC.ID); err != nil {
		t.Fatal(err)
	}
	in.waitStatus(t, web, "/", http.StatusNotFound)
}

// startExternalNginx starts nginx on conf as a daemon that writes its pid
// to pidFile (the rendered pid directive), as an init system would, and
// stops it when the test ends.
func startExternalNginx(t *testing.T, conf, pidFile string) {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(testenv.NginxBinary(t), "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out // a file: the daemon keeps its stderr
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("start nginx: %v\n%s", err, b)
	}
	t.Cleanup(func() {
		pid, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		var p int
		if _, err := fmt.Sscan(string(pid), &p); err == nil && p > 1 {
			_ = syscall.Kill(p, syscall.SIGQUIT)
		}
	})
}

// TestNginxBrokenTemplateKeepsServing drives an nginx started outside
// Interlock (--nginx-pid-file). A template that renders invalid nginx is
// refused by nginx -t: nginx's message shows in /api/status and the old
// configuration keeps serving. A template with a syntax error stops
// Interlock at start, with nginx untouched.
func TestNginxBrokenTemplateKeepsServing(t *testing.T) {
	e := needDocker(t)
	n := newNginxRun(t)
	pidFile := filepath.Join(t.TempDir(), "nginx.pid")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	host := hostFor(t, "stable")
	e.Run(t, testenv.ContainerSpec{Name: "stable", Labels: labelsFor(host), PublishPort: 8000})

	// The first configuration: rendered by interlock render, started by "init".
	var out, errOut bytes.Buffer
	args := append([]string{"render", "--http-addr", httpAddr}, n.args("--nginx-pid-file", pidFile)...)
	testenv.WaitFor(t, 15*time.Second, "render with the stable host", func() error {
		out.Reset()
		if code := realMain(context.Background(), args, []string{}, &out, &errOut); code != 0 {
			return fmt.Errorf("render exited %d: %s", code, errOut.String())
		}
		if !strings.Contains(out.String(), host) {
			return fmt.Errorf("host not rendered yet")
		}
		return nil
	})
	conf := filepath.Join(t.TempDir(), "nginx.conf")
	if err := os.MkdirAll(filepath.Join(n.stateDir, "nginx", "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	startExternalNginx(t, conf, pidFile)
	get := func() error {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/", nil)
		req.Host = host
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	testenv.WaitFor(t, 10*time.Second, "the external nginx serving", get)

	// A template that renders, but not valid nginx.
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.tmpl")
	if err := os.WriteFile(broken, []byte("events {}\nhttp {\n    this_is_not_nginx on;\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := startInterlockNotReady(t, httpAddr, n.args("--nginx-pid-file", pidFile, "--nginx-config", conf, "--template", broken)...)
	var body string
	testenv.WaitFor(t, 15*time.Second, "nginx -t's message in /api/status", func() error {
		var s status
		s, body = in.status(t)
		if !strings.Contains(s.Controller.LastApply.Error, `unknown directive "this_is_not_nginx"`) {
			return fmt.Errorf("last_apply.error = %q", s.Controller.LastApply.Error)
		}
		return nil
	})
	for range 20 {
		if err := get(); err != nil {
			t.Fatalf("the old configuration stopped serving: %v (status %s)", err, body)
		}
	}
	if now, _ := os.ReadFile(conf); !bytes.Equal(now, out.Bytes()) {
		t.Error("the live file changed though nginx -t rejected the candidate")
	}

	// A template that does not parse: run stops at start, nginx keeps serving.
	syntax := filepath.Join(dir, "syntax.tmpl")
	if err := os.WriteFile(syntax, []byte("{{range .Servers}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	runArgs := append([]string{"run", "--http-addr", httpAddr, "--api-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))},
		n.args("--nginx-pid-file", pidFile, "--nginx-config", conf, "--template", syntax)...)
	if code := realMain(context.Background(), runArgs, []string{}, io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "syntax.tmpl:2: unexpected EOF") {
		t.Errorf("run with a template syntax error: exit %d, %q; want 1 naming the file and line", code, errOut.String())
	}
	if err := get(); err != nil {
		t.Fatalf("nginx stopped serving after the syntax error: %v", err)
	}
}

// startInterlockNotReady is startInterlock for an Interlock that is not
// expected to get ready (its apply fails): it waits for the API only.
func startInterlockNotReady(t *testing.T, httpAddr string, args ...string) *instance {
	t.Helper()
	in := &instance{logs: &syncBuffer{}, done: make(chan int, 1)}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	in.proxy, in.api = "http://"+httpAddr, "http://"+apiAddr
	all := append([]string{"run", "--http-addr", httpAddr, "--api-addr", apiAddr, "--log-level", "debug", "--state-dir", t.TempDir()}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { in.done <- realMain(ctx, all, []string{}, io.Discard, in.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-in.done:
		case <-time.After(15 * time.Second):
			t.Errorf("interlock did not stop within 15s")
		}
		if t.Failed() {
			t.Logf("interlock log:\n%s", in.logs.String())
		}
	})
	testenv.WaitFor(t, 20*time.Second, "interlock API", func() error {
		code, body, err := httpGet(in.api+"/healthz", "")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("healthz %d: %s", code, body)
		}
		return nil
	})
	return in
}

// proxyLabel is a value of interlock.ext.name unique to this run and test,
// so parallel test binaries never reload each other's proxies.
func proxyLabel(t *testing.T) string {
	return "nginx-" + env.RunID + "-" + sanitize(t.Name())
}

// getVia sends GET path with Host host to addr and returns the status and
// body.
func getVia(addr, host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitVia(t *testing.T, addr, host, path string, code int, body string) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, fmt.Sprintf("%s%s via %s answering %d", host, path, addr, code), func() error {
		c, b, err := getVia(addr, host, path)
		if err != nil {
			return err
		}
		if c != code || !strings.Contains(b, body) {
			return fmt.Errorf("got %d %q", c, strings.TrimSpace(b))
		}
		return nil
	})
}

// TestNginxContainersCopy drives side-loaded nginx containers: the file is
// copied in over the Docker API, checked inside with nginx -t, and
// reloaded with SIGHUP; a proxy container started later gets the current
// configuration at once.
func TestNginxContainersCopy(t *testing.T) {
	e := needDocker(t)
	n := newNginxRun(t)
	netName := e.Network(t)
	label := proxyLabel(t)
	host, later := hostFor(t, "web"), hostFor(t, "later")
	e.Run(t, testenv.ContainerSpec{Name: "web", Labels: labelsFor(host), Network: netName, ExposePorts: []uint16{8000}, Env: map[string]string{"NAME": "web"}})
	p1 := e.RunNginx(t, testenv.ProxySpec{Name: "proxy1", Labels: map[string]string{"interlock.ext.name": label}, Ports: []uint16{80}, Network: netName})
	addr1 := fmt.Sprintf("127.0.0.1:%d", p1.Ports[80])

	startInterlock(t, n.args("--nginx-target", "containers", "--proxy-container-label", label, "--network", netName,
		"--http-addr", ":80", "--https-addr", ":443")...)
	waitVia(t, addr1, host, "/", http.StatusOK, `"path":"/"`)

	// A proxy that appears later is configured without any routing change.
	p2 := e.RunNginx(t, testenv.ProxySpec{Name: "proxy2", Labels: map[string]string{"interlock.ext.name": label}, Ports: []uint16{80}, Network: netName})
	addr2 := fmt.Sprintf("127.0.0.1:%d", p2.Ports[80])
	waitVia(t, addr2, host, "/", http.StatusOK, `"path":"/"`)

	// A routing change reaches both.
	e.Run(t, testenv.ContainerSpec{Name: "later", Labels: labelsFor(later), Network: netName, ExposePorts: []uint16{8000}})
	waitVia(t, addr1, later, "/", http.StatusOK, `"path":"/"`)
	waitVia(t, addr2, later, "/", http.StatusOK, `"path":"/"`)
}

// TestNginxContainerRejectsBadCandidate: in copy mode the candidate is
// validated inside the container; nginx's message reaches /api/status and
// the container keeps its configuration.
func TestNginxContainerRejectsBadCandidate(t *testing.T) {
	e := needDocker(t)
	n := newNginxRun(t)
	label := proxyLabel(t)
	host := hostFor(t, "web")
	e.Run(t, testenv.ContainerSpec{Name: "web", Labels: labelsFor(host), PublishPort: 8000})
	p := e.RunNginx(t, testenv.ProxySpec{Name: "proxy", Labels: map[string]string{"interlock.ext.name": label}, Ports: []uint16{80}})
	addr := fmt.Sprintf("127.0.0.1:%d", p.Ports[80])
	broken := filepath.Join(t.TempDir(), "broken.tmpl")
	if err := os.WriteFile(broken, []byte("events {}\nhttp {\n{{range .Servers}}    not_in_this_nginx {{.Host}};\n{{end}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := startInterlockNotReady(t, ":80", n.args("--nginx-target", "containers", "--proxy-container-label", label,
		"--template", broken, "--https-addr", ":443")...)
	testenv.WaitFor(t, 15*time.Second, "the container's nginx -t message in /api/status", func() error {
		s, _ := in.status(t)
		if !strings.Contains(s.Controller.LastApply.Error, `unknown directive "not_in_this_nginx"`) {
			return fmt.Errorf("last_apply.error = %q", s.Controller.LastApply.Error)
		}
		return nil
	})
	// Still the bootstrap configuration: the candidate never went live.
	waitVia(t, addr, host, "/", http.StatusServiceUnavailable, "no configuration yet")
}

// TestNginxContainersVolume: the containers read nginx.conf from a shared
// directory (here a bind mount at the same path); Interlock validates it
// with the local nginx, swaps it atomically and sends SIGHUP.
func TestNginxContainersVolume(t *testing.T) {
	e := needDocker(t)
	n := newNginxRun(t)
	netName := e.Network(t)
	label := proxyLabel(t)
	shared := t.TempDir()
	conf := filepath.Join(shared, "nginx.conf")
	host, second := hostFor(t, "web"), hostFor(t, "second")
	e.Run(t, testenv.ContainerSpec{Name: "web", Labels: labelsFor(host), Network: netName, ExposePorts: []uint16{8000}})

	// Interlock first: it writes the file before any proxy exists.
	startInterlock(t, n.args("--nginx-target", "containers", "--nginx-delivery", "volume", "--nginx-config", conf,
		"--proxy-container-label", label, "--network", netName, "--http-addr", ":80", "--https-addr", ":443")...)
	if _, err := os.Stat(conf); err != nil {
		t.Fatal(err)
	}
	p := e.RunNginx(t, testenv.ProxySpec{Name: "proxy", Labels: map[string]string{"interlock.ext.name": label}, Ports: []uint16{80},
		Network: netName, Binds: []string{shared + ":" + shared}, Cmd: []string{"-c", conf}})
	addr := fmt.Sprintf("127.0.0.1:%d", p.Ports[80])
	waitVia(t, addr, host, "/", http.StatusOK, `"path":"/"`)

	e.Run(t, testenv.ContainerSpec{Name: "second", Labels: labelsFor(second), Network: netName, ExposePorts: []uint16{8000}})
	waitVia(t, addr, second, "/", http.StatusOK, `"path":"/"`)
}

// rateLoad sends GETs at a constant rate, alternating a keep-alive client
// and one that opens a fresh connection per request, and counts failures
// (an error or any status but 200).
type rateLoad struct {
	stop          chan struct{}
	done          chan struct{}
	total, failed int64
	mu            sync.Mutex
	firsts        []string
}

func startRateLoad(addr, host string, perSecond int) *rateLoad {
	l := &rateLoad{stop: make(chan struct{}), done: make(chan struct{})}
	keep := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				wg.Wait()
				return
			case <-tick.C:
			}
			c := keep
			if i%2 == 1 {
				c = fresh
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/fast", nil)
				req.Host = host
				resp, err := c.Do(req)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				l.mu.Lock()
				defer l.mu.Unlock()
				l.total++
				if err != nil || code != http.StatusOK {
					l.failed++
					if len(l.firsts) < 5 {
						l.firsts = append(l.firsts, fmt.Sprintf("%v %d", err, code))
					}
				}
			}()
		}
	}()
	return l
}

func (l *rateLoad) Stop() (total, failed int64, firsts []string) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.failed, l.firsts
}

// TestNginxReloadUnderLoad: a constant 200 requests/s through nginx to one
// stable host while 50 containers of other hosts start and stop; nginx
// reloads many times and not one request fails.
func TestNginxReloadUnderLoad(t *testing.T) {
	e := needDocker(t)
	n := newNginxRun(t)
	stable := hostFor(t, "stable")
	e.Run(t, testenv.ContainerSpec{Name: "stable", Labels: labelsFor(stable), PublishPort: 8000})
	in := startInterlock(t, n.args()...)
	in.waitStatus(t, stable, "/fast", http.StatusOK)
	churnUnderLoad(t, in, stable, func(name string, labels map[string]string) testenv.Container {
		return e.Run(t, testenv.ContainerSpec{Name: name, Labels: labels, PublishPort: 8000})
	}, func(id string) error { return e.Remove(context.Background(), id) })
	if reloads := strings.Count(in.logs.String(), "nginx reloaded"); reloads < 3 {
		t.Errorf("only %d reloads: the churn did not exercise reloads", reloads)
	}
}

// churnUnderLoad sends 200 requests/s through in to the host stable while
// 50 containers of other hosts start (run) and go (remove): 100 changes
// of the table in well under a minute. Not one request may fail.
func churnUnderLoad(t *testing.T, in *instance, stable string, run func(name string, labels map[string]string) testenv.Container, remove func(id string) error) {
	t.Helper()
	l := startRateLoad(strings.TrimPrefix(in.proxy, "http://"), stable, 200)
	start := time.Now()
	const churn, workers = 50, 5
	ids := make(chan string, churn)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < churn; i += workers {
				c := run(fmt.Sprintf("churn%d", i), labelsFor(hostFor(t, fmt.Sprintf("churn%d", i))))
				ids <- c.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	in.waitStatus(t, hostFor(t, fmt.Sprintf("churn%d", churn-1)), "/fast", http.StatusOK)
	var stops sync.WaitGroup
	for id := range ids {
		stops.Add(1)
		go func() {
			defer stops.Done()
			if err := remove(id); err != nil {
				t.Error(err)
			}
		}()
	}
	stops.Wait()
	in.waitStatus(t, hostFor(t, "churn0"), "/fast", http.StatusNotFound)
	total, failed, firsts := l.Stop()
	st, _ := in.status(t)
	t.Logf("under load: %d requests in %s at 200/s, %d failed; %d applies while %d containers came and went",
		total, time.Since(start).Round(time.Millisecond), failed, st.Controller.Applies, churn)
	if failed != 0 {
		t.Errorf("%d of %d requests failed while the table changed; first: %v", failed, total, firsts)
	}
}

// TestCheckTemplate: interlock check --template renders a sample and runs
// nginx -t on it.
func TestCheckTemplate(t *testing.T) {
	testenv.NginxBinary(t)
	var out, errOut bytes.Buffer
	builtIn := filepath.Join("..", "..", "internal", "proxy", "nginx", "nginx.conf.tmpl")
	if code := realMain(context.Background(), []string{"check", "--template", builtIn}, nil, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "-t accepted it") {
		t.Fatalf("check --template %s: exit %d, %q %q", builtIn, code, out.String(), errOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.tmpl")
	if err := os.WriteFile(bad, []byte("events {}\nhttp { {{range .Servers}}server_name {{.Host}};{{end}} }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := realMain(context.Background(), []string{"check", "--template=" + bad}, nil, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), `"server_name" directive is not allowed here`) {
		t.Fatalf("check --template with a template nginx refuses: exit %d, %q", code, errOut.String())
	}
}
