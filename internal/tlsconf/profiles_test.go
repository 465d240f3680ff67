package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestProfiles(t *testing.T) {
	for _, tc := range []struct {
		name, protocols string
		ciphers         int
		prefer, warn    bool
	}{
		{name: Modern, protocols: "TLSv1.3", ciphers: 0},
		{name: Intermediate, protocols: "TLSv1.2 TLSv1.3", ciphers: 6},
		{name: Old, protocols: "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", ciphers: len(ciphers), prefer: true, warn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Lookup(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.NginxProtocols(); got != tc.protocols {
				t.Errorf("protocols = %q, want %q", got, tc.protocols)
			}
			if len(p.Ciphers) != tc.ciphers {
				t.Errorf("%d ciphers, want %d", len(p.Ciphers), tc.ciphers)
			}
			if p.PreferServerCiphers != tc.prefer {
				t.Errorf("prefer server ciphers = %v", p.PreferServerCiphers)
			}
			if (p.Warning() != "") != tc.warn {
				t.Errorf("warning = %q", p.Warning())
			}
			if p.OpenSSLCurves() != "X25519:prime256v1:secp384r1" {
				t.Errorf("curves = %q", p.OpenSSLCurves())
			}
			cfg := p.GoConfig()
			if cfg.MinVersion != p.Protocols[0].Go || cfg.MaxVersion != tls.VersionTLS13 {
				t.Errorf("go versions %x-%x", cfg.MinVersion, cfg.MaxVersion)
			}
		})
	}
	if p, _ := Lookup(""); p.Name != Intermediate {
		t.Errorf("default profile is %s, want intermediate", p.Name)
	}
	if _, err := Lookup("Modern"); err == nil || !strings.Contains(err.Error(), "modern, intermediate, old") {
		t.Errorf("Lookup(Modern) = %v, want an error listing the profiles", err)
	}
}

// TestIntermediateIsECDHEAEAD pins what DESIGN.md promises: ECDHE with AEAD.
func TestIntermediateIsECDHEAEAD(t *testing.T) {
	p, _ := Lookup(Intermediate)
	for _, c := range p.Ciphers {
		if !strings.HasPrefix(c.OpenSSL, "ECDHE-") || !(strings.Contains(c.OpenSSL, "GCM") || strings.Contains(c.OpenSSL, "CHACHA20")) {
			t.Errorf("intermediate has %s", c.OpenSSL)
		}
	}
}

// TestGoNames checks every Go ID against its IANA name, so the columns of
// the table cannot drift apart.
func TestGoNames(t *testing.T) {
	for _, c := range ciphers {
		if c.Go == 0 {
			continue
		}
		if got := tls.CipherSuiteName(c.Go); got != c.IANA {
			t.Errorf("%s: Go ID %#04x is %s, want %s", c.OpenSSL, c.Go, got, c.IANA)
		}
	}
}

func TestOverrides(t *testing.T) {
	p, _ := Lookup(Intermediate)
	q, err := p.WithCiphers("ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES256-GCM-SHA384")
	if err != nil {
		t.Fatal(err)
	}
	if got := q.OpenSSLCiphers(); got != "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384" {
		t.Errorf("ciphers = %q", got)
	}
	if len(p.Ciphers) != 6 {
		t.Error("WithCiphers changed the original")
	}
	q, err = p.WithProtocols("TLSv1.3 TLSv1.2")
	if err != nil || q.NginxProtocols() != "TLSv1.2 TLSv1.3" {
		t.Errorf("WithProtocols = %q, %v", q.NginxProtocols(), err)
	}
	for _, bad := range []string{"", "ALL", "ECDHE-RSA-AES128-GCM-SHA256;ssl_x", "!aNULL", "HIGH"} {
		if _, err := p.WithCiphers(bad); err == nil {
			t.Errorf("WithCiphers(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "SSLv3", "TLSv1.2;", "tlsv1.2"} {
		if _, err := p.WithProtocols(bad); err == nil {
			t.Errorf("WithProtocols(%q) accepted", bad)
		}
	}
	if q, _ := p.WithProtocols("TLSv1.3"); q.HasTLS12() {
		t.Error("HasTLS12 true for TLS 1.3 only")
	}
}

func TestSelfSignedIsAUsablePair(t *testing.T) {
	certPEM, keyPEM, err := SelfSigned("interlock-default.invalid")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("interlock-default.invalid"); err != nil {
		t.Errorf("certificate does not name its host: %v", err)
	}
	if leaf.NotAfter.Before(time.Now().AddDate(9, 0, 0)) {
		t.Errorf("certificate expires %v, want about ten years out", leaf.NotAfter)
	}
}
