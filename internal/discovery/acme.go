package discovery

import "github.com/interlock-proxy/interlock/internal/routing"

// acmeDefault applies Options.ACMEDefault to tls, the TLS settings an
// object's labels asked for: a TLS host with no certificate of its own and
// no passthrough gets ACME, unless label (the dialect's ssl_acme) is set,
// whatever its value (an explicit false opts out; a bad value is already a
// problem). A host without TLS is left alone: ACME never turns TLS on.
func (r *reader) acmeDefault(tls *routing.TLS, label string, opts Options) {
	if !opts.ACMEDefault || tls == nil || tls.CertFile != "" || tls.KeyFile != "" || tls.Passthrough || r.has(label) {
		return
	}
	tls.ACME = true
}
