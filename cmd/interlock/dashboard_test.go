package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/interlock-proxy/interlock/internal/testenv"
)

// needChromium returns the path of the Debian chromium binary, skipping
// the test without it (failing under CI=true, where make test installs it).
func needChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the dashboard test needs chromium (Debian package chromium): %v", err)
		}
		t.Skip("no chromium (Debian package chromium); make test installs it")
	}
	return path
}

// browser is one headless Chromium tab, closed when the test ends. On
// failure the page is saved as a screenshot in the test's artifact
// directory (kept with go test -artifacts).
type browser struct {
	ctx context.Context
	t   *testing.T
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(needChromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTime := context.WithTimeout(ctx, 3*time.Minute)
	b := &browser{ctx: ctx, t: t}
	// Made now, so that it is removed after the failure screenshot is taken.
	_ = t.ArtifactDir()
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot("failure")
		}
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) screenshot(name string) string {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

func (b *browser) run(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval runs a JavaScript expression in the page and decodes its value.
func eval[T any](b *browser, expr string) (T, error) {
	return chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
}

// when polls expr (a boolean JavaScript expression) every 10ms until it is
// true, and returns when it became so. Safe from any goroutine.
func (b *browser) when(timeout time.Duration, what, expr string) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := eval[bool](b, expr)
		if err == nil && ok {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("page: timed out after %s waiting for %s (last error %v)", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// until is when for the test's goroutine: it fails the test on timeout.
func (b *browser) until(t testing.TB, timeout time.Duration, what, expr string) time.Time {
	t.Helper()
	at, err := b.when(timeout, what, expr)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// routedAt polls /api/routes every 5ms until cond holds for the table, and
// returns when it first did.
func (in *instance) routedAt(t *testing.T, what string, cond func(hosts map[string]int) bool) time.Time {
	t.Helper()
	var at time.Time
	deadline := time.Now().Add(20 * time.Second)
	for at.IsZero() {
		r := in.routes(t)
		hosts := map[string]int{}
		for _, h := range r.Hosts {
			for _, rt := range h.Routes {
				hosts[h.Name] += len(rt.Backends)
			}
		}
		if cond(hosts) {
			at = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/routes: timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return at
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDashboardLive opens the dashboard in headless Chromium and checks
// that a container's route appears, and goes, within a second of the API
// showing it; that untrusted text stays text; and that the page fits a
// phone.
func TestDashboardLive(t *testing.T) {
	e := needDocker(t)
	b := newBrowser(t)
	in := startInterlock(t)

	b.run(t, chromedp.Navigate(in.api+"/"))
	b.until(t, 10*time.Second, "the live feed to connect", `document.getElementById("conn").dataset.state === "live"`)

	host := hostFor(t, "dash")
	card := `document.querySelector('[data-host=` + jsString(host) + `]')`
	c := e.Run(t, testenv.ContainerSpec{Name: "dash", Labels: labelsFor(host), PublishPort: 8000})
	backend := fmt.Sprintf("127.0.0.1:%d", c.HostPort)

	// Docker's own start time is not ours: measure from the moment the
	// API has the route to the moment the page shows it.
	type seen struct {
		at  time.Time
		err error
	}
	done := make(chan seen, 1)
	go func() {
		at, err := b.when(10*time.Second, "the host card with its backend",
			card+` !== null && `+card+`.querySelector('tr[data-address=`+jsString(backend)+`]') !== null`)
		done <- seen{at, err}
	}()
	routed := in.routedAt(t, "the route", func(h map[string]int) bool { return h[host] == 1 })
	page := <-done
	if page.err != nil {
		t.Fatal(page.err)
	}
	shown := page.at
	latency := max(shown.Sub(routed), 0)
	t.Logf("route shown %s after /api/routes had it", latency.Round(time.Millisecond))
	if latency > time.Second {
		t.Errorf("the page showed the route %s after the API, want within 1s", latency)
	}
	text, err := eval[string](b, card+`.textContent`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, c.Name) || !strings.Contains(text, "live") {
		t.Errorf("host card %q lacks the container name %q or its health", text, c.Name)
	}
	feed, err := eval[string](b, `document.getElementById("feed").textContent`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(feed, "host "+host+" added") {
		t.Errorf("the feed does not show the host added:\n%s", feed)
	}
	b.screenshot("laptop")

	t.Run("untrusted text stays text", func(t *testing.T) {
		evil := `<img src=x onerror="window.__pwned=1">`
		bad := e.Run(t, testenv.ContainerSpec{Name: "dashevil", Labels: labelsFor(hostFor(t, "evil"), "interlock.port", evil), PublishPort: 8000})
		row := `document.querySelector('#left-out tr[data-id=` + jsString(bad.ID) + `]')`
		b.until(t, 10*time.Second, "the bad container in the left-out table", row+` !== null`)
		type result struct {
			Text   string `json:"text"`
			Images int    `json:"images"`
			Pwned  bool   `json:"pwned"`
		}
		got, err := eval[result](b, `({text: `+row+`.textContent, images: document.querySelectorAll("img").length, pwned: !!window.__pwned})`)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got.Text, "interlock.port") || !strings.Contains(got.Text, "<img") {
			t.Errorf("left-out row %q: want the label and its value shown as text", got.Text)
		}
		if got.Images != 0 || got.Pwned {
			t.Errorf("label text became markup: %d <img> elements, handler ran: %v", got.Images, got.Pwned)
		}
	})

	t.Run("fits a phone", func(t *testing.T) {
		b.run(t, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		defer b.run(t, chromedp.EmulateReset())
		type layout struct {
			Page    int `json:"page"`
			Card    int `json:"card"`
			Columns int `json:"columns"`
		}
		fit, err := eval[layout](b, `({page: document.documentElement.scrollWidth, card: Math.ceil(`+card+`.getBoundingClientRect().right),
			columns: getComputedStyle(document.getElementById("hosts")).gridTemplateColumns.split(" ").length})`)
		if err != nil {
			t.Fatal(err)
		}
		if fit.Page > 390 || fit.Card > 390 || fit.Columns != 1 {
			dims, _ := eval[[]int](b, `[window.innerWidth, document.body.scrollWidth, document.documentElement.clientWidth, visualViewport.width]`)
			t.Logf("inner, body, client, visual: %v", dims)
			wide, _ := eval[[]string](b, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391).slice(0, 8).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().width))`)
			t.Logf("wider than the phone: %v", wide)
			t.Errorf("on a 390px phone: page %dpx wide, host card ends at %dpx, %d grid columns; want no horizontal scroll and one column", fit.Page, fit.Card, fit.Columns)
		}
		b.screenshot("phone")
	})

	if err := e.Stop(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	go func() {
		at, err := b.when(10*time.Second, "the host card to go", card+` === null`)
		done <- seen{at, err}
	}()
	gone := in.routedAt(t, "the route to go", func(h map[string]int) bool { _, ok := h[host]; return !ok })
	page = <-done
	if page.err != nil {
		t.Fatal(page.err)
	}
	latency = max(page.at.Sub(gone), 0)
	t.Logf("route dropped from the page %s after /api/routes dropped it", latency.Round(time.Millisecond))
	if latency > time.Second {
		t.Errorf("the page dropped the route %s after the API, want within 1s", latency)
	}
}
