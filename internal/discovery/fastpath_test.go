package discovery

import (
	"slices"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// The fast paths of the conflict checks may only say "same" when the
// canonical settings compare equal; otherwise a conflict would go unseen.
func TestFastPathsAgreeWithSettings(t *testing.T) {
	hosts := []spec{
		{},
		{aliases: map[string]string{"a.example.com": LabelAliasDomain}},
		{aliases: map[string]string{"b.example.com": LabelAliasDomain}},
		{tls: &routing.TLS{}},
		{tls: &routing.TLS{Only: true}},
		{tls: &routing.TLS{CertFile: "c.pem", KeyFile: "k.pem"}},
		{tls: &routing.TLS{Passthrough: true}},
		{tls: &routing.TLS{ACME: true}},
		{tls: &routing.TLS{ACME: true, Only: true}},
	}
	for i, a := range hosts {
		for j, b := range hosts {
			if sameHostSettings(a, b) && !slices.Equal(a.hostSettings(), b.hostSettings()) {
				t.Errorf("hosts %d and %d: fast path says same, settings differ", i, j)
			}
			if i == j && !sameHostSettings(a, b) {
				t.Errorf("host %d differs from itself", i)
			}
		}
	}
	base := routing.Route{Path: "/", Protocol: routing.HTTP, Balance: routing.RoundRobin}
	variants := []func(*routing.Route){
		func(*routing.Route) {},
		func(r *routing.Route) { r.StripPath = true },
		func(r *routing.Route) { r.Balance = routing.Source },
		func(r *routing.Route) { r.Protocol = routing.TCP },
		func(r *routing.Route) { r.StickyCookie = "s" },
		func(r *routing.Route) { r.WebSocketPaths = []string{"/ws"} },
		func(r *routing.Route) { r.BackendOptions = []string{"forwardfor"} },
		func(r *routing.Route) { r.HealthCheck = &routing.HealthCheck{Path: "/h", Interval: time.Second} },
		func(r *routing.Route) { r.HealthCheck = &routing.HealthCheck{Path: "/h", Interval: 2 * time.Second} },
		func(r *routing.Route) { r.BackendTLS = &routing.BackendTLS{Verify: true} },
		func(r *routing.Route) { r.BackendTLS = &routing.BackendTLS{} },
	}
	for i, vi := range variants {
		for j, vj := range variants {
			a, b := base, base
			vi(&a)
			vj(&b)
			sa, sb := spec{route: a}, spec{route: b}
			if sameRouteSettings(a, b) && !slices.Equal(sa.routeSettings(), sb.routeSettings()) {
				t.Errorf("routes %d and %d: fast path says same, settings differ", i, j)
			}
			if i == j && !sameRouteSettings(a, b) {
				t.Errorf("route %d differs from itself", i)
			}
		}
	}
}
