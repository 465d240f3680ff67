package builtin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// SNI passthrough (routing.TLS.Passthrough, com.docker.lb.ssl_passthrough):
// the HTTPS listener reads each connection's ClientHello, and when its
// server name belongs to a passthrough host the connection is relayed
// byte for byte to one of that host's backends, which terminates TLS
// itself. Every other connection goes on to the proxy's own TLS server
// with the bytes read so far replayed. A table without passthrough hosts
// costs nothing: connections are handed over unread.

// helloTimeout bounds how long a client may take to send its ClientHello.
const helloTimeout = 10 * time.Second

// errHelloRead stops the handshake used to parse a ClientHello once it is
// read: nothing is ever answered on that connection.
var errHelloRead = errors.New("client hello read")

// readClientHello reads the ClientHello from r and returns the server name
// it asks for ("" when it names none) and the bytes read, which the caller
// replays. crypto/tls parses the record; the handshake is abandoned in
// GetConfigForClient, before anything is written.
func readClientHello(r io.Reader) (serverName string, peeked []byte, err error) {
	var buf bytes.Buffer
	var hello *tls.ClientHelloInfo
	conn := readOnlyConn{r: io.TeeReader(r, &buf)}
	err = tls.Server(conn, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = h
			return nil, errHelloRead
		},
	}).Handshake()
	if hello == nil {
		return "", buf.Bytes(), err
	}
	return hello.ServerName, buf.Bytes(), nil
}

// readOnlyConn is the connection readClientHello hands crypto/tls: reads
// come from r, writes (the alert after the abandoned handshake) go nowhere.
type readOnlyConn struct {
	net.Conn
	r io.Reader
}

func (c readOnlyConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c readOnlyConn) Write(p []byte) (int, error)        { return 0, io.ErrClosedPipe }
func (c readOnlyConn) Close() error                       { return nil }
func (c readOnlyConn) SetDeadline(time.Time) error        { return nil }
func (c readOnlyConn) SetReadDeadline(time.Time) error    { return nil }
func (c readOnlyConn) SetWriteDeadline(time.Time) error   { return nil }
func (c readOnlyConn) LocalAddr() net.Addr                { return nil }
func (c readOnlyConn) RemoteAddr() net.Addr               { return nil }
func (c readOnlyConn) ReadFrom(io.Reader) (int64, error)  { return 0, io.ErrClosedPipe }
func (c readOnlyConn) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, c.r) }

// replayConn is a connection whose first bytes were already read: they are
// read again first.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sniListener is the HTTPS listener seen by the TLS server: it keeps the
// passthrough connections for itself.
type sniListener struct {
	net.Listener
	p        *Proxy
	accepted chan acceptResult
	done     chan struct{}
	once     sync.Once
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// passthroughListener wraps ln for ServeTLS.
func (p *Proxy) passthroughListener(ln net.Listener) net.Listener {
	l := &sniListener{Listener: ln, p: p, accepted: make(chan acceptResult), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *sniListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// Handed on as is: the server retries temporary errors and
			// stops on the others (a closed listener).
			select {
			case l.accepted <- acceptResult{err: err}:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if len(l.p.table.Load().passthrough) == 0 {
			l.handOver(c)
			continue
		}
		go l.route(c)
	}
}

// handOver gives c to the TLS server.
func (l *sniListener) handOver(c net.Conn) {
	select {
	case l.accepted <- acceptResult{conn: c}:
	case <-l.done:
		c.Close()
	}
}

// route reads c's ClientHello and relays it to a passthrough host's
// backend, or hands it, replayed, to the TLS server.
func (l *sniListener) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(helloTimeout))
	name, peeked, err := readClientHello(c)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		// Not TLS, or cut short: the TLS server gives the same bytes its
		// own answer (and logs it at debug level).
		l.handOver(&replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(peeked), c)})
		return
	}
	rt := l.p.table.Load().passthrough[hostname(name)]
	if rt == nil {
		l.handOver(&replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(peeked), c)})
		return
	}
	l.p.relay(c, rt, peeked)
}

func (l *sniListener) Accept() (net.Conn, error) {
	select {
	case r := <-l.accepted:
		return r.conn, r.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *sniListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// relay connects c, whose first bytes are peeked, to a backend of rt and
// copies both ways until both sides are done. A backend that refuses the
// connection is ejected and the next one tried, as for HTTP: nothing was
// sent to it yet.
func (p *Proxy) relay(c net.Conn, rt *route, peeked []byte) {
	defer c.Close()
	client := clientIP(c.RemoteAddr().String())
	var triedBuf [8]int
	tried := triedBuf[:0]
	for range rt.backends {
		now := p.clock.now()
		i := rt.nextAttempt(now, client, tried, -1) // no cookie in a TLS stream
		if i < 0 {
			break
		}
		tried = append(tried, i)
		b := &rt.backends[i]
		ctx, cancel := context.WithTimeout(context.Background(), rt.dialTimeout)
		up, err := (&net.Dialer{}).DialContext(ctx, "tcp", b.addr)
		cancel()
		if err != nil {
			b.state.failures.Add(1)
			if b.state.eject(now, p.ejectFor) {
				p.log.Warn("backend ejected after a connect failure", "host", rt.host, "passthrough", true,
					"backend", b.addr, "name", b.name, "for", p.ejectFor, "error", err)
			}
			continue
		}
		b.state.begin()
		defer b.state.end()
		defer up.Close()
		if _, err := up.Write(peeked); err != nil {
			return
		}
		splice(c, up)
		return
	}
	p.counters.noRoute.Add(1)
	p.log.Debug("passthrough: no backend took the connection", "host", rt.host, "client", client)
}

// splice copies a to b and b to a, half-closing each direction when its
// source ends, and returns once both are done.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() { copyHalf(b, a) })
	copyHalf(a, b)
	wg.Wait()
}

func copyHalf(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}
