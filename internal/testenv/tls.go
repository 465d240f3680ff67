package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// PKI is a throw-away certificate authority with one server certificate
// (for 127.0.0.1 and localhost) and one client certificate, written as PEM
// files in Dir the way Docker expects them under DOCKER_CERT_PATH:
// ca.pem, cert.pem, key.pem (the client), plus server-cert.pem and
// server-key.pem.
type PKI struct {
	Dir                   string
	CA, Cert, Key         string // paths of the client-side files
	ServerCert, ServerKey string
	caCert                *x509.Certificate
	caKey                 *ecdsa.PrivateKey
}

// NewPKI creates the files in a new directory under t.TempDir().
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &PKI{Dir: dir,
		CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"),
		ServerCert: filepath.Join(dir, "server-cert.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
	}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "interlock test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	writePEM(t, p.CA, "CERTIFICATE", der)
	p.issue(t, p.ServerCert, p.ServerKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "manager"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.issue(t, p.Cert, p.Key, &x509.Certificate{
		Subject: pkix.Name{CommonName: "interlock"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return p
}

// issue writes a certificate of this CA for tmpl, and its key.
func (p *PKI) issue(t testing.TB, certPath, keyPath string, tmpl *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certPath, "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyPath, "EC PRIVATE KEY", kb)
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TLSEngine stands for a remote manager's Engine API on port 2376: a TLS
// listener on loopback that demands a client certificate signed by the
// PKI's CA and relays to the local engine socket.
type TLSEngine struct {
	Addr string // tcp://127.0.0.1:PORT
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// NewTLSEngine starts the terminator and stops it when the test ends.
func NewTLSEngine(t testing.TB, p *PKI, socket string) *TLSEngine {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &TLSEngine{Addr: "tcp://" + ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns[c] = true
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.relay(c, socket)
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		e.mu.Lock()
		for c := range e.conns {
			_ = c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *TLSEngine) relay(down net.Conn, socket string) {
	defer down.Close()
	// The handshake happens here, so a refused client certificate ends
	// this connection only.
	if err := down.(*tls.Conn).Handshake(); err != nil {
		return
	}
	up, err := net.Dial("unix", socket)
	if err != nil {
		return
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(up, down); _ = up.Close(); close(done) }()
	_, _ = io.Copy(down, up)
	_ = down.Close()
	<-done
}

// String is for messages.
func (e *TLSEngine) String() string { return fmt.Sprintf("TLS engine at %s", e.Addr) }
