package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

// tunnel is one upgraded connection; the handler tracks them so shutdown
// can close them (http.Server.Shutdown ignores hijacked connections).
type tunnel struct{ conn net.Conn }

// upgrade answers any Upgrade request (WebSocket or other) with 101, then
// echoes raw bytes until the client closes its side. There is no WebSocket
// framing: tests check that the proxy keeps a two-way tunnel open.
func (h *handler) upgrade(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		fmt.Fprintln(os.Stderr, "backend: hijack:", err)
		return
	}
	tn := &tunnel{conn: conn}
	h.mu.Lock()
	h.tunnels[tn] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.tunnels, tn)
		h.mu.Unlock()
		_ = conn.Close()
	}()

	_, err = fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\nX-Backend: %s\r\n\r\n",
		sanitize(r.Header.Get("Upgrade")), h.name)
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		return
	}
	// rw.Reader first returns whatever the client sent right after its
	// request, then reads from the connection.
	_, _ = io.Copy(conn, rw.Reader)
}

// closeTunnels ends every open upgraded connection.
func (h *handler) closeTunnels() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for tn := range h.tunnels {
		_ = tn.conn.Close()
	}
}

// sanitize keeps a header value on one line.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' {
			b[i] = ' '
		}
	}
	return string(b)
}
