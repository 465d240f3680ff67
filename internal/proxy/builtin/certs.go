package builtin

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// maxCertFileSize bounds what is read of a certificate or key file; real
// ones are a few KiB, a long chain a few dozen.
const maxCertFileSize = 1 << 20

// defaultCertName is the name in the self-signed default certificate.
const defaultCertName = "interlock-default.invalid"

// CertProblem says why a host does not get its own certificate. The host
// is served with the default certificate instead; no other host is
// affected. CertProblems lists the current ones.
type CertProblem struct {
	// Host is the host's primary name.
	Host string `json:"host"`
	// Path is the file at fault as the label names it, relative to the
	// certificate directory (the certificate's, unless the key is at
	// fault).
	Path string `json:"path"`
	// Reason is a short machine-friendly class, for metrics: one of the
	// CertReason constants.
	Reason string `json:"reason"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
}

func (p CertProblem) String() string {
	return fmt.Sprintf("host %s: certificate %s: %s", p.Host, p.Path, p.Message)
}

// The CertProblem reasons.
const (
	CertOutsideDir   = "outside_cert_dir" // "..", an absolute path or a symlink leaving the directory
	CertMissing      = "missing"          // no such file (or no certificate directory)
	CertUnreadable   = "unreadable"       // permissions, not a regular file, too large
	CertNotPEM       = "not_pem"          // no CERTIFICATE or PRIVATE KEY block
	CertInvalid      = "invalid"          // PEM, but no certificate or key Go can use
	CertKeyMismatch  = "key_mismatch"     // the key is not the certificate's
	CertExpired      = "expired"          // past NotAfter
	CertNotYetValid  = "not_yet_valid"    // before NotBefore
	CertNameMismatch = "name_mismatch"    // the certificate covers none, or not all, of the host's names
)

// certSet is what handshakes choose from: immutable once published with
// its table.
type certSet struct {
	// byName maps every host name and alias its certificate covers.
	byName map[string]*hostCert
	// problems are sorted by host, then path.
	problems []CertProblem
}

// hostCert is one loaded certificate, shared by the names it serves.
type hostCert struct {
	cert                *tls.Certificate
	notBefore, notAfter time.Time
}

// certKey is a certificate pair by resolved (symlink-free, absolute) paths.
type certKey struct{ cert, key string }

// certEntry is a certificate pair as last read from disk: the parsed pair,
// or why it could not be used. It is reused while both files keep their
// identity, size and modification time, so an unchanged file is never read
// twice.
type certEntry struct {
	certInfo, keyInfo os.FileInfo
	pair              *tls.Certificate // nil on failure
	// failure, when pair is nil: the reason, which file ("cert" or "key")
	// and what is wrong.
	reason, file, msg string
}

// unchanged reports whether e still describes the files now stat'ed.
func (e *certEntry) unchanged(ci, ki os.FileInfo) bool {
	return sameFile(e.certInfo, ci) && sameFile(e.keyInfo, ki)
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// newDefaultCert makes the self-signed certificate for names no host
// certificate serves. Proxy.defaultCert calls it once.
func newDefaultCert() (*tls.Certificate, error) {
	certPEM, keyPEM, err := tlsconf.SelfSigned(defaultCertName)
	if err != nil {
		return nil, fmt.Errorf("builtin: default certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("builtin: default certificate: %w", err)
	}
	return &pair, nil
}

// loadCerts loads the certificate of every host of t that names one and
// that the compiled table ct serves. It returns the set to publish with ct
// and the cache to keep (the entries this table uses). Apply holds p.mu.
func (p *Proxy) loadCerts(t routing.Table, ct *table) (*certSet, map[certKey]*certEntry) {
	set := &certSet{byName: map[string]*hostCert{}}
	cache := map[certKey]*certEntry{}
	var (
		realDir string
		dirErr  error
		dirDone bool
	)
	now := time.Now()
	for _, th := range t.Hosts {
		if th.TLS == nil || th.TLS.Passthrough || th.TLS.CertFile == "" {
			continue
		}
		if h := ct.hosts[hostname(th.Name)]; h == nil || h.name != hostname(th.Name) {
			continue // only tcp routes: not served here
		}
		if !dirDone {
			realDir, dirErr = p.resolveCertDir()
			dirDone = true
		}
		problem := func(file, reason, msg string) {
			path := th.TLS.CertFile
			if file == "key" {
				path = th.TLS.KeyFile
			}
			set.problems = append(set.problems, CertProblem{Host: th.Name, Path: path, Reason: reason, Message: msg})
		}
		if dirErr != nil {
			problem("cert", certReason(dirErr), dirErr.Error())
			continue
		}
		e := p.certPair(realDir, th.TLS.CertFile, th.TLS.KeyFile, cache)
		if e.pair == nil {
			problem(e.file, e.reason, e.msg)
			continue
		}
		leaf := e.pair.Leaf
		switch {
		case now.After(leaf.NotAfter):
			problem("cert", CertExpired, fmt.Sprintf("expired on %s; renew it", leaf.NotAfter.UTC().Format(time.RFC3339)))
			continue
		case now.Before(leaf.NotBefore):
			problem("cert", CertNotYetValid, fmt.Sprintf("is not valid before %s; check the clock or the certificate", leaf.NotBefore.UTC().Format(time.RFC3339)))
			continue
		}
		hc := &hostCert{cert: e.pair, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
		var uncovered []string
		for _, n := range th.Names() {
			if leaf.VerifyHostname(n) != nil {
				uncovered = append(uncovered, n)
				continue
			}
			set.byName[hostname(n)] = hc
		}
		if len(uncovered) > 0 {
			msg := fmt.Sprintf("does not cover %s (it names %s); those names get the default certificate",
				strings.Join(uncovered, ", "), certNames(leaf))
			problem("cert", CertNameMismatch, msg)
		}
	}
	slices.SortFunc(set.problems, func(a, b CertProblem) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Reason, b.Reason))
	})
	return set, cache
}

// resolveCertDir returns the certificate directory with every symlink
// resolved: the root that resolved certificate paths must stay under.
func (p *Proxy) resolveCertDir() (string, error) {
	if p.certDir == "" {
		return "", &certError{reason: CertMissing, msg: "no certificate directory is configured (--cert-dir)"}
	}
	real, err := filepath.EvalSymlinks(p.certDir)
	if err != nil {
		return "", &certError{reason: fileReason(err), msg: fmt.Sprintf("certificate directory %s: %v", p.certDir, unwrapPath(err))}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", &certError{reason: fileReason(err), msg: fmt.Sprintf("certificate directory %s: %v", p.certDir, unwrapPath(err))}
	}
	if !fi.IsDir() {
		return "", &certError{reason: CertMissing, msg: fmt.Sprintf("certificate directory %s is not a directory", p.certDir)}
	}
	return real, nil
}

// certPair returns the entry for the pair the labels name: from this
// Apply's cache, from the last one's when neither file changed, else read
// from disk now. Failures are entries too, so a broken file that stays
// broken is not read again either.
func (p *Proxy) certPair(realDir, certRel, keyRel string, cache map[certKey]*certEntry) *certEntry {
	fail := func(file string, err error) *certEntry {
		return &certEntry{reason: certReason(err), file: file, msg: err.Error()}
	}
	certPath, err := p.confine(realDir, certRel)
	if err != nil {
		return fail("cert", err)
	}
	keyPath, err := p.confine(realDir, keyRel)
	if err != nil {
		return fail("key", err)
	}
	ci, err := statFile(certPath, certRel)
	if err != nil {
		return fail("cert", err)
	}
	ki, err := statFile(keyPath, keyRel)
	if err != nil {
		return fail("key", err)
	}
	k := certKey{cert: certPath, key: keyPath}
	if e := cache[k]; e != nil {
		return e
	}
	if e := p.certCache[k]; e != nil && e.unchanged(ci, ki) {
		cache[k] = e
		return e
	}
	e := &certEntry{certInfo: ci, keyInfo: ki}
	certPEM, err := readFile(certPath, certRel)
	if err != nil {
		return fail("cert", err) // not cached: it changed under us
	}
	keyPEM, err := readFile(keyPath, keyRel)
	if err != nil {
		return fail("key", err)
	}
	if pair, perr := parsePair(certPEM, keyPEM); perr != nil {
		e.reason, e.file, e.msg = perr.reason, perr.file, perr.msg
	} else {
		e.pair = pair
		p.log.Info("certificate loaded", "cert", certRel, "key", keyRel,
			"names", certNames(pair.Leaf), "not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	cache[k] = e
	return e
}

// confine resolves rel under the certificate directory realDir (already
// symlink-free), following symlinks, and refuses any result outside it.
// Discovery has checked the label grammar already; this holds on its own,
// because a symlink can point anywhere.
func (p *Proxy) confine(realDir, rel string) (string, error) {
	if rel == "" || !filepath.IsLocal(rel) {
		return "", &certError{reason: CertOutsideDir, msg: fmt.Sprintf("path %q is not inside the certificate directory %s; name a file relative to it", rel, p.certDir)}
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(realDir, rel))
	if err != nil {
		return "", &certError{reason: fileReason(err), msg: fmt.Sprintf("%s: %v", rel, unwrapPath(err))}
	}
	if r, err := filepath.Rel(realDir, resolved); err != nil || !filepath.IsLocal(r) {
		return "", &certError{reason: CertOutsideDir, msg: fmt.Sprintf("%s resolves to %s, outside the certificate directory %s; copy the file in instead of linking out", rel, resolved, p.certDir)}
	}
	return resolved, nil
}

func statFile(path, rel string) (os.FileInfo, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, &certError{reason: fileReason(err), msg: fmt.Sprintf("%s: %v", rel, unwrapPath(err))}
	case !fi.Mode().IsRegular():
		return nil, &certError{reason: CertUnreadable, msg: fmt.Sprintf("%s is not a regular file", rel)}
	case fi.Size() > maxCertFileSize:
		return nil, &certError{reason: CertUnreadable, msg: fmt.Sprintf("%s is %d bytes, more than the %d a PEM file may have here", rel, fi.Size(), maxCertFileSize)}
	}
	return fi, nil
}

func readFile(path, rel string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &certError{reason: fileReason(err), msg: fmt.Sprintf("%s: %v", rel, unwrapPath(err))}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCertFileSize+1))
	if err != nil {
		return nil, &certError{reason: CertUnreadable, msg: fmt.Sprintf("%s: %v", rel, unwrapPath(err))}
	}
	if len(b) > maxCertFileSize {
		return nil, &certError{reason: CertUnreadable, msg: fmt.Sprintf("%s is more than the %d bytes a PEM file may have here", rel, maxCertFileSize)}
	}
	return b, nil
}

// pairError is why a read pair is unusable.
type pairError struct{ reason, file, msg string }

// parsePair parses a PEM certificate chain and its private key, and says
// precisely what is wrong when they do not make a usable pair.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, *pairError) {
	var chain []*pem.Block
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b)
		}
	}
	if len(chain) == 0 {
		return nil, &pairError{CertNotPEM, "cert", "holds no PEM CERTIFICATE block"}
	}
	leaf, err := x509.ParseCertificate(chain[0].Bytes)
	if err != nil {
		return nil, &pairError{CertInvalid, "cert", fmt.Sprintf("first certificate does not parse: %v", err)}
	}
	var keyBlock *pem.Block
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			keyBlock = b
			break
		}
	}
	if keyBlock == nil {
		return nil, &pairError{CertNotPEM, "key", "holds no PEM PRIVATE KEY block"}
	}
	if keyBlock.Type == "ENCRYPTED PRIVATE KEY" || keyBlock.Headers["Proc-Type"] != "" {
		return nil, &pairError{CertInvalid, "key", "is encrypted; give the key without a passphrase"}
	}
	key, err := parseKey(keyBlock.Bytes)
	if err != nil {
		return nil, &pairError{CertInvalid, "key", fmt.Sprintf("key does not parse: %v", err)}
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, &pairError{CertKeyMismatch, "key", "is not the private key of the certificate; give the key the certificate was issued for"}
	}
	// X509KeyPair checks the rest the way every TLS handshake will.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &pairError{CertInvalid, "cert", err.Error()}
	}
	if pair.Leaf == nil {
		pair.Leaf = leaf
	}
	return &pair, nil
}

// parseKey parses a DER private key in the forms tls.X509KeyPair takes:
// PKCS#1 RSA, PKCS#8 and SEC 1 EC.
func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		}
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#1, PKCS#8 or EC private key")
}

// certNames lists what a certificate covers, for messages.
func certNames(c *x509.Certificate) string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		return "only the common name " + c.Subject.CommonName + ", which clients ignore"
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

// certError is a problem with a path or file, with its reason.
type certError struct{ reason, msg string }

func (e *certError) Error() string { return e.msg }

func certReason(err error) string {
	var ce *certError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return CertUnreadable
}

func fileReason(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return CertMissing
	}
	return CertUnreadable
}

// unwrapPath drops the *PathError wrapper, whose path is the resolved
// absolute one; messages name the label's path instead.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// logCertChanges logs each certificate problem once, when it appears, and
// once more when it is gone. Apply holds p.mu.
func (p *Proxy) logCertChanges(prev, next *certSet) {
	var old []CertProblem
	if prev != nil {
		old = prev.problems
	}
	for _, pr := range next.problems {
		if !slices.Contains(old, pr) {
			p.log.Warn("certificate problem: the host gets the default certificate",
				"host", pr.Host, "path", pr.Path, "reason", pr.Reason, "error", pr.Message)
		}
	}
	for _, pr := range old {
		if !slices.ContainsFunc(next.problems, func(n CertProblem) bool { return n.Host == pr.Host && n.Path == pr.Path && n.Reason == pr.Reason }) {
			p.log.Info("certificate problem gone", "host", pr.Host, "path", pr.Path, "reason", pr.Reason)
		}
	}
}

// CertProblems lists the hosts of the live table that do not get their
// own certificate, and why, sorted by host. It is the API's and the
// metrics' view of what the log reports once per change. An empty result
// means every certificate named is served.
func (p *Proxy) CertProblems() []CertProblem {
	return p.withACMEProblems(slices.Clone(p.table.Load().certs.problems)) // and ACME hosts' (acme.go)
}
