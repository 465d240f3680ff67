//go:build !linux

package builtin

import (
	"net"
	"syscall"
	"time"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist: there,
// only the connect timeout and TCP keep-alives find a vanished backend.
func setUserTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}

// peerClosed cannot peek at a socket here: an idle connection counts as
// open, and a request on one the backend closed fails as before.
func peerClosed(net.Conn) bool { return false }
