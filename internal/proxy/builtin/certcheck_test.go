package builtin

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

func TestCheckCertFiles(t *testing.T) {
	dir := t.TempDir()
	goodCert, goodKey, err := tlsconf.SelfSigned("good.example.com")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := tlsconf.SelfSigned("good.example.com")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"good.crt": goodCert, "good.key": goodKey, "other.key": otherKey, "junk.crt": []byte("not pem\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsHost := func(name, cert, key string, aliases ...string) routing.Host {
		return routing.Host{Name: name, Aliases: aliases, TLS: &routing.TLS{CertFile: cert, KeyFile: key},
			Routes: []routing.Route{{Path: "/", Backends: []routing.Backend{{Address: "127.0.0.1:1"}}}}}
	}
	for _, tc := range []struct {
		name   string
		host   routing.Host
		reason string // "" for no problem
	}{
		{"a good pair", tlsHost("good.example.com", "good.crt", "good.key"), ""},
		{"missing", tlsHost("good.example.com", "gone.crt", "good.key"), CertMissing},
		{"not PEM", tlsHost("good.example.com", "junk.crt", "good.key"), CertNotPEM},
		{"another key", tlsHost("good.example.com", "good.crt", "other.key"), CertKeyMismatch},
		{"an alias the certificate does not name", tlsHost("good.example.com", "good.crt", "good.key", "www.example.com"), CertNameMismatch},
		{"a path out of the directory", tlsHost("good.example.com", "../good.crt", "good.key"), CertOutsideDir},
		{"no label certificate", routing.Host{Name: "default.example.com", TLS: &routing.TLS{}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := routing.Table{Hosts: []routing.Host{tc.host}}
			tb.Normalize()
			problems := NewCertChecker(dir).Check(tb)
			switch {
			case tc.reason == "" && len(problems) > 0:
				t.Errorf("problems %v, want none", problems)
			case tc.reason != "" && (len(problems) != 1 || problems[0].Reason != tc.reason || problems[0].Host != tc.host.Name):
				t.Errorf("problems %v, want one of reason %s for %s", problems, tc.reason, tc.host.Name)
			}
		})
	}
}
