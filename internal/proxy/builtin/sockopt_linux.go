package builtin

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout bounds, with TCP_USER_TIMEOUT, how long data sent on a
// backend connection may stay unacknowledged before the kernel gives up on
// it. A backend whose machine is gone (power, network) never acknowledges
// or resets anything: without the bound, a request sent on a kept-alive
// connection to it waits forever. A live backend acknowledges at once,
// however slowly it answers, so slow requests are not cut.
func setUserTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	ms := int(d / time.Millisecond)
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, ms)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// peerClosed reports whether the peer of an idle connection has closed or
// reset it, or sent something unasked (the connection is out of step
// then): one non-blocking peek at the socket, nothing consumed. A
// connection that cannot be asked counts as open.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = n > 0 || (n == 0 && err == nil) || (err != nil && err != unix.EAGAIN && err != unix.EINTR)
		return true // never wait for readiness
	})
	return closed
}
