package api

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/controller"
	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// The dashboard is one page, embedded in the binary: html/template renders
// the state at load time, so the page shows everything without JavaScript,
// and dashboard.js then keeps it live from /api/routes, /api/status,
// /api/backends and the /api/events stream, building DOM nodes with
// textContent only. No framework, no CDN, no build step.

//go:embed dashboard
var dashboardFiles embed.FS

var dashboardTemplate = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"clock":    func(t time.Time) string { return t.Local().Format("15:04:05") },
	"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"duration": humanDuration,
	"ago":      ago,
	"now":      time.Now,
	"hostView": func(h routing.Host, health map[string]BackendHealth) hostView { return hostView{h, health} },
	"health":   healthOf,
	"dash": func(s string) string {
		if s == "" {
			return "—"
		}
		return s
	},
}).ParseFS(dashboardFiles, "dashboard/index.html"))

// contentSecurityPolicy allows the page's own script, style and API and
// nothing else: no inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboardView is what index.html renders.
type dashboardView struct {
	Version  string
	NotReady string
	Status   StatusResponse
	Docker   docker.Status
	Ctl      controller.Status
	Hosts    []routing.Host
	LeftOut  []routing.Problem
	// Health is the driver's backend state by address; nil without it.
	Health map[string]BackendHealth
	// Events are the recent changes, newest first.
	Events []Event
	// LastEvent is the ID of the newest event shown, where the script's
	// stream picks up.
	LastEvent uint64
	Live      bool // a feed exists
}

// hostView is what the "host" template renders.
type hostView struct {
	Host   routing.Host
	Health map[string]BackendHealth
}

// backendHealthView is one Health cell: State is "live", "ejected" or
// "unknown" (the driver keeps no state, or not for this address).
type backendHealthView struct{ State, Text string }

// healthOf says what health shows for address; dashboard.js says the same.
func healthOf(health map[string]BackendHealth, address string) backendHealthView {
	b, ok := health[address]
	switch {
	case !ok:
		return backendHealthView{State: "unknown", Text: "—"}
	case b.Ejected:
		return backendHealthView{State: "ejected", Text: fmt.Sprintf("ejected · %d in flight · %d failed", b.InFlight, b.Failures)}
	}
	return backendHealthView{State: "live", Text: fmt.Sprintf("live · %d in flight · %d req", b.InFlight, b.Requests)}
}

// maxPageEvents is how many recent events the page shows.
const maxPageEvents = 100

func (s *Server) dashboard(w http.ResponseWriter, _ *http.Request) {
	st := s.status()
	v := dashboardView{
		Version:  s.version,
		NotReady: s.notReady(st.Controller, st.Docker),
		Status:   st,
		Docker:   st.Docker,
		Ctl:      st.Controller,
		Hosts:    st.Controller.Table.Hosts,
		LeftOut:  st.Controller.Problems,
		Live:     s.feed != nil,
	}
	if s.backends != nil {
		v.Health = map[string]BackendHealth{}
		for _, b := range s.backends() {
			v.Health[b.Address] = b
		}
	}
	if s.feed != nil {
		ev := s.feed.Recent(0)
		if len(ev) > 0 {
			v.LastEvent = ev[len(ev)-1].ID
		}
		if len(ev) > maxPageEvents {
			ev = ev[len(ev)-maxPageEvents:]
		}
		slices.Reverse(ev)
		v.Events = ev
	}
	var buf bytes.Buffer
	if err := dashboardTemplate.Execute(&buf, v); err != nil {
		s.log.Error("api: render dashboard", "error", err)
		http.Error(w, "interlock: cannot render the dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// staticFiles are the files under /static/: the page's script and style
// sheet (the template itself is not served).
var staticFiles = map[string]bool{"dashboard.js": true, "dashboard.css": true}

// staticHandler serves the page's script and style sheet.
func staticHandler() http.Handler {
	sub, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic("api: embedded dashboard: " + err.Error())
	}
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !staticFiles[strings.TrimPrefix(r.URL.Path, "/static/")] {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		// Embedded files change only with the binary: revalidate, never
		// run a stale script after an upgrade.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// ago says how long ago t was, for people; dashboard.js says the same.
func ago(t time.Time) string {
	d := time.Since(t)
	if d < time.Second {
		return "just now"
	}
	return humanDuration(d.Truncate(time.Second)) + " ago"
}

// humanDuration rounds d for people: "850µs", "12.3ms", "4.2s", "3m5s".
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
