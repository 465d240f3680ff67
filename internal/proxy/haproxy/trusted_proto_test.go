package haproxy

// Integration test of ssl_only hosts behind a TLS-terminating load balancer
// (real HAProxy): a plain request that a peer trusted for forwarded headers
// says came over HTTPS is served, as by the built-in proxy; every other one
// is redirected, and ACME challenges are neither redirected nor routed.

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

func TestTrustedForwardedProto(t *testing.T) {
	challenge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "challenge %s", r.URL.Path)
	}))
	t.Cleanup(challenge.Close)
	r := newRig(t, func(o *Options) {
		o.Edge = Edge{ForwardedTrusted: prefixes(trustedIP)}
		o.ACMEChallenge = strings.TrimPrefix(challenge.URL, "http://")
	})
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	r.apply(t, table(
		// The default host, ssl_only: unknown names are its own.
		routing.Host{Name: "secure.test", Default: true, TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{a.rb()}}}},
		routing.Host{Name: "acme.test", TLS: &routing.TLS{Only: true, ACME: true}, Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{b.rb()}}}},
		// No "/" route: a path none of its rules take is a 404, never the
		// default host's.
		routing.Host{Name: "app.test", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{{Path: "/app", Backends: []routing.Backend{c.rb()}}}},
		routing.Host{Name: "old.test", TLS: &routing.TLS{Only: true}, RedirectTo: "https://new.test"}))
	_, httpsPort, _ := net.SplitHostPort(r.https)
	plain := "http://" + r.http
	https := map[string]string{"X-Forwarded-Proto": "https"}
	for _, tc := range []struct {
		name    string
		r       edgeRequest
		code    int
		body    string // a substring of the answer's body
		to      string // the redirect's Location, for 301 and 308
		noStore bool   // Cache-Control: no-store expected
	}{
		// A trusted peer that terminated TLS: served, whatever the method,
		// and the backend hears https.
		{name: "trusted, X-Forwarded-Proto https", r: edgeRequest{src: trustedIP, url: plain + "/x?q=1", host: "secure.test", header: https},
			code: 200, body: "a /x?q=1 xff=" + trustedIP + " proto=https fhost=secure.test"},
		{name: "trusted, X-Forwarded-Proto HTTPS", r: edgeRequest{src: trustedIP, url: plain + "/x", host: "secure.test",
			header: map[string]string{"X-Forwarded-Proto": "HTTPS"}}, code: 200, body: "a /x "},
		{name: "trusted, POST", r: edgeRequest{src: trustedIP, method: http.MethodPost, url: plain + "/p", host: "secure.test", header: https, body: "x"},
			code: 200, body: "a /p "},
		{name: "trusted, Forwarded proto=https", r: edgeRequest{src: trustedIP, url: plain + "/f", host: "secure.test",
			header: map[string]string{"Forwarded": `for=192.0.2.1;proto=http, for=192.0.2.2;proto="https"`}},
			code: 200, body: `a /f xff=` + trustedIP + ` proto=http fhost=secure.test fwd=for=192.0.2.1;proto=http, for=192.0.2.2;proto="https"`},
		// A trusted peer that does not say https: redirected.
		{name: "trusted, no header", r: edgeRequest{src: trustedIP, url: plain + "/x?q=1", host: "secure.test"},
			code: 301, to: "https://secure.test:" + httpsPort + "/x?q=1", noStore: true},
		{name: "trusted, X-Forwarded-Proto http, POST", r: edgeRequest{src: trustedIP, method: http.MethodPost, url: plain + "/p", host: "secure.test",
			header: map[string]string{"X-Forwarded-Proto": "http"}, body: "x"},
			code: 308, to: "https://secure.test:" + httpsPort + "/p", noStore: true},
		{name: "trusted, Forwarded https not in the last element", r: edgeRequest{src: trustedIP, url: plain + "/f", host: "secure.test",
			header: map[string]string{"Forwarded": "for=192.0.2.1;proto=https, for=192.0.2.2"}},
			code: 301, to: "https://secure.test:" + httpsPort + "/f", noStore: true},
		// Anyone else's claim is not believed.
		{name: "untrusted, X-Forwarded-Proto https", r: edgeRequest{src: anyoneIP, url: plain + "/x", host: "secure.test", header: https},
			code: 301, to: "https://secure.test:" + httpsPort + "/x", noStore: true},
		{name: "untrusted, POST", r: edgeRequest{src: anyoneIP, method: http.MethodPost, url: plain + "/p", host: "secure.test", header: https, body: "x"},
			code: 308, to: "https://secure.test:" + httpsPort + "/p", noStore: true},
		{name: "untrusted, Forwarded proto=https", r: edgeRequest{src: anyoneIP, url: plain + "/f", host: "secure.test",
			header: map[string]string{"Forwarded": "proto=https"}}, code: 301, to: "https://secure.test:" + httpsPort + "/f", noStore: true},
		// Unknown names are the default host's, under the same rule.
		{name: "unknown name, trusted https", r: edgeRequest{src: trustedIP, url: plain + "/u", host: "unknown.test", header: https},
			code: 200, body: "a /u xff=" + trustedIP + " proto=https"},
		{name: "unknown name, untrusted", r: edgeRequest{src: anyoneIP, url: plain + "/u", host: "unknown.test", header: https},
			code: 301, to: "https://unknown.test:" + httpsPort + "/u", noStore: true},
		// A host without "/": its rules, then 404.
		{name: "no root route, trusted https", r: edgeRequest{src: trustedIP, url: plain + "/app/x", host: "app.test", header: https},
			code: 200, body: "c /app/x "},
		{name: "no root route, trusted https, other path", r: edgeRequest{src: trustedIP, url: plain + "/other", host: "app.test", header: https},
			code: 404, body: "no route"},
		{name: "no root route, untrusted", r: edgeRequest{src: anyoneIP, url: plain + "/other", host: "app.test", header: https},
			code: 301, to: "https://app.test:" + httpsPort + "/other", noStore: true},
		// An ACME host: its challenges reach Interlock's responder from
		// anyone, never redirected, never routed to the backend; the rest
		// as for any ssl_only host.
		{name: "challenge, trusted https", r: edgeRequest{src: trustedIP, url: plain + "/.well-known/acme-challenge/tok", host: "acme.test", header: https},
			code: 200, body: "challenge /.well-known/acme-challenge/tok"},
		{name: "challenge, untrusted", r: edgeRequest{src: anyoneIP, url: plain + "/.well-known/acme-challenge/tok", host: "acme.test", header: https},
			code: 200, body: "challenge /.well-known/acme-challenge/tok"},
		{name: "challenge, trusted without header", r: edgeRequest{src: trustedIP, url: plain + "/.well-known/acme-challenge/tok", host: "acme.test"},
			code: 200, body: "challenge /.well-known/acme-challenge/tok"},
		{name: "acme host, trusted https", r: edgeRequest{src: trustedIP, url: plain + "/y", host: "acme.test", header: https},
			code: 200, body: "b /y xff=" + trustedIP + " proto=https"},
		{name: "acme host, untrusted", r: edgeRequest{src: anyoneIP, url: plain + "/y", host: "acme.test", header: https},
			code: 301, to: "https://acme.test:" + httpsPort + "/y", noStore: true},
		// A redirecting ssl_only host: to HTTPS first, to its URL once
		// the request is known to be HTTPS.
		{name: "redirecting host, trusted https", r: edgeRequest{src: trustedIP, url: plain + "/r?q=1", host: "old.test", header: https},
			code: 301, to: "https://new.test/r?q=1", noStore: true},
		{name: "redirecting host, untrusted", r: edgeRequest{src: anyoneIP, url: plain + "/r", host: "old.test", header: https},
			code: 301, to: "https://old.test:" + httpsPort + "/r", noStore: true},
		// Over HTTPS itself, nothing changes.
		{name: "https", r: edgeRequest{src: anyoneIP, url: "https://" + r.https + "/s", host: "secure.test"},
			code: 200, body: "a /s xff=" + anyoneIP + " proto=https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waitFor(t, 10*time.Second, tc.name, func() error {
				got, err := tc.r.do()
				if err != nil {
					return err
				}
				if got.code != tc.code || !strings.Contains(got.body, tc.body) {
					return fmt.Errorf("got %d %q, want %d %q", got.code, got.body, tc.code, tc.body)
				}
				if loc := got.header.Get("Location"); loc != tc.to {
					return fmt.Errorf("Location %q, want %q", loc, tc.to)
				}
				cc := got.header.Values("Cache-Control")
				if tc.noStore && (len(cc) != 1 || cc[0] != "no-store") {
					return fmt.Errorf("Cache-Control %q, want one no-store", cc)
				}
				if !tc.noStore && len(cc) != 0 {
					return fmt.Errorf("Cache-Control %q, want none (the answer is served, not a redirect)", cc)
				}
				return nil
			})
		})
	}
}
