package testenv

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestWaitForRetriesUntilNil(t *testing.T) {
	calls := 0
	WaitFor(t, 5*time.Second, "third call", func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestFreePortIsBindable(t *testing.T) {
	p := FreePort(t)
	if p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d, want 1-65535", p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("listen on free port %d: %v", p, err)
	}
	ln.Close()
}
