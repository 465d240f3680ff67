package testenv

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxyImages runs each FROM scratch proxy image and gets its
// bootstrap configuration's answer.
func TestProxyImages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		binary func(testing.TB) string
		run    func(*Env, testing.TB, ProxySpec) ProxyContainer
	}{
		{"nginx", NginxBinary, (*Env).RunNginx},
		{"haproxy", HAProxyBinary, (*Env).RunHAProxy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.binary(t)
			e := Require(t)
			c := tc.run(e, t, ProxySpec{Ports: []uint16{80}})
			url := fmt.Sprintf("http://127.0.0.1:%d/", c.Ports[80])
			hc := &http.Client{Timeout: time.Second}
			WaitFor(t, 15*time.Second, "the "+tc.name+" container answering", func() error {
				resp, err := hc.Get(url)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "no configuration yet") {
					return fmt.Errorf("got %d %q", resp.StatusCode, b)
				}
				return nil
			})
		})
	}
}
