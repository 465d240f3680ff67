package builtin

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// newUpgradeBackend answers an "Upgrade: echo" request with 101 and then
// echoes every byte; it switches to answerProto (default "echo").
func newUpgradeBackend(t testing.TB, answerProto string) *httptest.Server {
	t.Helper()
	if answerProto == "" {
		answerProto = "echo"
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + answerProto + "\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// upgrade opens a connection to the proxy and asks for the echo protocol.
func upgrade(t testing.TB, srv *httptest.Server, host string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/socket", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	return conn, br, res
}

func echoes(t testing.TB, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		t.Fatalf("write to tunnel: %v", err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("tunnel echoed %q, %v; want %q", got, err, msg)
	}
}

// closedByPeer waits for the tunnel to end from the proxy's side.
func closedByPeer(t testing.TB, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := br.ReadByte()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("tunnel still open (read: %v), want it closed by the proxy", err)
	}
}

func tunnels(p *Proxy) int { return p.engine.(*httpEngine).tunnels.len() }

func TestUpgradeTunnel(t *testing.T) {
	be := newUpgradeBackend(t, "")
	other := newBackend(t, "other")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("ws.example", routeOf("/", addr(be)))))
	srv := serve(t, p)

	conn, br, res := upgrade(t, srv, "ws.example")
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade answered %s Upgrade=%q, want 101 echo", res.Status, res.Header.Get("Upgrade"))
	}
	echoes(t, conn, br, "ping")
	if n, s := tunnels(p), statsOf(t, p, addr(be)); n != 1 || s.InFlight != 1 {
		t.Fatalf("%d tunnels, backend in flight %d; want 1 and 1", n, s.InFlight)
	}

	t.Run("apply does not wait for the tunnel", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { done <- p.Apply(t.Context(), tableOf(hostOf("ws.example", routeOf("/", addr(other))))) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Apply blocked behind an open tunnel")
		}
		echoes(t, conn, br, "still there")
		if res := get(t, srv, "ws.example", "/"); res.echo.Backend != "other" {
			t.Errorf("new requests reach %q, want the new table's backend", res.echo.Backend)
		}
	})

	t.Run("close ends the tunnel", func(t *testing.T) {
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		closedByPeer(t, conn, br)
		eventually(t, 5*time.Second, "no tunnel tracked", func() bool { return tunnels(p) == 0 })
	})

	t.Run("upgrade after close is ended at once", func(t *testing.T) {
		mustApply(t, p, tableOf(hostOf("ws.example", routeOf("/", addr(be)))))
		conn, br, res := upgrade(t, srv, "ws.example")
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %s, want 101", res.Status)
		}
		closedByPeer(t, conn, br)
		eventually(t, 5*time.Second, "backend idle", func() bool { return statsOf(t, p, addr(be)).InFlight == 0 })
	})
}

func TestUpgradeProtocolMismatch(t *testing.T) {
	be := newUpgradeBackend(t, "other-protocol")
	p := newTestProxy(t, Options{}, nil)
	mustApply(t, p, tableOf(hostOf("ws.example", routeOf("/", addr(be)))))
	srv := serve(t, p)

	_, _, res := upgrade(t, srv, "ws.example")
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("upgrade answered %s, want 502 for a backend switching to another protocol", res.Status)
	}
	if n := tunnels(p); n != 0 {
		t.Errorf("%d tunnels tracked, want 0", n)
	}
	eventually(t, 5*time.Second, "backend connection released", func() bool { return statsOf(t, p, addr(be)).InFlight == 0 })
}
