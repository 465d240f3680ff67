package builtin

import "net/http"

// engine is the request-forwarding half of the proxy: the seam DESIGN.md asks
// for so that the engine stays measurable and swappable. Everything before it
// (compiling the table, matching host and path, balancing, ejection) is
// engine-neutral and works on strings; an engine only turns "this request,
// this route" into a forwarded request and a response.
//
// The one engine today is net/http (httpEngine). A fasthttp engine for plain
// HTTP/1.1 would serve its own listener, call table.match and route.pick the
// same way, and forward with one fasthttp.HostClient per backend.
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
