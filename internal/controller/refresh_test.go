package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// refreshDriver is a fakeDriver that counts refreshes; failRefresh makes
// that many fail first.
type refreshDriver struct {
	fakeDriver
	rmu         sync.Mutex
	refreshes   int
	failRefresh int
}

func (d *refreshDriver) Refresh(context.Context) error {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.failRefresh > 0 {
		d.failRefresh--
		return errors.New("certificate rejected")
	}
	d.refreshes++
	return nil
}

func (d *refreshDriver) refreshCount() int {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	return d.refreshes
}

func TestRefresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fail is how many refreshes fail before one succeeds.
		fail int
		// applyFirst: a table is live before the refreshes.
		applyFirst bool
		// requests in a row, and the refreshes that then happen: want, or
		// up to wantMax when set (the loop may take the first request
		// before the others arrive, which then fold into one more).
		requests, want, wantMax int
		// wait is how long to wait for them.
		wait time.Duration
	}{
		{name: "before the first apply there is nothing to refresh", requests: 1, want: 0, wait: time.Second},
		{name: "requests in a row fold", applyFirst: true, requests: 5, want: 1, wantMax: 2, wait: time.Second},
		{name: "a failed refresh is retried with backoff", applyFirst: true, fail: 2, requests: 1, want: 1, wait: 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := &refreshDriver{failRefresh: tc.fail}
				c, cancel := start(t, d, Options{})
				defer cancel()
				if tc.applyFirst {
					c.Update(snap(web("a", "a.example.com", 30000)))
					synctest.Wait()
				}
				for range tc.requests {
					c.Refresh()
				}
				time.Sleep(tc.wait)
				synctest.Wait()
				if n := d.refreshCount(); n < tc.want || n > max(tc.want, tc.wantMax) {
					t.Errorf("%d refreshes, want %d (at most %d)", n, tc.want, max(tc.want, tc.wantMax))
				}
				if n := d.count(); tc.applyFirst && n != 1 {
					t.Errorf("%d applies, want 1: a refresh is no apply", n)
				}
			})
		})
	}
}

// A driver without Refresh ignores the request.
func TestRefreshWithoutRefresher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDriver{}
		c, cancel := start(t, d, Options{})
		defer cancel()
		c.Update(snap(web("a", "a.example.com", 30000)))
		synctest.Wait()
		c.Refresh()
		synctest.Wait()
		if n := d.count(); n != 1 {
			t.Errorf("%d applies, want 1", n)
		}
	})
}
