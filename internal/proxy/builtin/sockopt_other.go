//go:build !linux

package builtin

import (
	"syscall"
	"time"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist: there,
// only the connect timeout and TCP keep-alives find a vanished backend.
func setUserTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
