package testenv

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNginxImage runs the FROM scratch nginx image and gets the bootstrap
// configuration's answer.
func TestNginxImage(t *testing.T) {
	NginxBinary(t)
	e := Require(t)
	c := e.RunNginx(t, NginxSpec{Ports: []uint16{80}})
	url := fmt.Sprintf("http://127.0.0.1:%d/", c.Ports[80])
	hc := &http.Client{Timeout: time.Second}
	WaitFor(t, 15*time.Second, "the nginx container answering", func() error {
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
}
