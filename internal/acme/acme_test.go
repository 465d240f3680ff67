package acme_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/acme"
	"github.com/interlock-proxy/interlock/internal/proxy/builtin"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/testenv"
)

// syncBuffer collects logs written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// End to end, with real parts only: the built-in proxy with its plain
// and TLS listeners on loopback, an acme.Manager as its certificate
// source, and a real Pebble validating the challenges on those listeners.

// instance is one Interlock's proxy side: the proxy, its manager and its
// listeners.
type instance struct {
	proxy      *builtin.Proxy
	mgr        *acme.Manager
	httpAddr   string
	httpsAddr  string
	logs       *syncBuffer
	close      func()
	closedOnce bool
}

// listen binds addr, "127.0.0.1:0" for a new port.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // a port just closed by the previous instance may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

// startInstance runs a proxy whose certificate source is a Manager on
// storage, listening on httpAddr and httpsAddr (port 0: new ones). tune
// adjusts the Manager's options.
func startInstance(t *testing.T, pb *testenv.Pebble, storage, httpAddr, httpsAddr string, tune func(*acme.Options)) *instance {
	t.Helper()
	httpLn, httpsLn := listen(t, httpAddr), listen(t, httpsAddr)
	in := &instance{httpAddr: httpLn.Addr().String(), httpsAddr: httpsLn.Addr().String(), logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := acme.Options{Storage: storage, HTTPAddr: in.httpAddr, HTTPSAddr: in.httpsAddr, Logger: logger}
	if pb != nil {
		opts.CA, opts.RootCAs, opts.Email = pb.Dir, pb.Roots, "ops@example.com"
	}
	if tune != nil {
		tune(&opts)
	}
	mgr, err := acme.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	in.mgr = mgr
	in.proxy = builtin.New(builtin.Options{Logger: logger, Certificates: mgr})
	plain := &http.Server{Handler: in.proxy, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	secure := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{}, 2)
	go func() { plain.Serve(httpLn); done <- struct{}{} }()
	go func() { in.proxy.ServeTLS(secure, httpsLn); done <- struct{}{} }()
	in.close = func() {
		if in.closedOnce {
			return
		}
		in.closedOnce = true
		plain.Close()
		secure.Close()
		<-done
		<-done
		mgr.Close()
		in.proxy.Close()
	}
	t.Cleanup(in.close)
	return in
}

func (in *instance) apply(t *testing.T, hosts ...routing.Host) {
	t.Helper()
	tbl := routing.Table{Hosts: hosts}
	tbl.Normalize()
	if err := in.proxy.Apply(context.Background(), tbl); err != nil {
		t.Fatal(err)
	}
}

// port returns the port of a host:port.
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// backend is an HTTP backend that answers with its name.
func backend(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s: %s %s", name, r.Host, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func host(name string, tl *routing.TLS, backendAddr string, aliases ...string) routing.Host {
	return routing.Host{Name: name, Aliases: aliases, TLS: tl, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: backendAddr}}}}}
}

// handshake connects to the proxy's TLS listener with SNI name, without
// verifying, and returns the chain served.
func handshake(addr, name string) ([]*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, InsecureSkipVerify: true}) //nolint:gosec // the chain is verified by the caller
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates, nil
}

// verify checks chain as a client would for name, against roots, with the
// intermediates the server sent.
func verify(chain []*x509.Certificate, name string, roots *x509.CertPool) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return err
}

// waitIssued waits until the proxy serves name a certificate that
// verifies against Pebble's issuing root, and returns its leaf.
func waitIssued(t *testing.T, in *instance, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		chain, err := handshake(in.httpsAddr, name)
		if err == nil {
			if err = verify(chain, name, roots); err == nil {
				return chain[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no certificate issued by Pebble: %v (failure: %v)\nmanager stats %+v\nproxy log:\n%s", name, err, in.mgr.Failure(name), in.mgr.Stats(), in.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isDefault reports whether leaf is the proxy's self-signed default.
func isDefault(leaf *x509.Certificate) bool {
	return slices.Equal(leaf.DNSNames, []string{"interlock-default.invalid"})
}

// get sends a verified HTTPS request for name to the proxy.
func get(t *testing.T, addr, name string, roots *x509.CertPool) string {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	res, err := c.Get("https://" + name + "/hello")
	if err != nil {
		t.Fatalf("GET https://%s/hello: %v", name, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.Proto + " " + string(b)
}

// served reports whether certmagic logged serving the key authorization
// of a challenge of type typ (a validation request it answered).
func served(logs, typ string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `msg="served key authentication`) && strings.Contains(l, " challenge="+typ+" ") {
			return true
		}
	}
	return false
}

// tried reports whether acmez logged trying a challenge of type typ.
func tried(logs, typ string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `msg="trying to solve challenge"`) && strings.Contains(l, " challenge_type="+typ+" ") {
			return true
		}
	}
	return false
}

// TestACMEHTTP01 (TLS-ALPN-01 off): a host that opted in gets certificates
// from Pebble for its name and alias, validated over the proxy's plain
// listener, although the host redirects plain HTTP (ssl_only); they chain
// to Pebble's root and serve HTTPS (HTTP/2) to its backend. A TLS host
// that did not opt in keeps the default certificate, and no order is
// ever made for it.
func TestACMEHTTP01(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebble(t, port(t, httpAddr), port(t, httpsAddr))
	in := startInstance(t, pb, t.TempDir(), httpAddr, httpsAddr, func(o *acme.Options) { o.DisableTLSALPN01 = true })
	b := backend(t, "app")
	in.apply(t,
		host("app.example.com", &routing.TLS{ACME: true, Only: true}, b, "www.app.example.com"),
		host("plain.example.com", &routing.TLS{}, b),
	)
	roots := pb.IssuingRoot(t)
	for _, name := range []string{"app.example.com", "www.app.example.com"} {
		leaf := waitIssued(t, in, name, roots)
		if !slices.Equal(leaf.DNSNames, []string{name}) {
			t.Errorf("%s: certificate for %v", name, leaf.DNSNames)
		}
	}
	if got := get(t, in.httpsAddr, "app.example.com", roots); got != "HTTP/2.0 app: app.example.com /hello" {
		t.Errorf("HTTPS request: %q", got)
	}
	chain, err := handshake(in.httpsAddr, "plain.example.com")
	if err != nil || !isDefault(chain[0]) {
		t.Errorf("plain.example.com: %v, %v; want the default certificate", chain, err)
	}
	// Which challenge was solved: certmagic logs each key authorization it
	// serves, acmez each challenge it tries; Pebble logs its HTTP-01
	// requests.
	logs := in.logs.String()
	if !served(logs, "http-01") || tried(logs, "tls-alpn-01") ||
		!strings.Contains(pb.Log.String(), "Attempting to validate w/ HTTP") {
		t.Errorf("want HTTP-01 validation only; log:\n%s\npebble:\n%s", logs, pb.Log)
	}
	if st := in.mgr.Stats(); st.Orders != 2 || st.Obtained != 2 || st.Failed != 0 {
		t.Errorf("stats %+v, want 2 orders (the two names of the host that opted in), 2 obtained", st)
	}
	if n := pb.Orders(); n != 2 {
		t.Errorf("pebble saw %d orders, want 2\n%s", n, pb.Log)
	}
	if strings.Contains(pb.Log.String(), "plain.example.com") {
		t.Errorf("pebble heard of plain.example.com, which did not opt in:\n%s", pb.Log)
	}
	if probs := in.proxy.CertProblems(); len(probs) != 0 {
		t.Errorf("CertProblems = %+v", probs)
	}
}

// TestACMETLSALPN01 (HTTP-01 off): the certificate comes through the
// TLS-ALPN-01 challenge, answered on the proxy's TLS listener, which also
// serves a passthrough host: only that host's connections are diverted.
func TestACMETLSALPN01(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebble(t, port(t, httpAddr), port(t, httpsAddr))
	in := startInstance(t, pb, t.TempDir(), httpAddr, httpsAddr, func(o *acme.Options) { o.DisableHTTP01 = true })
	b := backend(t, "app")
	in.apply(t,
		host("alpn.example.com", &routing.TLS{ACME: true}, b),
		host("pass.example.com", &routing.TLS{Passthrough: true}, backend(t, "pass")),
	)
	roots := pb.IssuingRoot(t)
	waitIssued(t, in, "alpn.example.com", roots)
	if got := get(t, in.httpsAddr, "alpn.example.com", roots); got != "HTTP/2.0 app: alpn.example.com /hello" {
		t.Errorf("HTTPS request: %q", got)
	}
	logs := in.logs.String()
	if !served(logs, "tls-alpn-01") || tried(logs, "http-01") ||
		strings.Contains(pb.Log.String(), "Attempting to validate w/ HTTP") {
		t.Errorf("want TLS-ALPN-01 validation only; log:\n%s\npebble:\n%s", logs, pb.Log)
	}
	if st := in.mgr.Stats(); st.Orders != 1 || st.Obtained != 1 {
		t.Errorf("stats %+v, want 1 order, 1 obtained", st)
	}
}

// TestACMERestartReusesStorage: a second instance on the same storage
// (a restart, or a second Interlock sharing it) serves the certificate
// the first one obtained, and orders nothing.
func TestACMERestartReusesStorage(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebble(t, port(t, httpAddr), port(t, httpsAddr))
	storage := t.TempDir()
	b := backend(t, "app")
	roots := pb.IssuingRoot(t)

	first := startInstance(t, pb, storage, httpAddr, httpsAddr, nil)
	first.apply(t, host("keep.example.com", &routing.TLS{ACME: true}, b))
	leaf := waitIssued(t, first, "keep.example.com", roots)
	if n := pb.Orders(); n != 1 {
		t.Fatalf("pebble saw %d orders, want 1", n)
	}
	first.close()

	second := startInstance(t, pb, storage, httpAddr, httpsAddr, nil)
	second.apply(t, host("keep.example.com", &routing.TLS{ACME: true}, b))
	again := waitIssued(t, second, "keep.example.com", roots)
	if again.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("restart served serial %s, want the stored %s", again.SerialNumber, leaf.SerialNumber)
	}
	if st := second.mgr.Stats(); st.Orders != 0 || st.Loaded != 1 {
		t.Errorf("restart stats %+v, want no order and one certificate loaded", st)
	}
	// A name that leaves the table and comes back is loaded again too.
	second.apply(t)
	second.apply(t, host("keep.example.com", &routing.TLS{ACME: true}, b))
	waitIssued(t, second, "keep.example.com", roots)
	if n := pb.Orders(); n != 1 {
		t.Errorf("pebble saw %d orders in all, want the first one only\n%s", n, pb.Log)
	}
}

// TestACMEFailureIsolated: a host whose validation fails (its name
// resolves to an address where nothing listens) keeps the default
// certificate and is reported, in the log and in CertProblems; the other
// host gets its certificate.
func TestACMEFailureIsolated(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebble(t, port(t, httpAddr), port(t, httpsAddr))
	pb.Resolve(t, "broken.example.com", "127.0.0.2") // loopback, but no listener
	in := startInstance(t, pb, t.TempDir(), httpAddr, httpsAddr, nil)
	b := backend(t, "app")
	in.apply(t,
		host("broken.example.com", &routing.TLS{ACME: true}, b),
		host("fine.example.com", &routing.TLS{ACME: true}, b),
	)
	waitIssued(t, in, "fine.example.com", pb.IssuingRoot(t))

	deadline := time.Now().Add(60 * time.Second)
	for in.mgr.Failure("broken.example.com") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no failure reported for broken.example.com; stats %+v\n%s", in.mgr.Stats(), in.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	probs := in.proxy.CertProblems()
	if len(probs) != 1 || probs[0].Host != "broken.example.com" || probs[0].Reason != builtin.CertACMEFailed {
		t.Errorf("CertProblems = %+v, want one acme_failed for broken.example.com", probs)
	}
	chain, err := handshake(in.httpsAddr, "broken.example.com")
	if err != nil || !isDefault(chain[0]) {
		t.Errorf("broken.example.com: %v, %v; want the default certificate", chain, err)
	}
	if !strings.Contains(in.logs.String(), "ACME certificate failed") {
		t.Errorf("no failure in the log:\n%s", in.logs)
	}
}

// TestACMERenewal: certmagic renews a certificate in the last third of
// its lifetime, through the same challenges on the proxy's listeners, and
// the proxy serves the new one without a new Apply. Pebble issues
// 30-second certificates here, and renewals are checked every second.
func TestACMERenewal(t *testing.T) {
	httpLn, httpsLn := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
	httpAddr, httpsAddr := httpLn.Addr().String(), httpsLn.Addr().String()
	httpLn.Close()
	httpsLn.Close()
	pb := testenv.StartPebbleWith(t, testenv.PebbleConfig{HTTPPort: port(t, httpAddr), TLSPort: port(t, httpsAddr), CertValidity: 30 * time.Second})
	in := startInstance(t, pb, t.TempDir(), httpAddr, httpsAddr, func(o *acme.Options) { o.RenewCheckInterval = time.Second })
	in.apply(t, host("renew.example.com", &routing.TLS{ACME: true}, backend(t, "app")))
	roots := pb.IssuingRoot(t)
	first := waitIssued(t, in, "renew.example.com", roots)
	if life := first.NotAfter.Sub(first.NotBefore); life > time.Minute {
		t.Fatalf("certificate valid for %s: Pebble ignored the short validity", life)
	}
	deadline := time.Now().Add(45 * time.Second)
	for {
		leaf := waitIssued(t, in, "renew.example.com", roots)
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not renewed within 45s; stats %+v\n%s", in.mgr.Stats(), in.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := in.mgr.Stats(); st.Obtained < 2 || st.Failed != 0 {
		t.Errorf("stats %+v, want the issuance and a renewal, no failure", st)
	}
	if n := pb.Orders(); n < 2 {
		t.Errorf("pebble saw %d orders, want the renewal's too", n)
	}
}

// TestNewRefusesBadOptions: what New refuses before any CA is contacted.
func TestNewRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts acme.Options
		want string
	}{
		{"no storage", acme.Options{HTTPAddr: ":80", HTTPSAddr: ":443"}, "no storage"},
		{"no challenge", acme.Options{Storage: dir, DisableHTTP01: true, DisableTLSALPN01: true}, "both challenge types"},
		{"kernel-picked HTTP port", acme.Options{Storage: dir, HTTPAddr: "127.0.0.1:0", HTTPSAddr: ":443"}, "needs a fixed port"},
		{"no HTTPS address for TLS-ALPN-01", acme.Options{Storage: dir, HTTPAddr: ":80", DisableHTTP01: false}, "HTTPS address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := acme.New(tc.opts)
			if err == nil {
				m.Close()
				t.Fatalf("New accepted %+v", tc.opts)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
	// One challenge type needs only its own listener.
	m, err := acme.New(acme.Options{Storage: dir, HTTPAddr: ":80", DisableTLSALPN01: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("HTTP-01 only, no HTTPS address: %v", err)
	}
	m.Close()
}
