package builtin

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Helpers of the edge tests: PROXY protocol clients, a served proxy with
// its own http.Server settings, and an in-memory access log.

// serveWith runs p.Serve with srv on a loopback port and returns its
// address; srv is closed at cleanup.
func serveWith(t testing.TB, p *Proxy, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.ErrorLog == nil {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// serveTLSWith is serveTLS with srv.
func serveTLSWith(t testing.TB, p *Proxy, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.ErrorLog == nil {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	done := make(chan error, 1)
	go func() { done <- p.ServeTLS(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v, want http.ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// prefixes parses CIDR prefixes for Options.
func prefixes(t testing.TB, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// proxyV1 is a PROXY protocol v1 header claiming the connection comes from
// client (ip:port) to 127.0.0.1:80.
func proxyV1(client string) []byte {
	ap := netip.MustParseAddrPort(client)
	family := "TCP4"
	dst := "127.0.0.1"
	if ap.Addr().Is6() {
		family, dst = "TCP6", "::1"
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d 80\r\n", family, ap.Addr(), dst, ap.Port())
}

// proxyV2 is the same as a PROXY protocol v2 header, as go-proxyproto
// writes it.
func proxyV2(t testing.TB, client string) []byte {
	t.Helper()
	src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client))
	dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	if src.IP.To4() == nil {
		dst = &net.TCPAddr{IP: net.IPv6loopback, Port: 80}
	}
	b, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headerClient is an HTTP client whose every connection to addr starts
// with header (nil: none), optionally with TLS on top, and that keeps no
// connection alive, so each request carries its own header.
func headerClient(t testing.TB, addr string, header []byte, tlsConf *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if header != nil {
				if _, err := c.Write(header); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, nil
		},
		TLSClientConfig:   tlsConf,
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// getEcho sends GET url with Host host through c and decodes the echo.
func getEcho(t testing.TB, c *http.Client, url, host string, hdr http.Header) (int, echo) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var e echo
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
	}
	return res.StatusCode, e
}

// rawExchange writes data on a fresh connection to addr and returns what
// comes back until the server closes it or within elapses.
func rawExchange(t testing.TB, addr string, data []byte, within time.Duration) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(within))
	if _, err := c.Write(data); err != nil {
		return "", err
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	return string(b), err
}

// memoryAccessLog is an access log written to a buffer ("-" with Stdout),
// closed at cleanup.
func memoryAccessLog(t testing.TB, format string) (*AccessLog, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	al, err := OpenAccessLog(AccessLogOptions{Path: "-", Format: format, Stdout: buf, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	return al, buf
}

// accessLines flushes al and returns the non-empty lines of buf.
func accessLines(t testing.TB, al *AccessLog, buf *syncBuffer) []string {
	t.Helper()
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// accessEntry is one JSON access log line.
type accessEntry struct {
	Time       string  `json:"time"`
	Client     string  `json:"client"`
	Host       string  `json:"host"`
	Method     string  `json:"method"`
	Path       string  `json:"path"`
	Query      string  `json:"query"`
	Proto      string  `json:"proto"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	DurationMS float64 `json:"duration_ms"`
	Route      string  `json:"route"`
	Backend    string  `json:"backend"`
}

func parseJSONEntry(t testing.TB, line string) accessEntry {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	var e accessEntry
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("access log line %q is not the JSON object wanted: %v", line, err)
	}
	return e
}
