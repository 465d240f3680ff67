package nginx

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"
)

// Edge is what nginx believes about its clients, what it writes down about
// them, and how long and how much it lets them take: Interlock's settings
// --proxy-protocol-trusted-ips to --max-body-bytes (internal/config) in
// nginx's terms (README.md, "Edge"). The zero value renders the file as it
// was before these settings: no PROXY protocol, forwarded headers always
// replaced, no access log, nginx's own timeouts with a 1 s connect timeout,
// nginx's own header buffers and no body limit.
type Edge struct {
	// ProxyProtocolTrusted turns the PROXY protocol on for the HTTP and
	// HTTPS listeners (and the stream server of SNI passthrough): listen
	// ... proxy_protocol. nginx then requires the header on every
	// connection to them, and believes the address in it only from these
	// networks (set_real_ip_from, real_ip_header proxy_protocol); anyone
	// else is served under the address it connects from. Empty: off.
	ProxyProtocolTrusted []netip.Prefix
	// ForwardedTrusted are the peers (after the PROXY protocol, the
	// address its header names) whose X-Forwarded-For is appended to and
	// whose X-Forwarded-Proto, X-Forwarded-Host and Forwarded are kept.
	// Empty: they are always replaced (DESIGN.md invariant 8).
	ForwardedTrusted []netip.Prefix
	// AccessLog is the access log: an absolute file path as nginx sees it,
	// AccessLogStdout for nginx's standard output (which a supervised
	// nginx shares with Options.Stdout), or "" for none.
	AccessLog string
	// AccessLogFormat is AccessLogCommon ("" too) or AccessLogJSON.
	AccessLogFormat string
	// ClientReadHeaderTimeout is client_header_timeout (the request line
	// and headers, and a PROXY header); ClientReadTimeout
	// client_body_timeout (between two reads of the body); ClientIdleTimeout
	// keepalive_timeout. 0 leaves nginx's own (60s, 60s, 75s).
	ClientReadHeaderTimeout, ClientReadTimeout, ClientIdleTimeout time.Duration
	// BackendConnectTimeout is proxy_connect_timeout (http and stream); 0
	// means 1s. BackendResponseHeaderTimeout is proxy_read_timeout (between
	// two reads of the response, headers or body); 0 leaves nginx's 60s.
	// BackendIdleTimeout is the upstreams' keepalive_timeout; 0 leaves
	// nginx's 60s.
	BackendConnectTimeout, BackendResponseHeaderTimeout, BackendIdleTimeout time.Duration
	// MaxHeaderBytes is large_client_header_buffers 1 SIZE: no request
	// line or header line longer than SIZE, and the head at most SIZE plus
	// the first 1 KiB buffer; past it nginx answers 400 (414 for the
	// request line). 0 leaves nginx's "4 8k". At least 1 KiB, at most
	// 64 MiB.
	MaxHeaderBytes int64
	// MaxBodyBytes is client_max_body_size: past it nginx answers 413 (at
	// once by Content-Length, otherwise when the body grows past it), with
	// the built-in proxy's X-Interlock-Error: body-too-large and text. 0:
	// no limit.
	MaxBodyBytes int64
}

// The access log formats (Edge.AccessLogFormat) and the standard output
// path (Edge.AccessLog).
const (
	AccessLogCommon = "common"
	AccessLogJSON   = "json"
	AccessLogStdout = "-"
)

// Limits of Edge.MaxHeaderBytes.
const (
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 64 << 20
)

// stdoutPath is what nginx opens for an access log on its standard output.
const stdoutPath = "/dev/stdout"

// EdgeView is Edge in nginx's terms, for templates (View.Edge). Every
// string is a checked bare word.
type EdgeView struct {
	// ProxyProtocol is true when the HTTP and HTTPS listeners and the
	// stream server take a PROXY protocol header (listen ...
	// proxy_protocol); RealIPFrom are the networks believed
	// (set_real_ip_from), as CIDR prefixes.
	ProxyProtocol bool
	RealIPFrom    []string
	// ForwardedFrom are the networks whose forwarded headers are kept (the
	// geo block of $interlock_forwarded_trusted); empty: always replaced.
	ForwardedFrom []string
	// AccessLog is nil without an access log.
	AccessLog *AccessLogView
	// ClientHeaderTimeout, ClientBodyTimeout and KeepaliveTimeout are the
	// http{} directives of the same names; "" leaves one out.
	ClientHeaderTimeout, ClientBodyTimeout, KeepaliveTimeout string
	// ProxyProtocolTimeout is the stream server's proxy_protocol_timeout
	// (ClientReadHeaderTimeout, with ProxyProtocol); "" leaves it out.
	ProxyProtocolTimeout string
	// ConnectTimeout is proxy_connect_timeout, in http{} and in the stream
	// servers: always set ("1s" by default).
	ConnectTimeout string
	// ReadTimeout is proxy_read_timeout in http{} (websocket endpoints keep
	// their 1h); "" leaves it out.
	ReadTimeout string
	// UpstreamKeepaliveTimeout is keepalive_timeout in every http
	// upstream; "" leaves it out.
	UpstreamKeepaliveTimeout string
	// LargeClientHeaderBuffers is the large_client_header_buffers argument
	// pair ("1 64k"); "" leaves it out.
	LargeClientHeaderBuffers string
	// ClientMaxBodySize is client_max_body_size ("0": no limit).
	ClientMaxBodySize string
	// MaxBodyBytes is the limit in bytes, for the 413 answer; 0: no limit
	// (and no error_page).
	MaxBodyBytes int64
}

// AccessLogView is the access log in nginx's terms.
type AccessLogView struct {
	// Path is the access_log file: an absolute path, or /dev/stdout.
	Path string
	// JSON selects the json format (log_format interlock_json
	// escape=json), else the common one (interlock_common).
	JSON bool
}

// Format is the log_format name of the view's format.
func (a AccessLogView) Format() string {
	if a.JSON {
		return "interlock_json"
	}
	return "interlock_common"
}

// edgeView checks e and turns it into nginx's terms.
func edgeView(e Edge) (EdgeView, error) {
	v := EdgeView{ConnectTimeout: "1s", ClientMaxBodySize: "0"}
	var err error
	if v.RealIPFrom, err = cidrs("proxy protocol trusted networks", e.ProxyProtocolTrusted); err != nil {
		return EdgeView{}, err
	}
	v.ProxyProtocol = len(v.RealIPFrom) > 0
	if v.ForwardedFrom, err = cidrs("forwarded headers trusted networks", e.ForwardedTrusted); err != nil {
		return EdgeView{}, err
	}
	switch e.AccessLogFormat {
	case "", AccessLogCommon, AccessLogJSON:
	default:
		return EdgeView{}, fmt.Errorf("access log format %q: want %s or %s", e.AccessLogFormat, AccessLogCommon, AccessLogJSON)
	}
	switch p := e.AccessLog; {
	case p == "":
	case p == AccessLogStdout:
		v.AccessLog = &AccessLogView{Path: stdoutPath, JSON: e.AccessLogFormat == AccessLogJSON}
	case !filepath.IsAbs(p):
		return EdgeView{}, fmt.Errorf("access log %q: want an absolute path (as nginx sees it) or %q for nginx's standard output", p, AccessLogStdout)
	default:
		if _, err := nginxString(p); err != nil {
			return EdgeView{}, fmt.Errorf("access log %q cannot be written into nginx.conf: %w", p, err)
		}
		v.AccessLog = &AccessLogView{Path: p, JSON: e.AccessLogFormat == AccessLogJSON}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		out  *string
	}{
		{"client read header timeout", e.ClientReadHeaderTimeout, &v.ClientHeaderTimeout},
		{"client read timeout", e.ClientReadTimeout, &v.ClientBodyTimeout},
		{"client idle timeout", e.ClientIdleTimeout, &v.KeepaliveTimeout},
		{"backend connect timeout", e.BackendConnectTimeout, &v.ConnectTimeout},
		{"backend response header timeout", e.BackendResponseHeaderTimeout, &v.ReadTimeout},
		{"backend idle timeout", e.BackendIdleTimeout, &v.UpstreamKeepaliveTimeout},
	} {
		switch {
		case d.v < 0:
			return EdgeView{}, fmt.Errorf("%s %v is negative; want 0 (nginx's default) or at least 1ms", d.name, d.v)
		case d.v > 0 && d.v < time.Millisecond:
			return EdgeView{}, fmt.Errorf("%s %v is shorter than nginx's 1ms resolution", d.name, d.v)
		case d.v > 0:
			*d.out = nginxDuration(d.v)
		}
	}
	if v.ProxyProtocol {
		v.ProxyProtocolTimeout = v.ClientHeaderTimeout
	}
	switch n := e.MaxHeaderBytes; {
	case n == 0:
	case n < minHeaderBytes || n > maxHeaderBytes:
		return EdgeView{}, fmt.Errorf("max header bytes %d is out of range; want %d to %d, or 0 for nginx's default", n, minHeaderBytes, maxHeaderBytes)
	default:
		v.LargeClientHeaderBuffers = "1 " + nginxSize(n)
	}
	switch n := e.MaxBodyBytes; {
	case n < 0:
		return EdgeView{}, fmt.Errorf("max body bytes %d is negative; want 0 (no limit) or more", n)
	case n > 0:
		v.ClientMaxBodySize, v.MaxBodyBytes = nginxSize(n), n
	}
	return v, nil
}

// cidrs checks prefixes as config.ParseCIDRs makes them (no host bits, no
// zone, no IPv4-mapped IPv6) and writes them as nginx reads them.
func cidrs(what string, ps []netip.Prefix) ([]string, error) {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		switch {
		case !p.IsValid():
			return nil, fmt.Errorf("%s: %v is not a CIDR prefix", what, p)
		case p.Masked() != p:
			return nil, fmt.Errorf("%s: %s has bits set after its prefix length; want %s", what, p, p.Masked())
		case p.Addr().Zone() != "" || p.Addr().Is4In6():
			return nil, fmt.Errorf("%s: %s is not a plain IPv4 or IPv6 prefix", what, p)
		}
		out = append(out, p.String())
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// nginxDuration writes d in nginx's time syntax: whole seconds as "30s",
// anything else in milliseconds, rounded up ("1500ms").
func nginxDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
}

// nginxSize writes n bytes in nginx's size syntax: "10m", "64k" or bytes.
func nginxSize(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "m"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// logRoute is the access log's route field, "HOST/PATH" as the built-in
// proxy writes it ("app.example/api", "app.example/"): host names and
// route paths are checked grammars, so it is a plain nginx string.
func logRoute(host, path string) string { return host + path }
