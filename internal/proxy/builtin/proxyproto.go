package builtin

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// PROXY protocol (v1 text and v2 binary, as HAProxy's send-proxy and
// send-proxy-v2 write it) on the proxy's listeners, for a TCP load balancer
// in front of Interlock that would otherwise hide every client behind its
// own address.
//
// Trust is per connection, by the address that connected
// (Options.ProxyProtocolTrusted):
//
//   - from a trusted address the header is optional: with one, its source
//     address becomes the connection's RemoteAddr, so it reaches
//     X-Forwarded-For, the access log and source balancing; without one
//     (the balancer's own health checks, an operator's curl) the
//     connection is served as it is. A header cannot be required without
//     also cutting off those, and a trusted peer could state any address
//     anyway;
//   - from anyone else a connection that starts with a PROXY header is
//     closed without an answer (and logged, at most once per 10s): a
//     client must not choose the address it is seen as;
//   - a header that does not parse, from anyone, closes the connection too.
//
// The header is read lazily, on the connection's own goroutine (the first
// Read or RemoteAddr), never in the accept loop, and within the server's
// ReadHeaderTimeout (else its ReadTimeout). On the HTTPS listener it comes
// before the ClientHello, so the wrapping happens beneath the SNI reader
// (ServeTLS). It is never forwarded: passthrough backends see a plain TLS
// stream from the proxy's address.

// refusedLogEvery bounds how often a refused PROXY header is logged.
const refusedLogEvery = 10 * time.Second

// Serve serves p over plain HTTP on ln with srv until srv is shut down (it
// returns http.ErrServerClosed then, like http.Server.Serve). A nil
// srv.Handler becomes p. With Options.ProxyProtocolTrusted set, ln's
// connections may start with a PROXY protocol header (see above);
// timeouts, limits and the rest of srv are the caller's.
func (p *Proxy) Serve(srv *http.Server, ln net.Listener) error {
	if srv.Handler == nil {
		srv.Handler = p
	}
	return srv.Serve(p.proxyProtocolListener(ln, srv))
}

// proxyProtocolListener wraps ln so that its connections may carry a PROXY
// header from trusted addresses; ln itself when nobody is trusted.
func (p *Proxy) proxyProtocolListener(ln net.Listener, srv *http.Server) net.Listener {
	if len(p.proxyTrusted) == 0 {
		return ln
	}
	timeout := srv.ReadHeaderTimeout
	if timeout <= 0 {
		timeout = srv.ReadTimeout
	}
	if timeout <= 0 {
		timeout = -1 // no limit, as the server has none (proxyproto: negative disables)
	}
	return &ppListener{
		Listener: &proxyproto.Listener{
			Listener:          ln,
			ConnPolicy:        p.proxyPolicy,
			ReadHeaderTimeout: timeout,
		},
		p: p,
	}
}

// proxyPolicy honours a header from trusted addresses and refuses one from
// the rest.
func (p *Proxy) proxyPolicy(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
	if p.proxyTrusted.containsAddr(o.Upstream) {
		return proxyproto.USE, nil
	}
	return proxyproto.REJECT, nil
}

// ppListener hands out ppConns.
type ppListener struct {
	net.Listener
	p *Proxy
}

func (l *ppListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		return &ppConn{Conn: pc, p: l.p}, nil
	}
	return c, nil
}

// ppConn is a proxyproto.Conn that closes itself when its header is
// refused or broken, and reports the failure as a read error net/http and
// crypto/tls drop silently (no "400 Bad Request" is written to a client
// that is not allowed to talk to us this way). It keeps CloseWrite, so a
// passthrough relay still half-closes.
//
// Once the first Read is through, the header is behind it: reads and
// deadlines then go straight to the connection, skipping go-proxyproto's
// bookkeeping (it boxes every read deadline into an atomic.Value, an
// allocation net/http would pay several times per request).
type ppConn struct {
	*proxyproto.Conn
	p *Proxy
	// state is ppPending until the first Read returns, then ppOpen or
	// ppRefused; refusedErr is set before ppRefused is stored.
	state      atomic.Int32
	refusedErr error
}

const (
	ppPending = iota
	ppOpen
	ppRefused
)

func (c *ppConn) Read(b []byte) (int, error) {
	switch c.state.Load() {
	case ppOpen:
		return c.Conn.Read(b)
	case ppRefused:
		return 0, c.refusedErr
	}
	n, err := c.Conn.Read(b)
	if err != nil && n == 0 && isHeaderError(err) {
		raw := c.Conn.Raw()
		raw.Close()
		c.refusedErr = &net.OpError{Op: "read", Net: "tcp", Source: raw.LocalAddr(), Addr: raw.RemoteAddr(), Err: err}
		c.state.Store(ppRefused)
		c.p.logRefusedHeader(raw.RemoteAddr(), err)
		return 0, c.refusedErr
	}
	c.state.Store(ppOpen)
	return n, err
}

func (c *ppConn) SetReadDeadline(t time.Time) error {
	if c.state.Load() == ppOpen {
		return c.Conn.Raw().SetReadDeadline(t)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *ppConn) SetDeadline(t time.Time) error {
	if c.state.Load() == ppOpen {
		return c.Conn.Raw().SetDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes the underlying connection.
func (c *ppConn) CloseWrite() error {
	if cw, ok := c.Conn.Raw().(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// isHeaderError reports whether err is go-proxyproto's verdict on the
// header (refused, malformed), as opposed to an I/O error on the
// connection. Its errors all start with "proxyproto: ".
func isHeaderError(err error) bool {
	if _, io := err.(*net.OpError); io {
		return false
	}
	return errors.Is(err, proxyproto.ErrSuperfluousProxyHeader) || strings.HasPrefix(err.Error(), "proxyproto: ")
}

// logRefusedHeader logs a connection closed for its PROXY header, at most
// once per refusedLogEvery; the lines in between are counted.
func (p *Proxy) logRefusedHeader(from net.Addr, err error) {
	now := p.clock.now()
	last := p.ppLogged.Load()
	if last != 0 && now-last < int64(refusedLogEvery) || !p.ppLogged.CompareAndSwap(last, now) {
		p.ppSuppressed.Add(1)
		return
	}
	client := ""
	if from != nil {
		client = from.String()
	}
	msg := "PROXY protocol header from an address not in --proxy-protocol-trusted-ips: connection closed (add the load balancer's address if it is one)"
	if !errors.Is(err, proxyproto.ErrSuperfluousProxyHeader) {
		msg = "malformed PROXY protocol header: connection closed"
	}
	p.log.Warn(msg, "client", client, "trusted", p.proxyTrusted.String(), "error", err,
		"suppressed_since_last", p.ppSuppressed.Swap(0))
}
