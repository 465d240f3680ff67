package discovery

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// spec is one container's routing request, every label validated.
type spec struct {
	// c is the container, or for a service a container-shaped view of it
	// (ID, Name, Created, Labels); kind says which.
	c    docker.Container
	kind string
	// host is the lowercase primary host name; hostLabel is the label it
	// came from, for problems.
	host      string
	hostLabel string
	// aliases maps each extra host name to the label that set it first.
	aliases map[string]string
	tls     *routing.TLS
	// route holds every route setting; Backends is empty.
	route    routing.Route
	backends []routing.Backend
	// isDefault asks for the default host (com.docker.lb.default_backend).
	isDefault bool
}

func (s spec) kindName() string {
	if s.kind == "" {
		return "container"
	}
	return s.kind
}

// origin names the object a spec came from, for messages.
func (s spec) origin() string {
	if s.kind == "" {
		return "container " + s.c.Name
	}
	return s.kind + " " + s.c.Name
}

// setting is one shared setting in canonical text form, so that two
// containers agree exactly when the values are equal.
type setting struct {
	// label is the label to change to settle a disagreement.
	label string
	// value is canonical; "" means unset.
	value string
	// parent is the label of the setting this one only means something
	// under (the interval of a health check); when the parent already
	// differs, this one is not reported as well.
	parent string
}

// aliasList returns the aliases sorted.
func (s spec) aliasList() []string {
	return slices.Sorted(maps.Keys(s.aliases))
}

// hostSettings are the settings every container of one host must share.
// The order is fixed, so two lists compare index by index.
func (s spec) hostSettings() []setting {
	ssl, only, cert, key, pass, acme := "false", "false", "", "", "false", "false"
	if s.tls != nil {
		ssl, only, cert, key = "true", strconv.FormatBool(s.tls.Only), s.tls.CertFile, s.tls.KeyFile
		pass, acme = strconv.FormatBool(s.tls.Passthrough), strconv.FormatBool(s.tls.ACME)
	}
	return []setting{
		{label: LabelAliasDomain, value: strings.Join(s.aliasList(), ",")},
		{label: LabelSSL, value: ssl},
		{label: LabelSSLOnly, value: only, parent: LabelSSL},
		{label: LabelSSLCert, value: cert, parent: LabelSSL},
		{label: LabelSSLCertKey, value: key, parent: LabelSSL},
		{label: LabelLBSSLPassthrough, value: pass, parent: LabelSSL},
		{label: LabelSSLACME, value: acme, parent: LabelSSL},
	}
}

// routeSettings are the settings every container of one route (host and
// context root) must share, with effective values (defaults applied), so
// that "unset" and the default agree. The order is fixed.
func (s spec) routeSettings() []setting {
	r := s.route
	var hcPath, hcInterval, verify string
	backendTLS := "false"
	if r.HealthCheck != nil {
		hcPath, hcInterval = r.HealthCheck.Path, r.HealthCheck.Interval.String()
	}
	if r.BackendTLS != nil {
		backendTLS, verify = "true", strconv.FormatBool(r.BackendTLS.Verify)
	}
	return append([]setting{
		{label: LabelProtocol, value: string(r.Protocol)},
		{label: LabelContextRootRewrite, value: strconv.FormatBool(r.StripPath)},
		{label: LabelWebSocketEndpoint, value: joinSorted(r.WebSocketPaths)},
		{label: LabelHealthCheck, value: hcPath},
		{label: LabelHealthCheckInterval, value: hcInterval, parent: LabelHealthCheck},
		{label: LabelBalanceAlgorithm, value: string(r.Balance)},
		{label: LabelBackendOption, value: joinSorted(r.BackendOptions)},
		{label: LabelSSLBackend, value: backendTLS},
		{label: LabelSSLBackendTLSVerify, value: verify, parent: LabelSSLBackend},
		{label: LabelLBStickyCookie, value: r.StickyCookie},
	}, limitSettings(r.Limits)...)
}

func joinSorted(s []string) string {
	s = slices.Clone(s)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

// showSetting renders a canonical setting value for a message.
func showSetting(v string) string {
	if v == "" {
		return "unset"
	}
	return quote(v)
}

// sameHostSettings is the fast path of the host check: most containers of
// a host agree, and then no canonical text needs to be built. It must say
// true only when hostSettings would compare equal.
func sameHostSettings(a, b spec) bool {
	if len(a.aliases) != len(b.aliases) {
		return false
	}
	for name := range a.aliases {
		if _, ok := b.aliases[name]; !ok {
			return false
		}
	}
	switch {
	case a.tls == nil && b.tls == nil:
		return true
	case a.tls == nil || b.tls == nil:
		return false
	}
	return *a.tls == *b.tls
}

// sameRouteSettings is the fast path of the route check, true only when
// routeSettings would compare equal. Lists compare as sets there, so only
// identical lists take the fast path; others go the slow way.
func sameRouteSettings(a, b routing.Route) bool {
	return a.Protocol == b.Protocol && a.StripPath == b.StripPath && a.Balance == b.Balance &&
		a.StickyCookie == b.StickyCookie &&
		slices.Equal(a.WebSocketPaths, b.WebSocketPaths) && slices.Equal(a.BackendOptions, b.BackendOptions) &&
		equalPtr(a.HealthCheck, b.HealthCheck) && equalPtr(a.BackendTLS, b.BackendTLS) &&
		equalPtr(a.Limits, b.Limits)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
