package builtin

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// Transport tuning. A proxy talks to few hosts, a lot: keep many idle
// connections per backend so bursts reuse them instead of dialing.
const (
	maxIdleConns        = 1024
	maxIdleConnsPerHost = 256
	idleConnTimeout     = 90 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	tcpKeepAlive        = 30 * time.Second
	// unackedTimeout is the TCP_USER_TIMEOUT of backend connections: a
	// backend that acknowledges nothing for this long is gone (its node
	// died), and the request is retried elsewhere when it is idempotent.
	unackedTimeout = 3 * time.Second
	bufferSize     = 32 << 10
)

// newTransport returns an http.Transport tuned for a reverse proxy. tlsConf
// is nil for plain-HTTP backends.
func newTransport(d *dialer, tlsConf *tls.Config) *http.Transport {
	return &http.Transport{
		// Backends are reached directly, never through HTTP_PROXY.
		Proxy:               nil,
		DialContext:         d.DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: tlsHandshakeTimeout,
		MaxIdleConns:        maxIdleConns,
		MaxIdleConnsPerHost: maxIdleConnsPerHost,
		IdleConnTimeout:     idleConnTimeout,
		// A proxy passes bodies through as they are: no Accept-Encoding
		// added, nothing decompressed.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		// Backends speak HTTP/1.1; h2 to a backend buys nothing here and
		// costs a per-connection multiplexer.
		ForceAttemptHTTP2: false,
	}
}

// dialer dials backends with a short timeout, so a dead backend costs
// little, and marks its failures as dialError: the one error after which a
// request is known not to have reached the backend.
type dialer struct {
	net.Dialer
}

func newDialer(timeout time.Duration) *dialer {
	return &dialer{Dialer: net.Dialer{Timeout: timeout, KeepAlive: tcpKeepAlive, Control: setUserTimeout(unackedTimeout)}}
}

// DialContext is http.Transport.DialContext.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	return c, nil
}

// dialError is a failure to connect to a backend: refused, timed out, no
// route. Nothing of the request was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// bufferPool is httputil.BufferPool over sync.Pool. It stores array
// pointers, not slices, so Put does not allocate a slice header.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[bufferSize]byte); ok {
		return b[:]
	}
	return make([]byte, bufferSize)
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) < bufferSize {
		return
	}
	p.pool.Put((*[bufferSize]byte)(b[:bufferSize]))
}
