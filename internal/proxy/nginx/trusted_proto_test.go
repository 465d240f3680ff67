package nginx

// Integration test of ssl_only hosts behind a TLS-terminating load balancer
// (real nginx): a plain request that a peer trusted for forwarded headers
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
	"github.com/interlock-proxy/interlock/internal/testenv"
)

func TestTrustedForwardedProto(t *testing.T) {
	challenge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "challenge %s", r.URL.Path)
	}))
	t.Cleanup(challenge.Close)
	l := newLocalWith(t, func(o *Options) {
		o.Edge = Edge{ForwardedTrusted: prefixes(trustedIP)}
		o.ACMEChallenge = strings.TrimPrefix(challenge.URL, "http://")
	})
	a, b := backend(t, "a"), backend(t, "b")
	tb := table(
		routing.Host{Name: "secure.test", TLS: &routing.TLS{Only: true}, Routes: []routing.Route{route("/", a)}},
		routing.Host{Name: "acme.test", TLS: &routing.TLS{Only: true, ACME: true}, Routes: []routing.Route{route("/", b)}},
		routing.Host{Name: "old.test", TLS: &routing.TLS{Only: true}, RedirectTo: "https://new.test"})
	if err := l.d.Apply(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	_, httpsPort, _ := net.SplitHostPort(l.https)
	plain := "http://" + l.http
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
			code: 200, body: "a /x?q=1 xff=" + trustedIP + " proto=https xfh=secure.test"},
		{name: "trusted, X-Forwarded-Proto HTTPS", r: edgeRequest{src: trustedIP, url: plain + "/x", host: "secure.test",
			header: map[string]string{"X-Forwarded-Proto": "HTTPS"}}, code: 200, body: "a /x "},
		{name: "trusted, POST", r: edgeRequest{src: trustedIP, method: http.MethodPost, url: plain + "/p", host: "secure.test", header: https, body: "x"},
			code: 200, body: "a /p "},
		{name: "trusted, Forwarded proto=https", r: edgeRequest{src: trustedIP, url: plain + "/f", host: "secure.test",
			header: map[string]string{"Forwarded": `for=192.0.2.1;proto=http, for=192.0.2.2;proto="https"`}},
			code: 200, body: `a /f xff=` + trustedIP + ` proto=http xfh=secure.test host=secure.test fwd=for=192.0.2.1;proto=http, for=192.0.2.2;proto="https"`},
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
		{name: "acme host, untrusted POST", r: edgeRequest{src: anyoneIP, method: http.MethodPost, url: plain + "/y", host: "acme.test", body: "x"},
			code: 308, to: "https://acme.test:" + httpsPort + "/y", noStore: true},
		// A redirecting ssl_only host: to HTTPS first, to its URL once
		// the request is known to be HTTPS.
		{name: "redirecting host, trusted https", r: edgeRequest{src: trustedIP, url: plain + "/r?q=1", host: "old.test", header: https},
			code: 301, to: "https://new.test/r?q=1", noStore: true},
		{name: "redirecting host, untrusted", r: edgeRequest{src: anyoneIP, url: plain + "/r", host: "old.test", header: https},
			code: 301, to: "https://old.test:" + httpsPort + "/r", noStore: true},
		// Over HTTPS itself, nothing changes.
		{name: "https", r: edgeRequest{src: anyoneIP, url: "https://" + l.https + "/s", host: "secure.test"},
			code: 200, body: "a /s xff=" + anyoneIP + " proto=https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.WaitFor(t, 10*time.Second, tc.name, func() error {
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
