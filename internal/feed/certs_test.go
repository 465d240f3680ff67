package feed

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// testCert is a self-signed ECDSA certificate in the feed's form: the
// chain then the PKCS#8 key, in one PEM.
type testCert struct {
	pem  []byte
	leaf []byte // DER, to tell which certificate is served
}

func newTestCert(t *testing.T, notAfter time.Time, names ...string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	notBefore := time.Now().Add(-time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.Write(pemBlock("CERTIFICATE", der))
	b.Write(pemBlock("PRIVATE KEY", kb))
	return testCert{pem: b.Bytes(), leaf: der}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// TestSnapshotCertificates: a snapshot carries its certificates whole, and
// its version is the table's hash, then "+" and the certificates' hash.
func TestSnapshotCertificates(t *testing.T) {
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	b := newTestCert(t, time.Now().Add(90*24*time.Hour), "b.example")
	tbl := table("a.example", "b.example")
	for _, tc := range []struct {
		name  string
		certs *Certificates
	}{
		{name: "no certificates"},
		{name: "empty set", certs: &Certificates{}},
		{name: "certificates", certs: &Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}, {Name: "b.example", PEM: b.pem}}}},
		{name: "failures only", certs: &Certificates{Failures: map[string]string{"c.example": "rate limited"}}},
		{name: "certificates and failures", certs: &Certificates{
			Certificates: []Certificate{{Name: "a.example", PEM: a.pem}},
			Failures:     map[string]string{"b.example": "unauthorized: no answer at /.well-known", "c.example": "rate limited"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, v, err := Encode(tbl, tc.certs)
			if err != nil {
				t.Fatal(err)
			}
			want := tbl.Hash()
			if tc.certs != nil {
				want += "+" + tc.certs.Hash()
			}
			if v != want {
				t.Errorf("version %q, want %q (TABLEHASH+CERTHASH, the table hash alone without certificates)", v, want)
			}
			if got := TableVersion(v); got != tbl.Hash() {
				t.Errorf("TableVersion(%q) = %q, want the table hash %q", v, got, tbl.Hash())
			}
			snap, err := Decode(body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if snap.Version != v || snap.Table.Hash() != tbl.Hash() {
				t.Errorf("decoded version %q table %s; want %q, %s", snap.Version, short(snap.Table.Hash()), v, short(tbl.Hash()))
			}
			if !reflect.DeepEqual(snap.Certificates, tc.certs) {
				t.Errorf("decoded certificates %+v, want %+v", snap.Certificates, tc.certs)
			}
			if tc.certs != nil && snap.Certificates.Hash() != tc.certs.Hash() {
				t.Errorf("decoded certificates hash differently")
			}
		})
	}
	// Equal sets hash alike; any difference is another version.
	one := &Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}}, Failures: map[string]string{"x": "1", "y": "2"}}
	same := &Certificates{Certificates: []Certificate{{Name: "a.example", PEM: bytes.Clone(a.pem)}}, Failures: map[string]string{"y": "2", "x": "1"}}
	other := &Certificates{Certificates: []Certificate{{Name: "a.example", PEM: b.pem}}, Failures: map[string]string{"x": "1", "y": "2"}}
	if one.Hash() != same.Hash() {
		t.Errorf("equal sets hash differently")
	}
	if one.Hash() == other.Hash() {
		t.Errorf("different sets hash alike")
	}
}

func TestTableVersion(t *testing.T) {
	for _, tc := range []struct{ v, want string }{
		{"", ""},
		{"abc", "abc"},
		{"abc+def", "abc"},
		{"abc+", "abc"},
	} {
		if got := TableVersion(tc.v); got != tc.want {
			t.Errorf("TableVersion(%q) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// TestDecodeRefusesAlteredCertificates: a certificate or failure altered
// on the way is refused as the table is.
func TestDecodeRefusesAlteredCertificates(t *testing.T) {
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	b := newTestCert(t, time.Now().Add(90*24*time.Hour), "b.example")
	tbl := table("a.example", "b.example")
	certs := &Certificates{
		Certificates: []Certificate{{Name: "a.example", PEM: a.pem}, {Name: "b.example", PEM: b.pem}},
		Failures:     map[string]string{"c.example": "rate limited"},
	}
	withCerts, _, err := Encode(tbl, certs)
	if err != nil {
		t.Fatal(err)
	}
	noCerts, _, err := Encode(tbl, nil)
	if err != nil {
		t.Fatal(err)
	}
	// alter decodes body without checks, changes it, and encodes it again
	// with its version as it was.
	alter := func(body []byte, change func(*Snapshot)) string {
		var s Snapshot
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(err)
		}
		change(&s)
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	for _, tc := range []struct {
		name, body string
	}{
		{name: "certificate PEM altered", body: alter(withCerts, func(s *Snapshot) {
			p := bytes.Clone(s.Certificates.Certificates[0].PEM)
			p[len(p)/2] ^= 1
			s.Certificates.Certificates[0].PEM = p
		})},
		{name: "certificate swapped for another", body: alter(withCerts, func(s *Snapshot) {
			s.Certificates.Certificates[0].PEM = b.pem
		})},
		{name: "certificate renamed", body: alter(withCerts, func(s *Snapshot) {
			s.Certificates.Certificates[1].Name = "evil.example"
		})},
		{name: "certificate dropped", body: alter(withCerts, func(s *Snapshot) {
			s.Certificates.Certificates = s.Certificates.Certificates[:1]
		})},
		{name: "failure text altered", body: strings.Replace(string(withCerts), "rate limited", "rate limitex", 1)},
		{name: "failure added", body: alter(withCerts, func(s *Snapshot) { s.Certificates.Failures["d.example"] = "x" })},
		{name: "certificates removed", body: alter(withCerts, func(s *Snapshot) { s.Certificates = nil })},
		{name: "certificates added to a snapshot without", body: alter(noCerts, func(s *Snapshot) { s.Certificates = certs })},
		{name: "table altered, certificates kept", body: strings.Replace(string(withCerts), `"b.example","routes"`, `"x.example","routes"`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.body == string(withCerts) {
				t.Fatal("the body was not altered")
			}
			_, err := Decode([]byte(tc.body))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "does not match its version") {
				t.Errorf("Decode: %v; want %v, \"does not match its version\"", err, ErrCorrupt)
			}
		})
	}
}

// certEvent is what a following client saw: a certificate set or a table.
type certEvent struct{ kind, hash string }

// followCerts runs a client that records, in order, the certificate sets
// and the tables it is handed.
func followCerts(t *testing.T, opts ClientOptions) (*Client, chan certEvent) {
	t.Helper()
	events := make(chan certEvent, 64)
	opts.Logger = quiet
	opts.OnCertificates = func(c Certificates) { events <- certEvent{"certs", c.Hash()} }
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx, func(tbl routing.Table) { events <- certEvent{"table", tbl.Hash()} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c, events
}

func nextEvent(t *testing.T, events chan certEvent, within time.Duration) certEvent {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(within):
		t.Fatalf("nothing handed to the edge within %v", within)
		return certEvent{}
	}
}

func noEvent(t *testing.T, events chan certEvent, during time.Duration) {
	t.Helper()
	select {
	case e := <-events:
		t.Fatalf("edge handed %s %s; want nothing", e.kind, short(e.hash))
	case <-time.After(during):
	}
}

// TestFollowCertificates: an edge gets every new certificate set once, and
// every new table once; a change of one is no call for the other; a new
// set wakes a held poll.
func TestFollowCertificates(t *testing.T) {
	_, k := newPKI(t)
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	a2 := newTestCert(t, time.Now().Add(120*24*time.Hour), "a.example")
	c1 := &Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}}}
	c2 := &Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a2.pem}}}
	c3 := &Certificates{Certificates: c2.Certificates, Failures: map[string]string{"b.example": "rate limited"}}
	v1, v2 := table("a.example"), table("a.example", "b.example")

	srv := NewServer(ServerOptions{Logger: quiet})
	// Certificates before the first table are no version yet.
	if err := srv.SetCertificates(c1); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Version != "" || st.Versions != 0 {
		t.Fatalf("stats %+v after certificates alone; want no version before a table", st)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET %s with certificates and no table: %d, want 503", Path, rec.Code)
	}
	if err := srv.Apply(context.Background(), v1); err != nil {
		t.Fatal(err)
	}
	if got, want := srv.Stats().Version, v1.Hash()+"+"+c1.Hash(); got != want {
		t.Fatalf("version %q, want %q", got, want)
	}
	url := serve(t, srv, k.server)
	const wait = 20 * time.Second
	c, events := followCerts(t, ClientOptions{Controllers: []string{url}, TLS: k.client, Wait: wait})

	// The first snapshot: its certificates, then its table.
	if e := nextEvent(t, events, 5*time.Second); e != (certEvent{"certs", c1.Hash()}) {
		t.Fatalf("first %s %s; want the certificates %s first", e.kind, short(e.hash), short(c1.Hash()))
	}
	if e := nextEvent(t, events, 5*time.Second); e != (certEvent{"table", v1.Hash()}) {
		t.Fatalf("then %s %s; want table %s", e.kind, short(e.hash), short(v1.Hash()))
	}

	steps := []struct {
		name   string
		change func() error
		want   []certEvent // in order
	}{
		{name: "table changes, certificates do not", change: func() error { return srv.Apply(context.Background(), v2) },
			want: []certEvent{{"table", v2.Hash()}}},
		{name: "certificate renewed, table unchanged", change: func() error { return srv.SetCertificates(c2) },
			want: []certEvent{{"certs", c2.Hash()}}},
		{name: "equal set again", change: func() error {
			return srv.SetCertificates(&Certificates{Certificates: slices.Clone(c2.Certificates)})
		}},
		{name: "same table again", change: func() error { return srv.Apply(context.Background(), table("a.example", "b.example")) }},
		{name: "a failure is a new set", change: func() error { return srv.SetCertificates(c3) },
			want: []certEvent{{"certs", c3.Hash()}}},
		{name: "certificates off: no call, the table stays", change: func() error { return srv.SetCertificates(nil) }},
		{name: "certificates back, table changes", change: func() error {
			if err := srv.SetCertificates(c1); err != nil {
				return err
			}
			return srv.Apply(context.Background(), v1)
		}, want: []certEvent{{"certs", c1.Hash()}, {"table", v1.Hash()}}},
	}
	for _, step := range steps {
		// The edge is held on the live version: every change below must
		// wake it, not wait for its wait to end.
		waitFor(t, func() bool { return srv.Stats().Waiting == 1 && c.Status().Version == srv.Stats().Version })
		start := time.Now()
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, want := range step.want {
			e := nextEvent(t, events, 5*time.Second)
			if e != want {
				t.Fatalf("%s: edge handed %s %s, want %s %s", step.name, e.kind, short(e.hash), want.kind, short(want.hash))
			}
		}
		if len(step.want) > 0 {
			if took := time.Since(start); took >= wait {
				t.Errorf("%s: reached the edge after %v, the whole wait; want the held poll woken", step.name, took)
			}
		}
		waitFor(t, func() bool { return c.Status().Version == srv.Stats().Version })
		noEvent(t, events, 200*time.Millisecond)
	}
	if st := c.Status(); st.Updates != 3 {
		t.Errorf("status %+v; want 3 tables applied (v1, v2, v1)", st)
	}
	if got := srv.Stats().Version; got != v1.Hash()+"+"+c1.Hash() {
		t.Errorf("server version %q, want %q", got, v1.Hash()+"+"+c1.Hash())
	}
}

// TestServerChangeAfterClose: a table or certificate set that comes while
// the controller shuts down (its Docker watch and ACME renewals still
// run) must not panic the controller.
func TestServerChangeAfterClose(t *testing.T) {
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	for _, tc := range []struct {
		name   string
		change func(*Server) error
	}{
		{name: "SetCertificates", change: func(s *Server) error {
			return s.SetCertificates(&Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}}})
		}},
		{name: "Apply", change: func(s *Server) error { return s.Apply(context.Background(), table("a.example", "b.example")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := NewServer(ServerOptions{Logger: quiet})
			if err := srv.Apply(context.Background(), table("a.example")); err != nil {
				t.Fatal(err)
			}
			srv.Close()
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s after Close panicked: %v", tc.name, r)
					}
				}()
				_ = tc.change(srv)
			}()
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
			if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "shutting down") {
				t.Errorf("GET after Close: %d %q; want 503 shutting down", rec.Code, rec.Body)
			}
		})
	}
}

// served is the certificate GetCertificate gives for name (nil: none).
func served(t *testing.T, s *CertStore, name string) []byte {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil {
		if c != nil {
			t.Errorf("GetCertificate(%q) gave a certificate and the error %v", name, err)
		}
		return nil
	}
	if c == nil || len(c.Certificate) == 0 {
		t.Fatalf("GetCertificate(%q) gave no certificate and no error", name)
	}
	return c.Certificate[0]
}

// TestCertStoreUpdate: sets from the controllers add and renew, never
// remove; a certificate that is not fit for its name is refused and the
// one served kept.
func TestCertStoreUpdate(t *testing.T) {
	now := time.Now()
	aLong := newTestCert(t, now.Add(90*24*time.Hour), "a.example")
	aShort := newTestCert(t, now.Add(30*24*time.Hour), "a.example")
	b := newTestCert(t, now.Add(90*24*time.Hour), "b.example")
	other := newTestCert(t, now.Add(90*24*time.Hour), "other.example")
	wild := newTestCert(t, now.Add(90*24*time.Hour), "*.example")
	expired := newTestCert(t, now.Add(-time.Hour), "a.example")
	mismatch := testCert{pem: append(bytes.Clone(aShort.pem[:bytes.Index(aShort.pem, []byte("-----BEGIN PRIVATE KEY"))]),
		aLong.pem[bytes.Index(aLong.pem, []byte("-----BEGIN PRIVATE KEY")):]...)}
	set := func(certs ...Certificate) Certificates { return Certificates{Certificates: certs} }
	cert := func(name string, c testCert) Certificate { return Certificate{Name: name, PEM: c.pem} }

	for _, tc := range []struct {
		name  string
		sets  []Certificates
		want  map[string]testCert // name asked → served (missing: none)
		names []string            // Names()
	}{
		{name: "a set adds", sets: []Certificates{set(cert("a.example", aLong), cert("b.example", b))},
			want: map[string]testCert{"a.example": aLong, "b.example": b}, names: []string{"a.example", "b.example"}},
		{name: "a later set lacking a name keeps it", sets: []Certificates{set(cert("a.example", aLong), cert("b.example", b)), set(cert("a.example", aLong)), {}},
			want: map[string]testCert{"a.example": aLong, "b.example": b}, names: []string{"a.example", "b.example"}},
		{name: "valid longer replaces", sets: []Certificates{set(cert("a.example", aShort)), set(cert("a.example", aLong))},
			want: map[string]testCert{"a.example": aLong}, names: []string{"a.example"}},
		{name: "valid shorter does not replace", sets: []Certificates{set(cert("a.example", aLong)), set(cert("a.example", aShort))},
			want: map[string]testCert{"a.example": aLong}, names: []string{"a.example"}},
		{name: "SAN not covering its name refused", sets: []Certificates{set(cert("b.example", other))},
			want: map[string]testCert{}, names: []string{}},
		{name: "SAN not covering refused, old kept", sets: []Certificates{set(cert("b.example", b)), set(cert("b.example", other))},
			want: map[string]testCert{"b.example": b}, names: []string{"b.example"}},
		{name: "wildcard covering its name", sets: []Certificates{set(cert("x.example", wild))},
			want: map[string]testCert{"x.example": wild}, names: []string{"x.example"}},
		{name: "garbage PEM refused, old kept", sets: []Certificates{set(cert("a.example", aShort)), set(cert("a.example", testCert{pem: []byte("not a certificate")}))},
			want: map[string]testCert{"a.example": aShort}, names: []string{"a.example"}},
		{name: "key of another certificate refused", sets: []Certificates{set(cert("a.example", mismatch))},
			want: map[string]testCert{}, names: []string{}},
		{name: "expired never served", sets: []Certificates{set(cert("a.example", expired))},
			want: map[string]testCert{}, names: []string{}},
		{name: "expired does not replace a valid one", sets: []Certificates{set(cert("a.example", aShort)), set(cert("a.example", expired))},
			want: map[string]testCert{"a.example": aShort}, names: []string{"a.example"}},
		{name: "name normalized", sets: []Certificates{set(cert("A.Example.", aLong))},
			want: map[string]testCert{"a.example": aLong}, names: []string{"a.example"}},
		{name: "one bad certificate does not stop the others", sets: []Certificates{set(cert("a.example", testCert{pem: []byte("garbage")}), cert("b.example", b))},
			want: map[string]testCert{"b.example": b}, names: []string{"b.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewCertStore("", nil, quiet)
			for _, c := range tc.sets {
				s.Update(c)
			}
			for _, name := range []string{"a.example", "b.example", "x.example", "other.example"} {
				got := served(t, s, name)
				want, ok := tc.want[name]
				switch {
				case !ok && got != nil:
					t.Errorf("%s served a certificate; want none", name)
				case ok && !bytes.Equal(got, want.leaf):
					t.Errorf("%s served %s; want the expected one", name, map[bool]string{true: "none", false: "another certificate"}[got == nil])
				}
			}
			if got := s.Names(); !slices.Equal(got, tc.names) {
				t.Errorf("Names() = %q, want %q", got, tc.names)
			}
		})
	}
}

// TestCertStoreSNI: the name asked for compares as host names do.
func TestCertStoreSNI(t *testing.T) {
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	s := NewCertStore("", nil, quiet)
	s.Update(Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}}})
	for _, tc := range []struct {
		sni string
		ok  bool
	}{
		{"a.example", true},
		{"A.EXAMPLE", true},
		{"a.example.", true},
		{"A.Example.", true},
		{"b.example", false},
		{"www.a.example", false},
		{"", false},
	} {
		got := served(t, s, tc.sni)
		if tc.ok != bytes.Equal(got, a.leaf) {
			t.Errorf("SNI %q: served=%v, want %v", tc.sni, got != nil, tc.ok)
		}
		if !tc.ok && got != nil {
			t.Errorf("SNI %q served a certificate", tc.sni)
		}
	}
}

// TestCertStoreExpires: a certificate is not served past its end, and the
// next set drops it.
func TestCertStoreExpires(t *testing.T) {
	soon := newTestCert(t, time.Now().Add(2*time.Second), "a.example")
	end, err := x509.ParseCertificate(soon.leaf)
	if err != nil {
		t.Fatal(err)
	}
	s := NewCertStore("", nil, quiet)
	s.Update(Certificates{Certificates: []Certificate{{Name: "a.example", PEM: soon.pem}}})
	if time.Now().Before(end.NotAfter) && served(t, s, "a.example") == nil {
		t.Fatal("a valid certificate is not served")
	}
	time.Sleep(time.Until(end.NotAfter) + 50*time.Millisecond)
	if served(t, s, "a.example") != nil {
		t.Error("an expired certificate is served")
	}
	s.Update(Certificates{})
	if names := s.Names(); len(names) != 0 {
		t.Errorf("Names() = %q after it expired; want it dropped", names)
	}
}

// TestCertStoreFailure: the controller's failure text for a name, until a
// set without it.
func TestCertStoreFailure(t *testing.T) {
	s := NewCertStore("", nil, quiet)
	s.Update(Certificates{Failures: map[string]string{"c.example": "urn:ietf:params:acme:error:rateLimited: too many certificates"}})
	for _, tc := range []struct {
		name, want string // "" no failure
	}{
		{"c.example", "on the controller: urn:ietf:params:acme:error:rateLimited: too many certificates"},
		{"C.Example.", "rateLimited"},
		{"a.example", ""},
	} {
		err := s.Failure(tc.name)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Failure(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
	s.Update(Certificates{Failures: map[string]string{"d.example": "unauthorized"}})
	if err := s.Failure("c.example"); err != nil {
		t.Errorf("Failure(c.example) = %v after a set without it; want nil", err)
	}
	if err := s.Failure("d.example"); err == nil || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("Failure(d.example) = %v, want the new failure", err)
	}
	s.Update(Certificates{})
	if err := s.Failure("d.example"); err != nil {
		t.Errorf("Failure(d.example) = %v after a set without failures; want nil", err)
	}
}

// TestCertStoreSaved: what an edge got survives its restart, in a file
// only it reads.
func TestCertStoreSaved(t *testing.T) {
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	b := newTestCert(t, time.Now().Add(90*24*time.Hour), "b.example")
	path := filepath.Join(t.TempDir(), "acme-certs.json")
	s := NewCertStore(path, nil, quiet)
	if names := s.Names(); len(names) != 0 {
		t.Fatalf("a store without a file has %q", names)
	}
	s.Update(Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}, {Name: "b.example", PEM: b.pem}}})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("not saved: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("saved with mode %o, want 600: it holds private keys", perm)
	}
	// A restart serves the same certificates.
	again := NewCertStore(path, nil, quiet)
	if got, want := again.Names(), []string{"a.example", "b.example"}; !slices.Equal(got, want) {
		t.Errorf("after a restart Names() = %q, want %q", got, want)
	}
	for name, c := range map[string]testCert{"a.example": a, "b.example": b} {
		if got := served(t, again, name); !bytes.Equal(got, c.leaf) {
			t.Errorf("after a restart %s is not served its certificate", name)
		}
	}
	// A set that changes nothing is not saved again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s.Update(Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}}})
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a set that changed nothing was saved (stat: %v)", err)
	}
}

// TestCertStoreExpiredInSetIsNoChange: a controller that keeps sending a
// certificate past its end (its renewal failing) changes nothing on the
// edge: nothing to save, nothing to announce.
func TestCertStoreExpiredInSetIsNoChange(t *testing.T) {
	expired := newTestCert(t, time.Now().Add(-time.Hour), "a.example")
	path := filepath.Join(t.TempDir(), "acme-certs.json")
	s := NewCertStore(path, nil, quiet)
	s.Update(Certificates{Certificates: []Certificate{{Name: "a.example", PEM: expired.pem}}})
	if names := s.Names(); len(names) != 0 {
		t.Errorf("Names() = %q; want the expired certificate dropped", names)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a set whose only certificate is expired was saved as a change (stat: %v)", err)
	}
}

// TestCertStoreBadFile: a saved file that cannot be used is ignored: the
// store starts empty, and the controllers' next set is saved over it.
func TestCertStoreBadFile(t *testing.T) {
	a := newTestCert(t, time.Now().Add(90*24*time.Hour), "a.example")
	expired := newTestCert(t, time.Now().Add(-time.Hour), "b.example")
	expiredFile, _ := json.Marshal(Certificates{Certificates: []Certificate{{Name: "b.example", PEM: expired.pem}}})
	garbageFile, _ := json.Marshal(Certificates{Certificates: []Certificate{{Name: "b.example", PEM: []byte("garbage")}}})
	for _, tc := range []struct {
		name  string
		write func(path string) error
	}{
		{name: "not JSON", write: func(p string) error { return os.WriteFile(p, []byte("not json {"), 0o600) }},
		{name: "truncated", write: func(p string) error { return os.WriteFile(p, expiredFile[:len(expiredFile)/2], 0o600) }},
		{name: "empty", write: func(p string) error { return os.WriteFile(p, nil, 0o600) }},
		{name: "garbage certificate", write: func(p string) error { return os.WriteFile(p, garbageFile, 0o600) }},
		{name: "expired certificate", write: func(p string) error { return os.WriteFile(p, expiredFile, 0o600) }},
		{name: "wrong JSON type", write: func(p string) error { return os.WriteFile(p, []byte(`{"certificates":"x"}`), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "acme-certs.json")
			if err := tc.write(path); err != nil {
				t.Fatal(err)
			}
			s := NewCertStore(path, nil, quiet)
			if names := s.Names(); len(names) != 0 {
				t.Errorf("Names() = %q from a bad file; want none", names)
			}
			if served(t, s, "b.example") != nil {
				t.Error("a certificate from a bad file is served")
			}
			s.Update(Certificates{Certificates: []Certificate{{Name: "a.example", PEM: a.pem}}})
			if got := NewCertStore(path, nil, quiet).Names(); !slices.Equal(got, []string{"a.example"}) {
				t.Errorf("after the next set, the saved file has %q; want [a.example]", got)
			}
		})
	}
	// A path that is a directory is not readable as a file.
	dir := t.TempDir()
	if names := NewCertStore(dir, nil, quiet).Names(); len(names) != 0 {
		t.Errorf("a directory loaded %q", names)
	}
}

// TestCertStoreHandleHTTPChallenge: only ACME challenges go on to the
// controller.
func TestCertStoreHandleHTTPChallenge(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		forward      bool // a forward function is set
		handled      bool
	}{
		{name: "challenge", target: "http://app.example" + ChallengePath + "TOKEN", forward: true, handled: true},
		{name: "other path", target: "http://app.example/index.html", forward: true},
		{name: "challenge prefix without slash", target: "http://app.example/.well-known/acme-challenge", forward: true},
		{name: "other well-known", target: "http://app.example/.well-known/security.txt", forward: true},
		{name: "no forward", target: "http://app.example" + ChallengePath + "TOKEN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var forward func(http.ResponseWriter, *http.Request)
			if tc.forward {
				forward = func(w http.ResponseWriter, r *http.Request) {
					got = append(got, r.Host+r.URL.Path)
					_, _ = io.WriteString(w, "answer")
				}
			}
			s := NewCertStore("", forward, quiet)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			handled := s.HandleHTTPChallenge(rec, req)
			if handled != tc.handled {
				t.Errorf("HandleHTTPChallenge(%s) = %v, want %v", tc.target, handled, tc.handled)
			}
			if tc.handled {
				if len(got) != 1 || got[0] != "app.example"+ChallengePath+"TOKEN" || rec.Body.String() != "answer" {
					t.Errorf("forwarded %q, answered %q; want the request passed on once and its answer", got, rec.Body)
				}
			} else if len(got) != 0 || rec.Body.Len() != 0 {
				t.Errorf("forwarded %q, answered %q; want nothing", got, rec.Body)
			}
		})
	}
}

// TestChallengeForwarding: an edge passes the CA's request on to the
// controller it follows, with the host asked for, and answers 502 when
// it cannot reach it.
func TestChallengeForwarding(t *testing.T) {
	_, k := newPKI(t)
	challenges := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.URL.Path, ChallengePath)
		if token == "unknown" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.WriteString(w, r.Host+" "+token+".key-authorization")
	})
	withChallenges := NewServer(ServerOptions{Logger: quiet, Challenges: challenges})
	without := NewServer(ServerOptions{Logger: quiet})
	for _, s := range []*Server{withChallenges, without} {
		if err := s.Apply(context.Background(), table("app.example")); err != nil {
			t.Fatal(err)
		}
	}
	withURL, withoutURL := serve(t, withChallenges, k.server), serve(t, without, k.server)

	// The feed itself still answers beside the challenges.
	f := follow(t, ClientOptions{Controllers: []string{withURL}, TLS: k.client, Wait: 5 * time.Second})
	f.next(t, 5*time.Second)
	fWithout := follow(t, ClientOptions{Controllers: []string{withoutURL}, TLS: k.client, Wait: 5 * time.Second})
	fWithout.next(t, 5*time.Second)

	for _, tc := range []struct {
		name      string
		c         *Client
		target    string
		code      int
		body, ct  string
		notInBody string
	}{
		{name: "answer with the host kept", c: f.c, target: "http://app.example" + ChallengePath + "TOKEN",
			code: http.StatusOK, body: "app.example TOKEN.key-authorization", ct: "application/octet-stream"},
		{name: "another host", c: f.c, target: "http://www.app.example:80" + ChallengePath + "T2",
			code: http.StatusOK, body: "www.app.example:80 T2.key-authorization"},
		{name: "controller has no answer", c: f.c, target: "http://app.example" + ChallengePath + "unknown", code: http.StatusNotFound},
		{name: "controller without ACME", c: fWithout.c, target: "http://app.example" + ChallengePath + "TOKEN",
			code: http.StatusNotFound, notInBody: "TOKEN.key-authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.c.ForwardChallenge(rec, httptest.NewRequest(http.MethodGet, tc.target, nil))
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("forwarded %s: %d %q; want %d %q", tc.target, rec.Code, rec.Body, tc.code, tc.body)
			}
			if tc.ct != "" && rec.Header().Get("Content-Type") != tc.ct {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tc.ct)
			}
			if tc.notInBody != "" && strings.Contains(rec.Body.String(), tc.notInBody) {
				t.Errorf("answered %q", rec.Body)
			}
		})
	}

	// Through the edge's certificate store, as the proxy asks.
	store := NewCertStore("", f.c.ForwardChallenge, quiet)
	rec := httptest.NewRecorder()
	if !store.HandleHTTPChallenge(rec, httptest.NewRequest(http.MethodGet, "http://app.example"+ChallengePath+"T3", nil)) ||
		rec.Code != http.StatusOK || rec.Body.String() != "app.example T3.key-authorization" {
		t.Errorf("through the store: %d %q; want the controller's answer", rec.Code, rec.Body)
	}

	// Without Challenges, the path is no feed path: 404.
	rec = httptest.NewRecorder()
	without.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ChallengePath+"TOKEN", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET %s on a controller without ACME: %d, want 404", ChallengePath, rec.Code)
	}

	// The controller down: 502.
	down := httptest.NewUnstartedServer(withChallenges)
	down.TLS = k.server
	down.StartTLS()
	c, err := NewClient(ClientOptions{Controllers: []string{down.URL}, TLS: k.client, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	req := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		c.ForwardChallenge(rec, httptest.NewRequest(http.MethodGet, "http://app.example"+ChallengePath+"TOKEN", nil))
		return rec
	}
	if rec := req(); rec.Code != http.StatusOK {
		t.Fatalf("before it is down: %d %q", rec.Code, rec.Body)
	}
	down.Close()
	if rec := req(); rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "unreachable") {
		t.Errorf("controller down: %d %q; want 502", rec.Code, rec.Body)
	}
}
