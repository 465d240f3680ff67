package nginx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// backend is a local HTTP server that says who it is and what it got.
func backend(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s xff=%s proto=%s xfh=%s host=%s fwd=%s",
			name, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Forwarded-Host"), r.Host, r.Header.Get("Forwarded"))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type localNginx struct {
	d     *Driver
	http  string // 127.0.0.1:port
	https string
	dir   string
}

// newLocal returns a supervised driver on free loopback ports, closed at
// the end of the test.
func newLocal(t *testing.T, tmpl *Template, mode Mode, pidFile string) *localNginx {
	t.Helper()
	return newLocalWith(t, func(o *Options) { o.Template, o.Mode, o.PidFile = tmpl, mode, pidFile })
}

// newLocalWith is newLocal with options changed by change.
func newLocalWith(t *testing.T, change func(*Options)) *localNginx {
	t.Helper()
	bin := testenv.NginxBinary(t)
	dir := t.TempDir()
	// nginx's workers (nobody, under a root master) connect to the unix
	// sockets of SNI passthrough in the state directory: they must reach
	// it, as under /var/lib. t.TempDir makes its directories 0700.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := &localNginx{http: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), https: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), dir: dir}
	opts := Options{
		HTTPAddr: l.http, HTTPSAddr: l.https,
		CertDir: filepath.Join(dir, "certs"), StateDir: filepath.Join(dir, "state"), Binary: bin,
		Mode: Supervise, Logger: quietLog(),
	}
	change(&opts)
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.d = d
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := d.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

var client = &http.Client{Timeout: 2 * time.Second}

func (l *localNginx) get(host, path string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+l.http+path, nil)
	req.Host = host
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (l *localNginx) want(t *testing.T, host, path string, code int, body string) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%s%s answering %d %q", host, path, code, body), func() error {
		c, b, err := l.get(host, path)
		if err != nil {
			return err
		}
		if c != code || !strings.Contains(b, body) {
			return fmt.Errorf("got %d %q", c, b)
		}
		return nil
	})
}

func TestSupervisedApplyAndReload(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	a, b := backend(t, "a"), backend(t, "b")
	ctx := t.Context()

	t1 := table(host("web.example.com", route("/", a)), host("app.example.com", routing.Route{Path: "/app", StripPath: true, Backends: backends(b)}))
	if err := l.d.Apply(ctx, t1); err != nil {
		t.Fatal(err)
	}
	l.want(t, "web.example.com", "/x?q=1", 200, "a /x?q=1 xff=127.0.0.1 proto=http xfh=web.example.com host=web.example.com fwd=")
	l.want(t, "app.example.com", "/app/y", 200, "b /y ")
	l.want(t, "app.example.com", "/app", 200, "b / ")
	l.want(t, "app.example.com", "/apps", 404, "no route for path")
	l.want(t, "nobody.example.com", "/", 404, "no route for host")

	if err := l.d.Apply(ctx, t1); err != nil {
		t.Fatal(err)
	}
	if s := l.d.Stats(); s.Reloads != 1 || s.Unchanged != 1 {
		t.Errorf("same table twice: %+v, want 1 reload and 1 unchanged", s)
	}

	t2 := table(host("web.example.com", route("/", b)), host("new.example.com", route("/", a)))
	if err := l.d.Apply(ctx, t2); err != nil {
		t.Fatal(err)
	}
	l.want(t, "new.example.com", "/", 200, "a /")
	l.want(t, "web.example.com", "/", 200, "b /")
	l.want(t, "app.example.com", "/app", 404, "no route for host")
	if s := l.d.Stats(); s.Reloads != 2 {
		t.Errorf("reloads = %d, want 2", s.Reloads)
	}
}

// TestInvalidCandidateKeepsServing: a template that renders invalid nginx
// for some tables is refused by nginx -t; the error carries nginx's
// message and the old configuration keeps serving.
func TestInvalidCandidateKeepsServing(t *testing.T) {
	broken := strings.Replace(DefaultTemplate, "    access_log off;\n",
		"    access_log off;\n{{if gt (len .Servers) 1}}    not_a_directive on;\n{{end}}", 1)
	tmpl, err := ParseTemplate("broken", broken)
	if err != nil {
		t.Fatal(err)
	}
	l := newLocal(t, tmpl, Supervise, "")
	a := backend(t, "a")
	ctx := t.Context()
	if err := l.d.Apply(ctx, table(host("web.example.com", route("/", a)))); err != nil {
		t.Fatal(err)
	}
	l.want(t, "web.example.com", "/", 200, "a /")
	live, _ := os.ReadFile(filepath.Join(l.dir, "state", "nginx.conf"))

	err = l.d.Apply(ctx, table(host("web.example.com", route("/", a)), host("two.example.com", route("/", a))))
	if err == nil || !strings.Contains(err.Error(), `unknown directive "not_a_directive"`) {
		t.Fatalf("Apply = %v, want nginx -t's unknown directive message", err)
	}
	l.want(t, "web.example.com", "/", 200, "a /")
	l.want(t, "two.example.com", "/", 404, "no route for host")
	if now, _ := os.ReadFile(filepath.Join(l.dir, "state", "nginx.conf")); string(now) != string(live) {
		t.Error("the live file changed after a rejected candidate")
	}
	if s := l.d.Stats(); s.Failures != 1 || s.Reloads != 1 || !strings.Contains(s.LastError, "not_a_directive") {
		t.Errorf("stats = %+v", s)
	}
}

// TestSupervisorRestartsNginx stops the supervised master; the supervisor
// starts it again on the live file.
func TestSupervisorRestartsNginx(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	a := backend(t, "a")
	if err := l.d.Apply(t.Context(), table(host("web.example.com", route("/", a)))); err != nil {
		t.Fatal(err)
	}
	l.want(t, "web.example.com", "/", 200, "a /")
	pidFile := filepath.Join(l.dir, "state", "nginx.pid")
	pid, err := readPid(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	// SIGTERM: nginx's fast shutdown, an exit the supervisor did not ask for.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 15*time.Second, "a new nginx master", func() error {
		p, err := readPid(pidFile)
		if err != nil {
			return err
		}
		if p == pid {
			return fmt.Errorf("still pid %d", p)
		}
		return nil
	})
	l.want(t, "web.example.com", "/", 200, "a /")
}

// TestPidFileMode drives an nginx Interlock did not start: its master's pid
// is in a pid file, and reloads are SIGHUP to it.
func TestPidFileMode(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "nginx.pid")
	l := newLocal(t, nil, PidFile, pidFile)
	a, b := backend(t, "a"), backend(t, "b")
	t1 := table(host("web.example.com", route("/", a)))
	err := l.d.Apply(t.Context(), t1)
	if err == nil || !strings.Contains(err.Error(), "is nginx running?") {
		t.Fatalf("Apply without nginx running = %v, want a reload error", err)
	}
	// The file is live (it was valid); start nginx on it, as an init system would.
	conf := filepath.Join(l.dir, "state", "nginx.conf")
	// Output to a file, not a pipe: the daemon keeps its stderr open.
	out, err := os.Create(filepath.Join(t.TempDir(), "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(testenv.NginxBinary(t), "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("start nginx: %v\n%s", err, b)
	}
	t.Cleanup(func() {
		if pid, err := readPid(pidFile); err == nil {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})
	l.want(t, "web.example.com", "/", 200, "a /")
	// The failed apply is retried with the same bytes: it must reload.
	if err := l.d.Apply(t.Context(), t1); err != nil {
		t.Fatal(err)
	}
	if err := l.d.Apply(t.Context(), table(host("web.example.com", route("/", b)))); err != nil {
		t.Fatal(err)
	}
	l.want(t, "web.example.com", "/", 200, "b /")
}

// TestGoldenCasesPassNginx renders every golden case with paths on this
// machine and runs the real nginx -t on each.
func TestGoldenCasesPassNginx(t *testing.T) {
	bin := testenv.NginxBinary(t)
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	for _, sub := range []string{"secure", ""} {
		if err := os.MkdirAll(filepath.Join(certDir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, err := tlsconf.SelfSigned("secure.example.com")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"secure/cert.pem": cert, "secure/key.pem": key}
	for _, name := range []string{"app.example.com", "www.app.example.com", "api.example.com"} {
		files["acme-"+name+".pem"] = append(append([]byte{}, cert...), key...) // the ACME export's one-file form
	}
	for p, b := range files {
		if err := os.WriteFile(filepath.Join(certDir, p), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ensureDefaultCert(state); err != nil {
		t.Fatal(err)
	}
	for _, tc := range append(goldenCases(), routeLimitGoldenCases()...) {
		t.Run(tc.name, func(t *testing.T) {
			s := goldenSettings()
			s.HTTPAddr, s.HTTPSAddr = "127.0.0.1:8080", "127.0.0.1:8443"
			s.CertDir = certDir
			s.DefaultCert, s.DefaultKey = filepath.Join(state, defaultCertName), filepath.Join(state, defaultKeyName)
			s.Runtime = Runtime{PidFile: filepath.Join(state, tc.name+".pid"), ErrorLog: "stderr", TempDir: filepath.Join(state, "tmp")}
			s.SocketDir = state
			if strings.HasPrefix(tc.name, "ssl_passthrough") || tc.name == "edge" {
				requireStreamModule(t)
			}
			if change := tc.settings; change != nil {
				// The access log file in the scratch directory: nginx -t
				// opens it.
				tc.settings = func(s *Settings) {
					change(s)
					if filepath.IsAbs(s.Edge.AccessLog) {
						s.Edge.AccessLog = filepath.Join(dir, tc.name+".access.log")
					}
				}
			}
			conf := renderCase(t, tc, s)
			if tc.name == "ssl_passthrough_module_builtin" {
				// Debian's stream module is dynamic: load it as an nginx
				// built with it would have it, and check the rest.
				conf = append([]byte("load_module "+DefaultStreamModule+";\n"), conf...)
			}
			file := filepath.Join(dir, tc.name+".conf")
			if err := os.WriteFile(file, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Validate(t.Context(), bin, file, filepath.Join(state, "scratch")); err != nil {
				t.Fatalf("%v\n%s", err, conf)
			}
		})
	}
}

// requireStreamModule skips the test when Debian's nginx stream module
// (SNI passthrough) is not installed, or fails it under CI=true (CI must
// never pass by skipping).
func requireStreamModule(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(DefaultStreamModule); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("nginx's stream module %s is not installed (Debian package libnginx-mod-stream)", DefaultStreamModule)
	}
	t.Skipf("skipping: nginx's stream module %s is not installed (apt-get install libnginx-mod-stream)", DefaultStreamModule)
}

// listening reports whether something accepts connections on addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestCloseStopsNginx(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	if err := l.d.Apply(t.Context(), table(host("web.example.com", route("/", backend(t, "a"))))); err != nil {
		t.Fatal(err)
	}
	l.want(t, "web.example.com", "/", 200, "a /")
	if err := l.d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "nginx to stop listening", func() error {
		if listening(l.http) {
			return fmt.Errorf("%s still accepts", l.http)
		}
		return nil
	})
}

func TestNewRefusesBadSettings(t *testing.T) {
	ok := Options{HTTPAddr: ":80", HTTPSAddr: ":443", CertDir: "/certs", StateDir: "/state"}
	if _, err := New(ok); err != nil {
		t.Fatalf("New(%+v) = %v", ok, err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{name: "dollar in state dir", change: func(o *Options) { o.StateDir = "/st$ate" }, want: "cannot be written into nginx.conf"},
		{name: "quote in cert dir is fine, dollar is not", change: func(o *Options) { o.CertDir = "/c$" }, want: "holds '$'"},
		{name: "port zero", change: func(o *Options) { o.HTTPAddr = "127.0.0.1:0" }, want: "fixed port"},
		{name: "no state dir", change: func(o *Options) { o.StateDir = "" }, want: "state directory"},
		{name: "unknown mode", change: func(o *Options) { o.Mode = "ssh" }, want: "unknown mode"},
		{name: "pid file mode without a pid file", change: func(o *Options) { o.Mode = PidFile }, want: "pid file"},
		{name: "copy without docker", change: func(o *Options) { o.Mode = Copy }, want: "Docker side"},
		{name: "prefix with host bits", change: func(o *Options) {
			o.Edge.ProxyProtocolTrusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")}
		}, want: "want 10.0.0.0/8"},
		{name: "mapped prefix", change: func(o *Options) {
			o.Edge.ForwardedTrusted = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}
		}, want: "not a plain IPv4 or IPv6 prefix"},
		{name: "relative access log", change: func(o *Options) { o.Edge.AccessLog = "access.log" }, want: "absolute path"},
		{name: "access log with a dollar", change: func(o *Options) { o.Edge.AccessLog = "/log/$x" }, want: "cannot be written into nginx.conf"},
		{name: "access log format", change: func(o *Options) { o.Edge.AccessLogFormat = "combined" }, want: `format "combined"`},
		{name: "negative timeout", change: func(o *Options) { o.Edge.ClientIdleTimeout = -time.Second }, want: "client idle timeout -1s is negative"},
		{name: "timeout under a millisecond", change: func(o *Options) { o.Edge.BackendConnectTimeout = time.Microsecond }, want: "1ms resolution"},
		{name: "header limit too small", change: func(o *Options) { o.Edge.MaxHeaderBytes = 100 }, want: "max header bytes 100 is out of range"},
		{name: "negative body limit", change: func(o *Options) { o.Edge.MaxBodyBytes = -1 }, want: "max body bytes -1 is negative"},
		{name: "template failing on an empty table", change: func(o *Options) {
			o.Template, _ = ParseTemplate("t", `{{index .Servers 0}}`)
		}, want: "index out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestQuoteHelpers(t *testing.T) {
	for _, tc := range []struct {
		fn      func(string) (string, error)
		in, out string
		bad     bool
	}{
		{fn: nginxString, in: `/a"b\c`, out: `"/a\"b\\c"`},
		{fn: nginxString, in: "/a$b", bad: true},
		{fn: nginxString, in: "a\nb", bad: true},
		{fn: nginxLocation, in: "/a$b;{}#", out: `"/a$b;{}#"`},
		{fn: nginxLocation, in: "/a\x00", bad: true},
		{fn: nginxWord, in: "http://u_a.b_0123456789/x%20y", out: "http://u_a.b_0123456789/x%20y"},
		{fn: nginxWord, in: "a;b", bad: true},
		{fn: nginxWord, in: "~regex", bad: true},
		{fn: nginxWord, in: "", bad: true},
		{fn: serverName, in: "a-b.example.com", out: "a-b.example.com"},
		{fn: serverName, in: "*.example.com", bad: true},
		{fn: serverName, in: ".example.com", bad: true},
		{fn: serverName, in: "~^x$", bad: true},
	} {
		got, err := tc.fn(tc.in)
		if tc.bad != (err != nil) || !tc.bad && got != tc.out {
			t.Errorf("(%q) = %q, %v; want %q (refused: %v)", tc.in, got, err, tc.out, tc.bad)
		}
	}
}
