package builtin

import (
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
