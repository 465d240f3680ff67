package builtin

import (
	"context"
	"slices"
	"time"
)

// Certificates change on disk without any change in Docker: a renewal
// rewrites the files a label names, and the table, hence Apply, stays the
// same. RefreshCerts looks at them again; WatchCerts does so periodically.

// DefaultCertPoll is how often WatchCerts looks at the certificate files
// when the caller gives no interval.
const DefaultCertPoll = 2 * time.Second

// RefreshCerts loads the live table's certificates again, reading only
// files whose identity, size or modification time changed, and publishes
// the result when it differs: new handshakes get the new certificate,
// connections already open keep theirs. It also turns a certificate that
// expired meanwhile into a problem. It reports whether anything changed.
func (p *Proxy) RefreshCerts() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.table.Load()
	set, cache := p.loadCerts(p.applied, cur)
	p.holdRewrites(cur.certs, set, time.Now())
	if sameCerts(cur.certs, set) {
		p.certCache = cache
		return false
	}
	next := *cur // the table is immutable: a copy with other certificates
	next.certs = set
	p.table.Store(&next)
	p.certCache = cache
	p.logCertChanges(cur.certs, set)
	p.log.Info("certificates reloaded from disk", "names", len(set.byName), "problems", len(set.problems))
	return true
}

// WatchCerts calls RefreshCerts every interval (DefaultCertPoll when 0)
// until ctx ends. Polling a few stat calls per host is cheaper than
// watching directories, and sees through symlink swaps (Kubernetes-style
// ..data links) that change no watched inode.
func (p *Proxy) WatchCerts(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultCertPoll
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.RefreshCerts()
		}
	}
}

// rewriteGrace is how long a host keeps its certificate while the files
// read as a pair that does not fit: renewal tools replace the certificate
// and the key one after the other (certbot swaps two symlinks), and a poll
// between the two must not put the default certificate in front of every
// client of the host.
const rewriteGrace = 10 * time.Second

// holdRewrites keeps, in next, the certificate prev served to a host whose
// files now read as broken in a way a rewrite in progress looks (a
// mismatched key, a missing, empty or half-written file), for rewriteGrace
// from the first poll that saw it; the problem is reported once the grace
// ends. Called with p.mu held.
func (p *Proxy) holdRewrites(prev, next *certSet, now time.Time) {
	broken := map[string]bool{}
	kept := next.problems[:0:0]
	for _, pr := range next.problems {
		name := hostname(pr.Host)
		old := prev.byName[name]
		transient := pr.Reason == CertKeyMismatch || pr.Reason == CertMissing || pr.Reason == CertNotPEM || pr.Reason == CertInvalid
		if old == nil || !transient || !now.Before(old.notAfter) {
			kept = append(kept, pr)
			continue
		}
		broken[name] = true
		since, ok := p.rewriting[name]
		if !ok {
			since = now
			p.rewriting[name] = now
		}
		if now.Sub(since) >= rewriteGrace {
			kept = append(kept, pr)
			continue
		}
		for n, hc := range prev.byName {
			if hc == old {
				next.byName[n] = old
			}
		}
	}
	next.problems = kept
	for name := range p.rewriting {
		if !broken[name] {
			delete(p.rewriting, name)
		}
	}
}

// sameCerts reports whether two sets serve the same certificates to the
// same names and report the same problems.
func sameCerts(a, b *certSet) bool {
	if len(a.byName) != len(b.byName) || !slices.Equal(a.problems, b.problems) {
		return false
	}
	for n, hc := range a.byName {
		if o := b.byName[n]; o == nil || o.cert != hc.cert {
			return false
		}
	}
	return true
}
