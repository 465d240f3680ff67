package builtin

import (
	"net/http"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestForwardedHeadersTrusted: a request from a peer in ForwardedTrusted
// keeps its X-Forwarded-For (with the peer appended), X-Forwarded-Host,
// X-Forwarded-Proto and Forwarded; from anyone else they are replaced, as
// without the option (TestForwardedHeaders). The peer is the PROXY
// header's client when there is one.
func TestForwardedHeadersTrusted(t *testing.T) {
	b := newBackend(t, "b")
	forged := http.Header{
		"X-Forwarded-For":   {"6.6.6.6, 7.7.7.7"},
		"X-Forwarded-Host":  {"public.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=6.6.6.6;proto=https"},
	}
	for _, tc := range []struct {
		name    string
		trusted []string
		header  []byte // PROXY header, nil for none
		sent    http.Header
		want    echo
	}{
		{
			name: "trusted peer keeps and appends", trusted: []string{"127.0.0.0/8"}, sent: forged,
			want: echo{XFF: "6.6.6.6, 7.7.7.7, 127.0.0.1", XFHost: "public.example", XFProto: "https", Forwarded: "for=6.6.6.6;proto=https"},
		},
		{
			name: "trusted peer without headers gets this hop's", trusted: []string{"127.0.0.0/8"},
			want: echo{XFF: "127.0.0.1", XFHost: "app.example", XFProto: "http"},
		},
		{
			name: "untrusted peer: forged headers replaced", trusted: []string{"10.0.0.0/8"}, sent: forged,
			want: echo{XFF: "127.0.0.1", XFHost: "app.example", XFProto: "http"},
		},
		{
			name: "nobody trusted: forged headers replaced", sent: forged,
			want: echo{XFF: "127.0.0.1", XFHost: "app.example", XFProto: "http"},
		},
		{
			// The load balancer (127.0.0.1) is trusted for PROXY only;
			// the client it names is not trusted for headers.
			name: "PROXY client not trusted for headers", trusted: []string{"127.0.0.0/8"},
			header: proxyV1("203.0.113.5:1000"), sent: forged,
			want: echo{XFF: "203.0.113.5", XFHost: "app.example", XFProto: "http"},
		},
		{
			name: "PROXY client trusted for headers", trusted: []string{"203.0.113.0/24"},
			header: proxyV1("203.0.113.5:1000"), sent: forged,
			want: echo{XFF: "6.6.6.6, 7.7.7.7, 203.0.113.5", XFHost: "public.example", XFProto: "https", Forwarded: "for=6.6.6.6;proto=https"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{ProxyProtocolTrusted: prefixes(t, "127.0.0.1/32")}
			if tc.trusted != nil {
				opts.ForwardedTrusted = prefixes(t, tc.trusted...)
			}
			p := newTestProxy(t, opts, nil)
			mustApply(t, p, tableOf(hostOf("app.example", routeOf("/", addr(b)))))
			a := serveWith(t, p, &http.Server{ReadHeaderTimeout: 5 * time.Second})
			code, e := getEcho(t, headerClient(t, a, tc.header, nil), "http://"+a+"/", "app.example", tc.sent)
			got := echo{XFF: e.XFF, XFHost: e.XFHost, XFProto: e.XFProto, Forwarded: e.Forwarded}
			if code != 200 || got != tc.want {
				t.Errorf("status %d, backend saw\n %+v\nwant\n %+v", code, got, tc.want)
			}
		})
	}
}

func TestTrustedNets(t *testing.T) {
	n := newTrustedNets(prefixes(t, "10.0.0.0/8", "2001:db8::/32"))
	for _, tc := range []struct {
		remote string
		want   bool
	}{
		{"10.1.2.3:80", true},
		{"[::ffff:10.1.2.3]:80", true}, // a dual-stack listener's IPv4 client
		{"11.0.0.1:80", false},
		{"[2001:db8::1]:443", true},
		{"[2001:db9::1]:443", false},
		{"[fe80::1%eth0]:80", false},
		{"not an address", false},
		{"10.1.2.3", false}, // no port: not a RemoteAddr
	} {
		if got := n.containsRemote(tc.remote); got != tc.want {
			t.Errorf("containsRemote(%q) = %v, want %v", tc.remote, got, tc.want)
		}
	}
	if (trustedNets{}).containsRemote("10.1.2.3:80") {
		t.Error("the empty set trusts someone")
	}
	if got := testing.AllocsPerRun(100, func() { n.containsRemote("[2001:db8::1]:443") }); got != 0 {
		t.Errorf("containsRemote allocates %v times", got)
	}
}

// TestSSLOnlyBehindTLSTerminator: a load balancer that terminated TLS
// forwards plain HTTP with X-Forwarded-Proto: https (or Forwarded
// proto=https); from a trusted peer an ssl_only host serves it instead of
// redirecting it back to HTTPS forever; from anyone else, or without the
// header, it still redirects.
func TestSSLOnlyBehindTLSTerminator(t *testing.T) {
	b := newBackend(t, "b")
	secure := hostOf("app.example", routeOf("/", addr(b)))
	secure.TLS = &routing.TLS{Only: true}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		name    string
		trusted []string
		sent    http.Header
		want    int
	}{
		{"trusted, X-Forwarded-Proto https", []string{"127.0.0.0/8"}, http.Header{"X-Forwarded-Proto": {"https"}}, 200},
		{"trusted, Forwarded proto=https from the last hop", []string{"127.0.0.0/8"}, http.Header{"Forwarded": {"for=1.2.3.4;proto=http, for=10.0.0.1;proto=https"}}, 200},
		{"trusted, Forwarded proto=http from the last hop", []string{"127.0.0.0/8"}, http.Header{"Forwarded": {"for=1.2.3.4;proto=https, for=10.0.0.1;proto=http"}}, 301},
		{"trusted, no header", []string{"127.0.0.0/8"}, nil, 301},
		{"trusted, X-Forwarded-Proto http", []string{"127.0.0.0/8"}, http.Header{"X-Forwarded-Proto": {"http"}}, 301},
		{"untrusted peer claims https", []string{"10.0.0.0/8"}, http.Header{"X-Forwarded-Proto": {"https"}}, 301},
		{"nobody trusted", nil, http.Header{"X-Forwarded-Proto": {"https"}}, 301},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{}
			if tc.trusted != nil {
				opts.ForwardedTrusted = prefixes(t, tc.trusted...)
			}
			p := newTestProxy(t, opts, nil)
			mustApply(t, p, tableOf(secure))
			srv := serve(t, p)
			if res := do(t, noFollow, srv, http.MethodGet, "app.example", "/x", nil, tc.sent); res.status != tc.want {
				t.Errorf("status %d, want %d", res.status, tc.want)
			}
		})
	}
}
