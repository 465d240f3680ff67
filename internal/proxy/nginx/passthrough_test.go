package nginx

// Integration tests of SNI passthrough and of the ssl_only redirect codes
// against the real nginx, with the built-in proxy asked the same questions
// where its answers are the contract.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// passCertificate makes a self-signed certificate for names with
// crypto/x509, and a pool that trusts it.
func passCertificate(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// tlsBackend is a backend that terminates TLS itself with cert and says
// who it is, the server name it was asked for and the address it sees.
func tlsBackend(t testing.TB, name string, cert tls.Certificate) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s sni=%s remote=%s proto=%s", name, r.URL.RequestURI(), r.TLS.ServerName, r.RemoteAddr, r.Proto)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.EnableHTTP2 = true // ALPN passes through, as the rest
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// clientIP is the loopback address the TLS clients connect from, so that
// the address a backend sees tells the client from the proxy (127.0.0.1).
var clientIP = net.ParseIP("127.0.0.2")

// tlsAnswer is one answer over TLS and the certificate the client saw.
type tlsAnswer struct {
	answer
	cert  *x509.Certificate
	proto int
}

// getTLS makes a GET over TLS from clientIP with the given SNI and Host.
// roots nil means the certificate is not verified.
func getTLS(addr, sni, host, path string, roots *x509.CertPool) (tlsAnswer, error) {
	cfg := &tls.Config{ServerName: sni, RootCAs: roots, InsecureSkipVerify: roots == nil} //nolint:gosec // checked by the caller
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: cfg, ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 5 * time.Second}).DialContext,
	}}
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return tlsAnswer{}, err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return tlsAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return tlsAnswer{answer: answer{code: resp.StatusCode, body: string(b), header: resp.Header}, cert: resp.TLS.PeerCertificates[0], proto: resp.ProtoMajor}, err
}

// builtinRedirecting serves tb with the built-in proxy on plain HTTP, its
// HTTPS redirects naming httpsPort.
func builtinRedirecting(t testing.TB, tb routing.Table, httpsPort int) string {
	t.Helper()
	p := builtin.New(builtin.Options{Logger: quietLog(), HTTPSPort: httpsPort})
	if err := p.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); _ = p.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

// checkHTTPSRedirects asks nginx and the built-in proxy for plain-HTTP
// requests to hosts that must go to HTTPS: 301 for GET and HEAD, 308 for
// every other method, Location https://HOST[:PORT]PATH?QUERY, no-store.
func checkHTTPSRedirects(t *testing.T, l *localNginx, tb routing.Table, hosts ...string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(l.https)
	n, _ := strconv.Atoi(port)
	ref := builtinRedirecting(t, tb, n)
	for _, h := range hosts {
		for _, tc := range []struct {
			method, path string
			code         int
		}{
			{http.MethodGet, "/x?y=1", 301},
			{http.MethodGet, "/", 301},
			{http.MethodHead, "/h?q", 301},
			{http.MethodPost, "/form?next=/x", 308},
			{http.MethodPut, "/p", 308},
			{http.MethodDelete, "/a%20b/d", 308},
		} {
			want := "https://" + h + ":" + port + tc.path
			for name, addr := range map[string]string{"nginx": l.http, "builtin": ref} {
				got := send(t, tc.method, addr, h, tc.path, "")
				if got.code != tc.code || got.header.Get("Location") != want || got.header.Get("Cache-Control") != "no-store" {
					t.Errorf("%s: %s %s%s answered %d Location %q Cache-Control %q, want %d %q no-store",
						name, tc.method, h, tc.path, got.code, got.header.Get("Location"), got.header.Get("Cache-Control"), tc.code, want)
				}
			}
		}
	}
}

func TestSSLOnlyRedirectCodes(t *testing.T) {
	l := newLocal(t, nil, Supervise, "")
	a := backend(t, "a")
	tb := table(
		routing.Host{Name: "secure.test", Aliases: []string{"www.secure.test"}, TLS: &routing.TLS{Only: true}, Routes: []routing.Route{route("/", a)}},
		host("plain.test", route("/", a)),
	)
	l.apply(t, tb, "plain.test", "/", 200)
	checkHTTPSRedirects(t, l, tb, "secure.test", "www.secure.test")
	// A Host with a port and in upper case is redirected by its name.
	_, port, _ := net.SplitHostPort(l.https)
	if got := send(t, http.MethodGet, l.http, "Secure.Test:8080", "/z", ""); got.code != 301 || got.header.Get("Location") != "https://secure.test:"+port+"/z" {
		t.Errorf("Host Secure.Test:8080 answered %d Location %q", got.code, got.header.Get("Location"))
	}
	// Over HTTPS the host is served.
	testenv.WaitFor(t, 10*time.Second, "secure.test over HTTPS", func() error {
		got, err := getTLS(l.https, "secure.test", "secure.test", "/s", nil)
		if err != nil {
			return err
		}
		if got.code != 200 || !strings.HasPrefix(got.body, "a /s ") || !strings.Contains(got.body, "proto=https") {
			return fmt.Errorf("got %d %q", got.code, got.body)
		}
		return nil
	})
}

func TestSNIPassthrough(t *testing.T) {
	requireStreamModule(t)
	l := newLocal(t, nil, Supervise, "")
	cert, pool := passCertificate(t, "pass.test", "www.pass.test")
	pass, a, b := tlsBackend(t, "pass", cert), backend(t, "a"), backend(t, "b")
	passHost := routing.Host{Name: "pass.test", Aliases: []string{"www.pass.test"}, TLS: &routing.TLS{Passthrough: true},
		Routes: []routing.Route{route("/", pass), route("/api", b)}}
	withPass := table(passHost,
		routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{route("/", a)}},
		host("plain.test", route("/", b)),
		routing.Host{Name: "empty.test", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{route("/")}},
	)
	l.apply(t, withPass, "plain.test", "/", 200)

	// The passthrough host: the backend's own certificate, verified by the
	// client against the backend's CA, and the backend's answer.
	passed := func(sni, path string) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, sni+" passed through", func() error {
			got, err := getTLS(l.https, sni, sni, path, pool)
			if err != nil {
				return err
			}
			if got.code != 200 || !strings.HasPrefix(got.body, "pass "+path+" sni="+sni+" ") || !got.cert.Equal(cert.Leaf) || got.proto != 2 {
				return fmt.Errorf("got %d %q HTTP/%d cert %q", got.code, got.body, got.proto, got.cert.Subject.CommonName)
			}
			// PROXY protocol stops at the proxy: the backend sees nginx's
			// address, not the client's (README.md says so).
			if !strings.Contains(got.body, " remote=127.0.0.1:") {
				return fmt.Errorf("the passthrough backend saw %q, want the proxy's address 127.0.0.1", got.body)
			}
			return nil
		})
	}
	passed("pass.test", "/x?y=1")
	passed("www.pass.test", "/api/not-the-api-route") // one route takes every connection
	// SNI is matched without regard to case.
	if got, err := getTLS(l.https, "PASS.Test", "pass.test", "/", nil); err != nil || !got.cert.Equal(cert.Leaf) || !strings.HasPrefix(got.body, "pass / ") {
		t.Errorf("SNI PASS.Test: %+v %v, want the backend's certificate and answer", got, err)
	}

	// Another TLS host on the same port: the proxy's certificate, and its
	// backend sees the client's address, carried by the PROXY protocol.
	terminated := func() error {
		got, err := getTLS(l.https, "secure.test", "secure.test", "/s", nil)
		if err != nil {
			return err
		}
		if got.code != 200 || got.cert.Subject.CommonName != "interlock-default.invalid" || got.proto != 2 ||
			!strings.HasPrefix(got.body, "a /s xff=127.0.0.2 proto=https xfh=secure.test host=secure.test") {
			return fmt.Errorf("got %d %q HTTP/%d cert %q", got.code, got.body, got.proto, got.cert.Subject.CommonName)
		}
		return nil
	}
	testenv.WaitFor(t, 10*time.Second, "secure.test terminated by nginx", terminated)
	// Names without TLS, and a passthrough host's name as Host behind
	// another SNI, are not served over HTTPS.
	if got, err := getTLS(l.https, "plain.test", "plain.test", "/", nil); err == nil {
		t.Errorf("plain.test over HTTPS answered %d %q, want a refused handshake", got.code, got.body)
	}
	if got, err := getTLS(l.https, "secure.test", "pass.test", "/", nil); err != nil || got.code != 404 {
		t.Errorf("SNI secure.test, Host pass.test: %+v %v, want 404", got, err)
	}
	// A client that is not TLS at all is cut off, not served.
	if raw := rawExchange(t, l.https, "GET / HTTP/1.0\r\n\r\n"); strings.Contains(raw, "200") {
		t.Errorf("plain HTTP on the HTTPS port answered %q", raw)
	}

	// A passthrough host without backends: the handshake is refused.
	if got, err := getTLS(l.https, "empty.test", "empty.test", "/", nil); err == nil {
		t.Errorf("empty.test answered %d %q, want a refused handshake", got.code, got.body)
	}

	// Plain HTTP to the passthrough host goes to HTTPS, like ssl_only.
	checkHTTPSRedirects(t, l, withPass, "pass.test", "www.pass.test")
	if got := send(t, http.MethodGet, l.http, "plain.test", "/", ""); got.code != 200 || !strings.HasPrefix(got.body, "b /") {
		t.Errorf("plain.test over HTTP: %d %q", got.code, got.body)
	}

	// Without passthrough hosts the stream block goes and nginx serves
	// HTTPS on the address itself again; then it comes back.
	without := table(routing.Host{Name: "secure.test", TLS: &routing.TLS{}, Routes: []routing.Route{route("/", a)}}, host("plain.test", route("/", b)))
	if err := l.d.Apply(t.Context(), without); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "pass.test gone", func() error {
		if got, err := getTLS(l.https, "pass.test", "pass.test", "/", nil); err == nil {
			return fmt.Errorf("pass.test still answers %d %q", got.code, got.body)
		}
		return nil
	})
	testenv.WaitFor(t, 10*time.Second, "secure.test served without the stream block", terminated)
	if err := l.d.Apply(t.Context(), withPass); err != nil {
		t.Fatal(err)
	}
	passed("pass.test", "/again")
	testenv.WaitFor(t, 10*time.Second, "secure.test behind the stream block again", terminated)

	// A killed nginx leaves its unix sockets behind; the supervisor's
	// restart must still bind them.
	killNginx(t, l)
	passed("pass.test", "/after-restart")
	testenv.WaitFor(t, 10*time.Second, "secure.test after the restart", terminated)
}

// rawExchange writes req to addr and returns what comes back before the
// connection ends (or 10 s pass).
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

// killNginx kills the supervised master and its workers outright (SIGKILL,
// which leaves unix sockets behind) and waits for the supervisor's
// restart.
func killNginx(t *testing.T, l *localNginx) {
	t.Helper()
	pidFile := l.dir + "/state/nginx.pid"
	pid, err := readPid(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	workers := childPids(t, pid)
	proc, err := findProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if p, err := findProcess(w); err == nil {
			_ = p.Kill()
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for {
		if p, err := readPid(pidFile); err == nil && p != pid {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("no new nginx master after a kill")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func findProcess(pid int) (*os.Process, error) { return os.FindProcess(pid) }

// childPids lists the processes whose parent is pid (/proc/PID/stat).
func childPids(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

type noContainers struct{}

func (noContainers) Reload(context.Context, map[string][]byte) error { return nil }

// TestPassthroughSettingsPerMode: the local modes keep the internal
// sockets in the state directory, the container modes in each container's
// own /run; the stream module is loaded from Options.StreamModule unless
// it is built in; a relative module path is refused.
func TestPassthroughSettingsPerMode(t *testing.T) {
	dir := t.TempDir()
	tb := table(routing.Host{Name: "pass.test", TLS: &routing.TLS{Passthrough: true}, Routes: []routing.Route{route("/", "10.0.0.1:443")}})
	for _, c := range []struct {
		mode         Mode
		module, load string
		sockets      string
		pidFile      string
	}{
		{mode: Supervise, load: `load_module "` + DefaultStreamModule + `";`, sockets: dir + "/state"},
		{mode: PidFile, pidFile: dir + "/n.pid", module: "/opt/nginx/stream.so", load: `load_module "/opt/nginx/stream.so";`, sockets: dir + "/state"},
		{mode: Copy, load: `load_module "` + DefaultStreamModule + `";`, sockets: "/run"},
		{mode: Volume, module: StreamModuleBuiltIn, sockets: "/run"},
	} {
		d, err := New(Options{Mode: c.mode, PidFile: c.pidFile, Containers: noContainers{}, StateDir: dir + "/state",
			HTTPAddr: ":80", HTTPSAddr: ":443", CertDir: dir, StreamModule: c.module})
		if err != nil {
			t.Fatal(err)
		}
		d.settings.ModuleMissing = nil // the module paths need not exist here
		conf, skips, err := d.Render(tb)
		if err != nil {
			t.Fatal(err)
		}
		if len(skips) != 0 {
			t.Errorf("mode %s: skipped %+v", c.mode, skips)
		}
		for _, want := range []string{"listen unix:" + c.sockets + "/interlock-tls.sock ssl http2 proxy_protocol default_server;",
			"listen unix:" + c.sockets + "/interlock-passthrough.sock proxy_protocol;", "\n        listen 443;\n"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("mode %s: the file lacks %q", c.mode, want)
			}
		}
		if got := strings.Contains(string(conf), "load_module"); got != (c.load != "") || c.load != "" && !strings.Contains(string(conf), c.load) {
			t.Errorf("mode %s: want load_module %q in\n%s", c.mode, c.load, conf)
		}
	}
	if _, err := New(Options{StateDir: dir, HTTPAddr: ":80", HTTPSAddr: ":443", StreamModule: "modules/stream.so"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("a relative stream module: %v", err)
	}
	// A state directory the socket paths cannot come from leaves
	// passthrough out, reported, and the rest of the file as it is.
	d, err := New(Options{StateDir: "/" + strings.Repeat("s", 90), HTTPAddr: ":80", HTTPSAddr: ":443"})
	if err != nil {
		t.Fatal(err)
	}
	d.settings.ModuleMissing = nil
	conf, skips, err := d.Render(tb)
	if err != nil || strings.Contains(string(conf), "stream {") || len(skips) != 1 || !strings.Contains(skips[0].Reason, "shorter state directory") {
		t.Errorf("a long state directory: %v, skipped %+v", err, skips)
	}
}
