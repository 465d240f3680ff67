package builtin

import "net/http"

// engine is the request-forwarding half of the proxy: the seam DESIGN.md asks
// for so that the engine stays measurable and swappable. Everything before it
// (compiling the table, matching host and path, balancing, ejection) is
// engine-neutral and works on strings; an engine only turns "this request,
// this route" into a forwarded request and a response.
//
// The engine behind Proxy.ServeHTTP is net/http (httpEngine). The fasthttp
// engine of the plain listener (FastServer, fast.go) serves its own
// listener, calls table.match and route.pick the same way, forwards with
// one fasthttp.HostClient per backend, and hands everything it does not
// cover to ServeHTTP.
type engine interface {
	// forwarder returns the handler for requests already matched to rt.
	// compile calls it once per route per Apply, never per request; it
	// must not do I/O. The handler picks a backend with rt.pick and
	// updates the backend's state.
	forwarder(rt *route) http.Handler
	// close drops idle backend connections and ends upgraded tunnels.
	close() error
	// closeIdle drops idle backend connections: Apply calls it when
	// backends left the table, so none of their kept-alive connections
	// (to a node that may be gone) takes another request.
	closeIdle()
	// retain is told the table Apply just published: what the engine
	// keeps for routes (per-route transports) and t no longer needs can
	// go. Requests of older tables still in flight must keep working.
	retain(t *table)
}
