package haproxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Edge is what HAProxy believes about its clients, what it writes down
// about them, and how long and how much it lets them take: Interlock's
// settings --proxy-protocol-trusted-ips to --max-body-bytes
// (internal/config) in HAProxy's terms (README.md, "Edge"). The zero value
// renders the file as it was before these settings: no PROXY protocol on
// the listeners, forwarded headers always replaced, no access log, the
// timeouts connect 1s, client 60s, server 60s, http-request 30s,
// http-keep-alive 10s, HAProxy's own buffers and no body limit.
type Edge struct {
	// ProxyProtocolTrusted are the networks whose connections to the HTTP
	// and HTTPS listeners must start with a PROXY protocol header (v1 or
	// v2): tcp-request connection expect-proxy layer4 if { src ... }.
	// Connections from anyone else are read as they come, so a PROXY
	// header from them is not HTTP (400) and never believed. Empty: off.
	ProxyProtocolTrusted []netip.Prefix
	// ForwardedTrusted are the peers (after the PROXY protocol, the
	// address its header names) whose X-Forwarded-For is appended to and
	// whose X-Forwarded-Proto, X-Forwarded-Host and Forwarded are kept.
	// Empty: they are always replaced (DESIGN.md invariant 8).
	ForwardedTrusted []netip.Prefix
	// AccessLog is "" (none) or AccessLogStdout: HAProxy's standard output
	// (log stdout format raw), which a supervised HAProxy shares with
	// Options.Stdout and a side-loaded container with its container log.
	// HAProxy cannot write a file itself (it logs to syslog or to its
	// standard streams): a path is refused.
	AccessLog string
	// AccessLogFormat is AccessLogCommon ("" too) or AccessLogJSON.
	AccessLogFormat string
	// ClientReadHeaderTimeout is timeout http-request (the whole head; 0:
	// 30s); ClientReadTimeout timeout client (client-side inactivity, in
	// every frontend; 0: 60s); ClientIdleTimeout timeout http-keep-alive
	// (0: 10s).
	ClientReadHeaderTimeout, ClientReadTimeout, ClientIdleTimeout time.Duration
	// BackendConnectTimeout is timeout connect (0: 1s);
	// BackendResponseHeaderTimeout timeout server (server-side inactivity,
	// headers or body; 0: 60s); BackendIdleTimeout the servers'
	// pool-purge-delay (idle connections to a server are closed, half at a
	// time, every such delay; 0: HAProxy's 5s).
	BackendConnectTimeout, BackendResponseHeaderTimeout, BackendIdleTimeout time.Duration
	// MaxHeaderBytes makes a request whose header block is longer than
	// this a 431 (http-request deny if { req.hdrs,length gt N }); HAProxy's
	// buffer (tune.bufsize) is raised so that such a head fits, and a head
	// larger than the buffer is HAProxy's own 400. 0: off (HAProxy's 400
	// past about 15 KiB). At least 1 KiB, at most 64 MiB.
	MaxHeaderBytes int64
	// MaxBodyBytes makes a request whose announced body (Content-Length,
	// req.body_size) is larger a 413 with the built-in proxy's
	// X-Interlock-Error: body-too-large. A body without a length (chunked,
	// HTTP/2 without content-length) is checked only as far as it has
	// arrived when the rules run. 0: no limit.
	MaxBodyBytes int64
}

// The access log formats (Edge.AccessLogFormat) and the only access log
// target HAProxy has (Edge.AccessLog).
const (
	AccessLogCommon = "common"
	AccessLogJSON   = "json"
	AccessLogStdout = "-"
)

// Limits of Edge.MaxHeaderBytes, and the buffer HAProxy needs for it.
const (
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 64 << 20
	// defaultBufSize is HAProxy's tune.bufsize; HTTP/2 needs at least it.
	defaultBufSize = 16384
	// bufSlack is what a buffer holds besides the header block: the
	// request line (up to 8 KiB), tune.maxrewrite (1 KiB) and HTX's own
	// bookkeeping (8 bytes a header, at most 101 headers).
	bufSlack = 8<<10 + 1<<10 + 1<<10
)

// EdgeView is Edge in HAProxy's terms, for templates (View.Edge).
type EdgeView struct {
	// ProxyProtocolFrom are the networks that must send a PROXY header
	// (tcp-request connection expect-proxy layer4 if { src ... }), as CIDR
	// prefixes; empty: off.
	ProxyProtocolFrom []string
	// ForwardedFrom are the networks of acl interlock_forwarded_trusted;
	// empty: forwarded headers are always replaced.
	ForwardedFrom []string
	// AccessLog is nil without an access log.
	AccessLog *AccessLogView
	// Timeouts are the defaults section's, as HAProxy time words ("30s",
	// "1500ms").
	Timeouts Timeouts
	// PoolPurgeDelay is the http servers' pool-purge-delay in ms, "" to
	// leave it out; it is in their Backend.ServerOptions.
	PoolPurgeDelay string
	// BufSize is tune.bufsize, 0 to leave it out.
	BufSize int64
	// MaxHeaderBytes and MaxBodyBytes are the 431 and 413 limits, 0 for
	// none.
	MaxHeaderBytes, MaxBodyBytes int64
}

// Timeouts are the timeouts of the defaults section.
type Timeouts struct {
	Connect, Client, Server, HTTPRequest, HTTPKeepAlive string
}

// AccessLogView is the access log in HAProxy's terms: log stdout format
// raw, with the log-format of the common or the json format.
type AccessLogView struct {
	JSON bool
	// Format is the whole log-format argument, double-quoted: the
	// built-in proxy's fields from the variables the template's request
	// rules set (txn.interlock_log_*, txn.interlock_route,
	// txn.interlock_backend). The template writes it as error-log-format
	// too, so that connection errors (a broken PROXY header, a failed TLS
	// handshake, a request that is not HTTP) keep the shape, status 0 or
	// HAProxy's 400/408.
	Format string
}

// The log-format arguments of the two formats.
const (
	logFormatCommon = `"%ci - - [%trl] %{+Q,+E}[var(txn.interlock_log_request,)] %ST %B %{+Q,+E}[var(txn.interlock_log_host,)] ` +
		`%{+Q}[var(txn.interlock_route,)] %{+Q}[var(txn.interlock_backend,)] %Ta"`
	logFormatJSON = `"{\"time\":\"%[date,utime(%Y-%m-%dT%H:%M:%SZ)]\",\"client\":\"%ci\",` +
		`\"host\":%{+Q}[var(txn.interlock_log_host,),json(utf8s)],\"method\":%{+Q}[var(txn.interlock_log_method,),json(utf8s)],` +
		`\"path\":%{+Q}[var(txn.interlock_log_path,),json(utf8s)],\"query\":%{+Q}[var(txn.interlock_log_query,),json(utf8s)],` +
		`\"proto\":%{+Q}[var(txn.interlock_log_proto,),json(utf8s)],\"status\":%ST,\"bytes\":%B,\"duration_ms\":%Ta,` +
		`\"route\":%{+Q}[var(txn.interlock_route,)],\"backend\":%{+Q}[var(txn.interlock_backend,)]}"`
)

// edgeView checks e and turns it into HAProxy's terms.
func edgeView(e Edge) (EdgeView, error) {
	v := EdgeView{Timeouts: Timeouts{Connect: "1s", Client: "60s", Server: "60s", HTTPRequest: "30s", HTTPKeepAlive: "10s"}}
	var err error
	if v.ProxyProtocolFrom, err = cidrs("proxy protocol trusted networks", e.ProxyProtocolTrusted); err != nil {
		return EdgeView{}, err
	}
	if v.ForwardedFrom, err = cidrs("forwarded headers trusted networks", e.ForwardedTrusted); err != nil {
		return EdgeView{}, err
	}
	switch e.AccessLogFormat {
	case "", AccessLogCommon, AccessLogJSON:
	default:
		return EdgeView{}, fmt.Errorf("access log format %q: want %s or %s", e.AccessLogFormat, AccessLogCommon, AccessLogJSON)
	}
	switch e.AccessLog {
	case "":
	case AccessLogStdout:
		v.AccessLog = &AccessLogView{Format: logFormatCommon}
		if e.AccessLogFormat == AccessLogJSON {
			v.AccessLog = &AccessLogView{JSON: true, Format: logFormatJSON}
		}
	default:
		return EdgeView{}, fmt.Errorf("access log %q: HAProxy cannot write a log file itself, it logs to syslog or to its standard output; "+
			"use %q (HAProxy's standard output, which Interlock passes on as its own) and collect that", e.AccessLog, AccessLogStdout)
	}
	var purge string
	for _, d := range []struct {
		name string
		v    time.Duration
		out  *string
	}{
		{"client read header timeout", e.ClientReadHeaderTimeout, &v.Timeouts.HTTPRequest},
		{"client read timeout", e.ClientReadTimeout, &v.Timeouts.Client},
		{"client idle timeout", e.ClientIdleTimeout, &v.Timeouts.HTTPKeepAlive},
		{"backend connect timeout", e.BackendConnectTimeout, &v.Timeouts.Connect},
		{"backend response header timeout", e.BackendResponseHeaderTimeout, &v.Timeouts.Server},
		{"backend idle timeout", e.BackendIdleTimeout, &purge},
	} {
		switch {
		case d.v < 0:
			return EdgeView{}, fmt.Errorf("%s %v is negative; want 0 (the driver's default) or at least 1ms", d.name, d.v)
		case d.v > 0 && d.v < time.Millisecond:
			return EdgeView{}, fmt.Errorf("%s %v is shorter than HAProxy's 1ms resolution", d.name, d.v)
		case d.v > 0:
			*d.out = haproxyDuration(d.v)
		}
	}
	if e.BackendIdleTimeout > 0 {
		v.PoolPurgeDelay, _ = ms(e.BackendIdleTimeout)
	}
	switch n := e.MaxHeaderBytes; {
	case n == 0:
	case n < minHeaderBytes || n > maxHeaderBytes:
		return EdgeView{}, fmt.Errorf("max header bytes %d is out of range; want %d to %d, or 0 for HAProxy's own limit", n, minHeaderBytes, maxHeaderBytes)
	default:
		v.MaxHeaderBytes = n
		if need := (n + bufSlack + 15) &^ 15; need > defaultBufSize {
			v.BufSize = need
		}
	}
	if e.MaxBodyBytes < 0 {
		return EdgeView{}, fmt.Errorf("max body bytes %d is negative; want 0 (no limit) or more", e.MaxBodyBytes)
	}
	v.MaxBodyBytes = e.MaxBodyBytes
	return v, nil
}

// cidrs checks prefixes as config.ParseCIDRs makes them (no host bits, no
// zone, no IPv4-mapped IPv6) and writes them as HAProxy reads them.
func cidrs(what string, ps []netip.Prefix) ([]string, error) {
	var out []string
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
	return out, nil
}

// haproxyDuration writes d in HAProxy's time syntax: whole seconds as
// "30s", anything else in milliseconds, rounded up ("1500ms").
func haproxyDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
}

// Request is the data of the built-in template's "request" template: what
// the http and https frontends do with every request before routing.
type Request struct {
	// Scheme is "http" or "https", this hop's X-Forwarded-Proto.
	Scheme string
	Edge   EdgeView
}

// Request returns the "request" template's data for a frontend of scheme.
func (v View) Request(scheme string) Request { return Request{Scheme: scheme, Edge: v.Edge} }

// isLogRoute reports whether s can stand as the argument of str() in a
// sample expression: a host name, then a route path of the path grammar
// ([A-Za-z0-9._~/-] and %XX), nothing HAProxy's argument parser reads.
func isLogRoute(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '~' && c != '/' && c != '-' && c != '%' {
			return false
		}
	}
	return true
}
