// Package haproxy is the HAProxy driver: it renders the routing table into
// a complete haproxy.cfg from a template (built in, or the user's),
// validates the candidate with the real haproxy -c, swaps it in atomically
// and reloads HAProxy seamlessly (master-worker mode: the new worker takes
// the listening sockets from the old one, so no connection is refused).
// Changes that only add, remove or move backends need no reload at all:
// they go through HAProxy's Runtime API as dynamic servers (add server,
// enable, drain, delete), and the file is rewritten alongside so a later
// reload keeps them. A server that leaves the table drains before it is
// deleted.
//
// The package is split by concern: view.go turns a table into typed,
// checked values (View) and names.go names things from validated values
// only; quote.go holds the template helpers; template.go and
// haproxy.cfg.tmpl render; driver.go decides between nothing, the Runtime
// API and a reload; drain.go applies backend changes and reaps drained
// servers; runtime.go speaks the admin socket and the master CLI;
// process.go supervises the master; files.go validates and writes files;
// check.go is interlock check. README.md documents the features, the
// template view and the Runtime API behaviour.
package haproxy
