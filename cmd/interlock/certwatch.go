package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// certPollInterval is how often the label certificates nginx and haproxy
// are given are looked at, as the built-in proxy polls its own.
const certPollInterval = 2 * time.Second

// watchLabelCerts reloads a template driver when a label certificate file
// of the live table changes (a renewal written into the certificate
// directory, a secret rotated). Every certPollInterval the files are
// stat'ed: one modified after the live configuration was made (the last
// apply, or the last refresh) that has held still for an interval since
// (the certificate and key of a renewal land one after the other)
// refreshes the driver, which judges and reloads them anew. live returns
// the live table and when it was applied. It returns when ctx ends.
func watchLabelCerts(ctx context.Context, certDir string, live func() (routing.Table, time.Time), refresh func()) {
	tick := time.NewTicker(certPollInterval)
	defer tick.Stop()
	var refreshed time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t, applied := live()
			since := applied
			if refreshed.After(since) {
				since = refreshed
			}
			if newest := newestCertChange(certDir, t, since); !newest.IsZero() && now.Sub(newest) >= certPollInterval {
				refreshed = now
				refresh()
			}
		}
	}
}

// newestCertChange returns the latest modification time after since of
// t's label certificate files, zero when none changed.
func newestCertChange(certDir string, t routing.Table, since time.Time) time.Time {
	var paths []string
	for _, h := range t.Hosts {
		if h.TLS != nil && h.TLS.CertFile != "" {
			paths = append(paths, h.TLS.CertFile, h.TLS.KeyFile)
		}
	}
	slices.Sort(paths)
	var newest time.Time
	for _, p := range slices.Compact(paths) {
		fi, err := os.Stat(filepath.Join(certDir, p))
		if err == nil && fi.ModTime().After(since) && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	return newest
}
