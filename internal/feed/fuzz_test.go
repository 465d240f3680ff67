package feed

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
)

// FuzzDecode: whatever a controller (or anyone who got past the feed's
// TLS) sends, Decode never panics, refuses with one of its errors, and a
// snapshot it accepts is consistent: its table and certificates give back
// the version it claims, and encode to a body that decodes alike.
func FuzzDecode(f *testing.F) {
	good, _, _ := Encode(table("a.example", "b.example"), nil)
	withCerts, _, _ := Encode(table("a.example"), &Certificates{
		Certificates: []Certificate{{Name: "a.example", PEM: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}},
		Failures:     map[string]string{"b.example": "rate limited"},
	})
	for _, seed := range [][]byte{
		good, withCerts, good[:len(good)/2], nil, []byte("{}"), []byte(`{"protocol":2}`),
		[]byte(`{"protocol":2,"version":"","table":{"hosts":null}}`),
		[]byte(`{"protocol":2,"version":"x+y","table":{},"certificates":{"certificates":[{"name":"\u0000","pem":"AA=="}]}}`),
		[]byte(`{"protocol":1e999}`), []byte(`[1,2,3]`), bytes.Repeat([]byte("["), 10000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		snap, err := Decode(body)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("Decode error %v is neither ErrCorrupt nor ErrProtocol", err)
			}
			return
		}
		if v := version(snap.Table.Hash(), snap.Certificates); v != snap.Version {
			t.Fatalf("accepted a snapshot of version %s whose content hashes to %s", snap.Version, v)
		}
		again, v, err := Encode(snap.Table, snap.Certificates)
		if err != nil {
			t.Fatalf("an accepted snapshot does not encode: %v", err)
		}
		if v != snap.Version {
			t.Fatalf("re-encoded version %s, want %s", v, snap.Version)
		}
		back, err := Decode(again)
		if err != nil || back.Version != snap.Version {
			t.Fatalf("re-encoded snapshot: %v, version %s; want %s", err, back.Version, snap.Version)
		}
	})
}

// FuzzCertStoreUpdate: a certificate set of any content never panics the
// edge's store, and what it keeps it can save and load back.
func FuzzCertStoreUpdate(f *testing.F) {
	f.Add("a.example", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "failed")
	f.Add("", []byte{}, "")
	f.Add("A.Example.:443", []byte("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----"), "\x00")
	f.Fuzz(func(t *testing.T, name string, pem []byte, failure string) {
		path := filepath.Join(t.TempDir(), "certs.json")
		s := NewCertStore(path, nil, slog.New(slog.DiscardHandler))
		s.Update(Certificates{Certificates: []Certificate{{Name: name, PEM: pem}}, Failures: map[string]string{name: failure}})
		names := s.Names()
		loaded := NewCertStore(path, nil, slog.New(slog.DiscardHandler)).Names()
		a, _ := json.Marshal(names)
		b, _ := json.Marshal(loaded)
		if len(names) > 0 && !bytes.Equal(a, b) {
			t.Fatalf("kept %s, loaded back %s", a, b)
		}
		_ = s.Failure(name)
	})
}
