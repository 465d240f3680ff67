// Package tlsconf holds the one table of TLS profiles every part of
// Interlock takes its protocols, ciphers and curves from: the nginx and
// HAProxy drivers render them into their configs, and the built-in TLS
// listener turns them into a crypto/tls.Config. They therefore always agree.
//
// The profiles are Mozilla's server-side TLS recommendations
// (https://wiki.mozilla.org/Security/Server_Side_TLS,
// https://ssl-config.mozilla.org/): "modern" (TLS 1.3 only) and
// "intermediate" (TLS 1.2 and 1.3, ECDHE with AEAD ciphers, the default),
// which Mozilla maintains, and "old", Mozilla's last published Old profile,
// for very old clients only: never the default, and Profile.Warning says so.
package tlsconf

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// Profile names.
const (
	Modern       = "modern"
	Intermediate = "intermediate"
	Old          = "old"
	// Default is the profile used when none is named.
	Default = Intermediate
)

// Names lists the profiles, strictest first.
var Names = []string{Modern, Intermediate, Old}

// Version is a TLS protocol version.
type Version struct {
	// Nginx is the name nginx's ssl_protocols takes ("TLSv1.2").
	Nginx string
	// HAProxy is the name HAProxy's ssl-min-ver takes ("TLSv1.2").
	HAProxy string
	// Go is the crypto/tls constant.
	Go uint16
}

// Cipher is one TLS 1.2-and-below cipher suite under its three names.
// (TLS 1.3 suites are not configurable in Go nor, usefully, in nginx: every
// profile allows all three.)
type Cipher struct {
	// OpenSSL is the OpenSSL name (ssl_ciphers, HAProxy ciphers).
	OpenSSL string
	// IANA is the registry name.
	IANA string
	// Go is the crypto/tls ID; 0 when Go does not implement the suite (the
	// DHE suites and some CBC ones of "old"): the built-in listener then
	// simply does not offer it.
	Go uint16
}

// Curve is one key-exchange group.
type Curve struct {
	// OpenSSL is the name ssl_ecdh_curve takes.
	OpenSSL string
	Go      tls.CurveID
}

// Profile is one complete TLS setting. The zero value is not valid; take
// one from Lookup.
type Profile struct {
	Name string
	// Protocols are the enabled versions, oldest first.
	Protocols []Version
	// Ciphers are the TLS 1.2-and-below suites in preference order; empty
	// for modern (TLS 1.3 only).
	Ciphers []Cipher
	// Curves are the key-exchange groups in preference order.
	Curves []Curve
	// PreferServerCiphers: the server's order wins over the client's. Off
	// where every offered suite is strong (Mozilla's advice), on for old.
	PreferServerCiphers bool
	// SessionTimeout is nginx's ssl_session_timeout value ("1d").
	SessionTimeout string
}

// TLS 1.3 suites, always on in every profile that has TLS 1.3.
var TLS13Ciphers = []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

// versions, oldest first.
var versions = []Version{
	{Nginx: "TLSv1", HAProxy: "TLSv1.0", Go: tls.VersionTLS10},
	{Nginx: "TLSv1.1", HAProxy: "TLSv1.1", Go: tls.VersionTLS11},
	{Nginx: "TLSv1.2", HAProxy: "TLSv1.2", Go: tls.VersionTLS12},
	{Nginx: "TLSv1.3", HAProxy: "TLSv1.3", Go: tls.VersionTLS13},
}

// ciphers is every suite any profile names, in old's preference order
// (which lists intermediate's first, in intermediate's order).
var ciphers = []Cipher{
	{"ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{"ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{"ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	{"ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
	{"DHE-RSA-AES128-GCM-SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0},
	{"DHE-RSA-AES256-GCM-SHA384", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 0},
	{"DHE-RSA-CHACHA20-POLY1305", "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0},
	{"ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
	{"ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256},
	{"ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
	{"ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
	{"ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 0},
	{"ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 0},
	{"ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA},
	{"ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA},
	{"DHE-RSA-AES128-SHA256", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 0},
	{"DHE-RSA-AES256-SHA256", "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", 0},
	{"AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256", tls.TLS_RSA_WITH_AES_128_GCM_SHA256},
	{"AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384", tls.TLS_RSA_WITH_AES_256_GCM_SHA384},
	{"AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256", tls.TLS_RSA_WITH_AES_128_CBC_SHA256},
	{"AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256", 0},
	{"AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA", tls.TLS_RSA_WITH_AES_128_CBC_SHA},
	{"AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA", tls.TLS_RSA_WITH_AES_256_CBC_SHA},
	{"DES-CBC3-SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA},
}

var curves = []Curve{
	{OpenSSL: "X25519", Go: tls.X25519},
	{OpenSSL: "prime256v1", Go: tls.CurveP256},
	{OpenSSL: "secp384r1", Go: tls.CurveP384},
}

// profiles is the table. intermediate's ciphers are the first six of the
// list: ECDHE key exchange with AEAD only (Mozilla dropped the DHE suites
// from Intermediate); old takes all of them.
var profiles = map[string]Profile{
	Modern: {
		Name: Modern, Protocols: versions[3:], Curves: curves,
		PreferServerCiphers: false, SessionTimeout: "1d",
	},
	Intermediate: {
		Name: Intermediate, Protocols: versions[2:], Ciphers: ciphers[:6], Curves: curves,
		PreferServerCiphers: false, SessionTimeout: "1d",
	},
	Old: {
		Name: Old, Protocols: versions, Ciphers: ciphers, Curves: curves,
		PreferServerCiphers: true, SessionTimeout: "1d",
	},
}

// Lookup returns the profile called name ("" means Default). The slices of
// the result are fresh copies.
func Lookup(name string) (Profile, error) {
	if name == "" {
		name = Default
	}
	p, ok := profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("unknown TLS profile %q; want %s", name, strings.Join(Names, ", "))
	}
	p.Protocols = slices.Clone(p.Protocols)
	p.Ciphers = slices.Clone(p.Ciphers)
	p.Curves = slices.Clone(p.Curves)
	return p, nil
}

// Warning is the start-up warning for the profile, "" when there is none.
func (p Profile) Warning() string {
	if p.Name == Old {
		return "TLS profile old enables TLS 1.0 and 1.1 and CBC and 3DES ciphers for very old clients; use intermediate unless such clients must be served"
	}
	return ""
}

// WithCiphers returns p with its TLS 1.2-and-below suites replaced by list:
// OpenSSL names separated by ':' (or commas, or spaces), each one of the
// suites this table knows. Anything else is refused, so no unknown text
// reaches a proxy configuration.
func (p Profile) WithCiphers(list string) (Profile, error) {
	names := splitList(list)
	if len(names) == 0 {
		return p, fmt.Errorf("cipher list %q is empty; give OpenSSL names such as %s", list, ciphers[0].OpenSSL)
	}
	out := make([]Cipher, 0, len(names))
	for _, n := range names {
		i := slices.IndexFunc(ciphers, func(c Cipher) bool { return c.OpenSSL == n })
		if i < 0 {
			return p, fmt.Errorf("unknown cipher %q; want OpenSSL names of the old profile's suites, such as %s", n, ciphers[0].OpenSSL)
		}
		if !slices.Contains(out, ciphers[i]) {
			out = append(out, ciphers[i])
		}
	}
	p.Ciphers = out
	return p, nil
}

// WithProtocols returns p with its versions replaced by list: nginx names
// (TLSv1, TLSv1.1, TLSv1.2, TLSv1.3) separated by spaces, commas or ':'.
// The result is sorted oldest first.
func (p Profile) WithProtocols(list string) (Profile, error) {
	names := splitList(list)
	if len(names) == 0 {
		return p, fmt.Errorf("protocol list %q is empty; want some of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3", list)
	}
	var out []Version
	for _, v := range versions {
		if slices.Contains(names, v.Nginx) {
			out = append(out, v)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(versions, func(v Version) bool { return v.Nginx == n }) {
			return p, fmt.Errorf("unknown protocol %q; want some of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3", n)
		}
	}
	p.Protocols = out
	return p, nil
}

// HasTLS12 reports whether a version below TLS 1.3 is enabled: only then
// do the cipher settings matter.
func (p Profile) HasTLS12() bool {
	return slices.ContainsFunc(p.Protocols, func(v Version) bool { return v.Go < tls.VersionTLS13 })
}

// NginxProtocols is the ssl_protocols value: "TLSv1.2 TLSv1.3".
func (p Profile) NginxProtocols() string {
	s := make([]string, len(p.Protocols))
	for i, v := range p.Protocols {
		s[i] = v.Nginx
	}
	return strings.Join(s, " ")
}

// OpenSSLCiphers is the ssl_ciphers value: names joined by ':'; "" when the
// profile has no TLS 1.2 suites.
func (p Profile) OpenSSLCiphers() string {
	s := make([]string, len(p.Ciphers))
	for i, c := range p.Ciphers {
		s[i] = c.OpenSSL
	}
	return strings.Join(s, ":")
}

// OpenSSLCurves is the ssl_ecdh_curve value: "X25519:prime256v1:secp384r1".
func (p Profile) OpenSSLCurves() string {
	s := make([]string, len(p.Curves))
	for i, c := range p.Curves {
		s[i] = c.OpenSSL
	}
	return strings.Join(s, ":")
}

// GoConfig returns a crypto/tls configuration with p's versions, suites
// (those Go implements) and curves.
func (p Profile) GoConfig() *tls.Config {
	cfg := &tls.Config{}
	if len(p.Protocols) > 0 {
		cfg.MinVersion = p.Protocols[0].Go
		cfg.MaxVersion = p.Protocols[len(p.Protocols)-1].Go
	}
	for _, c := range p.Ciphers {
		if c.Go != 0 {
			cfg.CipherSuites = append(cfg.CipherSuites, c.Go)
		}
	}
	for _, c := range p.Curves {
		cfg.CurvePreferences = append(cfg.CurvePreferences, c.Go)
	}
	return cfg
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' || r == ' ' })
}
