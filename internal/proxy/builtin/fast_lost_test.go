package builtin

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// deadConn is a backend connection that takes the request and then fails
// every read with err, as the kernel does when TCP_USER_TIMEOUT cuts a
// connection to a node that is gone (ETIMEDOUT), or a read deadline
// passes (a slow backend).
type deadConn struct {
	net.Conn
	err error
}

func (c deadConn) Read([]byte) (int, error)         { return 0, c.err }
func (c deadConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c deadConn) Close() error                     { return nil }
func (c deadConn) SetDeadline(time.Time) error      { return nil }
func (c deadConn) SetReadDeadline(time.Time) error  { return nil }
func (c deadConn) SetWriteDeadline(time.Time) error { return nil }
func (c deadConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c deadConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }

// TestFastLostConnectionIsRetriable: on the fast path, a connection the
// kernel cut because the backend acknowledged nothing (its node is gone)
// is a lost connection, which the retry loop sends to another backend
// when the request is idempotent; fasthttp on its own would make it
// ErrTimeout, a slow backend's 504. A read deadline stays a timeout.
func TestFastLostConnectionIsRetriable(t *testing.T) {
	cut := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	for _, tc := range []struct {
		name          string
		err           error
		lost, timeout bool
	}{
		{name: "cut by the kernel (ETIMEDOUT)", err: cut, lost: true},
		{name: "read deadline (slow backend)", err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, timeout: true},
		{name: "reset", err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, lost: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := &fasthttp.HostClient{Addr: "backend:80", MaxIdemponentCallAttempts: 1,
				Dial: func(string) (net.Conn, error) {
					c := &fastConn{Conn: deadConn{err: tc.err}}
					c.local.c = c
					return c, nil
				}}
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			req.SetRequestURI("http://backend/")
			err := hc.Do(req, res)
			if err == nil {
				t.Fatal("Do succeeded on a dead connection")
			}
			if got := connectionLostFast(err); got != tc.lost {
				t.Errorf("connectionLostFast(%v) = %v, want %v", err, got, tc.lost)
			}
			if got := errors.Is(err, fasthttp.ErrTimeout); got != tc.timeout {
				t.Errorf("errors.Is(%v, ErrTimeout) = %v, want %v", err, got, tc.timeout)
			}
		})
	}
}
