package builtin

import (
	"net/http"
	"strconv"
)

// Sticky sessions (routing.Route.StickyCookie): the cookie holds the
// backend's rendezvous hash in hex, which names a backend without showing
// its address, and stays valid across table swaps while the backend does.

// pinned returns the index of the backend the request's cookie names, or
// -1 when there is no such cookie or backend.
func (rt *route) pinned(req *http.Request) int {
	if rt.sticky == "" {
		return -1
	}
	c, err := req.Cookie(rt.sticky)
	if err != nil {
		return -1
	}
	return rt.backendByCookie(c.Value)
}

// backendByCookie returns the index of the backend whose cookie value is
// value, or -1.
func (rt *route) backendByCookie(value string) int {
	want, err := strconv.ParseUint(value, 16, 64)
	if err != nil {
		return -1
	}
	for i := range rt.backends {
		if rt.backends[i].hash == want {
			return i
		}
	}
	return -1
}

// pin sets the cookie that sends the client back to b.
func (rt *route) pin(res *http.Response, b *backend) {
	res.Header.Add("Set-Cookie", rt.pinCookie(b))
}

// pinCookie is the Set-Cookie value that sends the client back to b.
func (rt *route) pinCookie(b *backend) string {
	c := http.Cookie{Name: rt.sticky, Value: strconv.FormatUint(b.hash, 16), Path: rt.path, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	return c.String()
}
