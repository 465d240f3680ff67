package testenv

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A real ACME server for tests: Pebble (Debian package pebble), with
// its validation authority resolving every name through
// pebble-challtestsrv's mock DNS (same package) to 127.0.0.1, and
// validating for real (PEBBLE_VA_ALWAYS_VALID=0): HTTP-01 on the proxy's
// plain port, TLS-ALPN-01 on its TLS port, both on loopback. Nothing
// leaves the machine.

// Pebble is one running Pebble and its DNS.
type Pebble struct {
	// Dir is the ACME directory URL. Roots trusts its HTTPS endpoint,
	// whose certificate RootPEM is (for --acme-ca-root).
	Dir     string
	Roots   *x509.CertPool
	RootPEM []byte
	// Log is Pebble's output.
	Log fmt.Stringer
	// mgmt is Pebble's management interface (the issuing root);
	// dnsMgmt is challtestsrv's (DNS records).
	mgmt, dnsMgmt string
	log           *processOutput
}

// processOutput collects a process's output.
type processOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *processOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *processOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// needPebble returns the paths of pebble and pebble-challtestsrv. Missing,
// the test is skipped, except under CI=true, where that is a failure
// (make test installs the package).
func needPebble(t testing.TB) (pebblePath, dnsPath string) {
	t.Helper()
	var missing []string
	for _, name := range []string{"pebble", "pebble-challtestsrv"} {
		p, err := exec.LookPath(name)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		if name == "pebble" {
			pebblePath = p
		} else {
			dnsPath = p
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not found: install the Debian package pebble (make test does)", strings.Join(missing, " and "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return pebblePath, dnsPath
}

// freeLoopbackPort returns a loopback port free for TCP, and for UDP too when
// udp is true (the DNS server takes both): one of FreePort's, below the
// ephemeral range.
func freeLoopbackPort(t testing.TB, udp bool) int {
	t.Helper()
	for range 20 {
		port := FreePort(t)
		if !udp {
			return port
		}
		if pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port for both TCP and UDP")
	return 0
}

// StartPebble runs challtestsrv and Pebble, validating challenges for real
// (HTTP-01 on httpPort, TLS-ALPN-01 on tlsPort of 127.0.0.1, where every
// name resolves), until the test ends. Without the pebble package the
// test is skipped, or fails under CI=true.
func StartPebble(t testing.TB, httpPort, tlsPort int) *Pebble {
	t.Helper()
	return StartPebbleWith(t, PebbleConfig{HTTPPort: httpPort, TLSPort: tlsPort})
}

// PebbleConfig is what StartPebbleWith may change.
type PebbleConfig struct {
	// HTTPPort and TLSPort are where the validation authority connects
	// for HTTP-01 and TLS-ALPN-01, on 127.0.0.1 or the address Resolve
	// gave the name.
	HTTPPort, TLSPort int
	// CertValidity is how long the certificates Pebble issues are valid,
	// in whole seconds; zero: Pebble's default (5 years).
	CertValidity time.Duration
	// ListenHost is the IP address Pebble's ACME directory listens on
	// (Pebble.Dir), which its listener certificate names too: an address
	// of this machine that the clients reach, such as the gateway of a
	// cluster's network (Cluster.Gateway) for Interlock inside the nodes.
	// Empty: 127.0.0.1. Its management interface and the mock DNS stay
	// on 127.0.0.1.
	ListenHost string
}

// StartPebbleWith is StartPebble with more settings.
func StartPebbleWith(t testing.TB, pc PebbleConfig) *Pebble {
	t.Helper()
	httpPort, tlsPort := pc.HTTPPort, pc.TLSPort
	pebblePath, dnsPath := needPebble(t)
	listen := pc.ListenHost
	if listen == "" {
		listen = "127.0.0.1"
	}
	listenIP := net.ParseIP(listen)
	if listenIP == nil {
		t.Fatalf("PebbleConfig.ListenHost %q: want an IP address", listen)
	}
	dir := t.TempDir()
	certPEM, keyPEM, roots := pebbleListenerCert(t, listenIP)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dnsPort, dnsMgmtPort := freeLoopbackPort(t, true), freeLoopbackPort(t, false)
	acmePort, mgmtPort := freeLoopbackPort(t, false), freeLoopbackPort(t, false)
	settings := map[string]any{
		"listenAddress":                  net.JoinHostPort(listen, strconv.Itoa(acmePort)),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    write("cert.pem", certPEM),
		"privateKey":                     write("key.pem", keyPEM),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}
	if pc.CertValidity > 0 {
		settings["certificateValidityPeriod"] = int(pc.CertValidity / time.Second)
	}
	cfg, _ := json.Marshal(map[string]any{"pebble": settings})
	cfgPath := write("pebble.json", cfg)
	pb := &Pebble{
		Dir:     "https://" + net.JoinHostPort(listen, strconv.Itoa(acmePort)) + "/dir",
		Roots:   roots,
		RootPEM: certPEM,
		mgmt:    fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		dnsMgmt: fmt.Sprintf("http://127.0.0.1:%d", dnsMgmtPort),
		log:     &processOutput{},
	}
	pb.Log = pb.log
	dnsLog := &processOutput{}
	startProcess(t, dnsLog, nil, dnsPath,
		"-dns01", fmt.Sprintf("127.0.0.1:%d", dnsPort), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", dnsMgmtPort))
	waitURL(t, "challtestsrv", pb.dnsMgmt+"/", nil, dnsLog)
	startProcess(t, pb.log, []string{
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_VA_ALWAYS_VALID=0", // and for real
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce: deterministic runs
		"PEBBLE_AUTHZREUSE=0",      // every order validates its names
	}, pebblePath, "-config", cfgPath, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort), "-strict=false")
	waitURL(t, "pebble", pb.Dir, roots, pb.log)
	return pb
}

// startProcess starts a command whose output goes to out, killed and waited for
// when the test ends.
func startProcess(t testing.TB, out io.Writer, env []string, path string, args ...string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not exit", path)
		}
	})
}

// waitURL waits until url answers (any status).
func waitURL(t testing.TB, what, url string, roots *x509.CertPool, log fmt.Stringer) {
	t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := c.Get(url)
		if err == nil {
			res.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up at %s: %v\n%s", what, url, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// IssuingRoot returns the root Pebble issues under, from its management
// interface (a new one every start).
func (pb *Pebble) IssuingRoot(t testing.TB) *x509.CertPool {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pb.Roots}}}
	defer c.CloseIdleConnections()
	res, err := c.Get(pb.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	pool := x509.NewCertPool()
	if res.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %s %q", res.Status, b)
	}
	return pool
}

// Resolve makes the mock DNS answer name with ip (A record); keep ip on
// loopback, or on the project's own containers (a cluster's nodes).
func (pb *Pebble) Resolve(t testing.TB, name, ip string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"host": name, "addresses": []string{ip}})
	res, err := http.Post(pb.dnsMgmt+"/add-a", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("add-a %s: %s", name, res.Status)
	}
}

// Orders counts the orders Pebble received (new-order requests).
func (pb *Pebble) Orders() int {
	return strings.Count(pb.log.String(), "POST /order-plz")
}

// pebbleListenerCert makes the certificate of Pebble's own HTTPS listener (the
// Debian package ships none), naming 127.0.0.1 and ip, and the pool that
// trusts it.
func pebbleListenerCert(t testing.TB, ip net.IP) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "pebble test listener"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), ip},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pool
}
