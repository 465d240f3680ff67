// Package builtin is Interlock's zero-setup default driver: a reverse proxy
// that serves a routing.Table in process, swapped atomically on every Apply,
// with no reload and no external program.
//
// The package is split along one seam (see engine.go). The engine-neutral
// half compiles a Table (table.go), matches a request's host and path against
// it (match.go), keeps per-backend state across swaps (backends.go) and picks
// a backend (balance.go); it works on strings and never imports net/http. The
// net/http engine forwards the request: one httputil.ReverseProxy per route
// (forward.go) whose Transport is a retrying RoundTripper (retry.go) over a
// tuned http.Transport (transport.go), with upgraded connections tracked so
// Close can end them (upgrade.go). A fasthttp engine for plain HTTP/1.1 (see
// DESIGN.md, "The built-in data plane") replaces only the second half.
//
// HTTPS (tls.go, certs.go) rides on the same table: Apply loads the hosts'
// certificates and publishes them with it, ServeTLS serves the same handler
// over TLS with certificates chosen by SNI, HTTP/2 by ALPN.
//
// The edge: Serve and ServeTLS accept the PROXY protocol from trusted
// networks (proxyproto.go, trust.go), forwarded headers are kept from
// trusted peers only (forward.go), every answer can go to an access log
// (accesslog.go), and bodies and backend waits are bounded (limits.go).
package builtin
