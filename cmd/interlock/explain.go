package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/interlock-proxy/interlock/internal/api"
)

// explainCommand asks a running Interlock's API why NAME (a container, a
// service or a host) is or is not routed, and prints the answer.
func explainCommand(ctx context.Context, args, environ []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stdout)
	apiAddr := fs.String("api-addr", envOr(environ, "INTERLOCK_API_ADDR", "127.0.0.1:8081"), "`HOST:PORT` of the running Interlock's API (env INTERLOCK_API_ADDR)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: interlock explain [--api-addr HOST:PORT] [--json] NAME\n\nNAME is a container or service (name or ID prefix) or a host name.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	name := fs.Arg(0)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := "http://" + *apiAddr + "/api/explain?name=" + url.QueryEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--api-addr %s: %w", *apiAddr, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("no Interlock API at %s (--api-addr): %w", *apiAddr, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", u, res.Status, strings.TrimSpace(string(body)))
	}
	var ex api.Explanation
	if err := json.Unmarshal(body, &ex); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	writeExplanation(stdout, ex)
	if len(ex.Objects) == 0 && len(ex.Hosts) == 0 {
		return fmt.Errorf("nothing named %q: no container or service of that name or ID prefix (at least 4 characters), and no host of that name in the live table", name)
	}
	return nil
}

// writeExplanation prints ex for a person.
func writeExplanation(w io.Writer, ex api.Explanation) {
	for _, o := range ex.Objects {
		fmt.Fprintf(w, "%s %s (%s)", o.Kind, o.Name, shortID(o.ID))
		if o.State != "" {
			fmt.Fprintf(w, ", %s", o.State)
		}
		fmt.Fprintf(w, "\n  %s\n", o.Verdict)
		keys := make([]string, 0, len(o.Labels))
		for k := range o.Labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if len(keys) > 0 {
			fmt.Fprintln(w, "  labels read:")
			for _, k := range keys {
				fmt.Fprintf(w, "    %s=%s\n", k, o.Labels[k])
			}
		}
		for _, r := range o.Routes {
			fmt.Fprintf(w, "  backs %s%s through %s\n", r.Host, r.Path, r.Address)
		}
		for _, p := range o.Problems {
			if p.Label != "" {
				fmt.Fprintf(w, "  left out by %s: %s\n", p.Label, p.Message)
			} else {
				fmt.Fprintf(w, "  left out: %s\n", p.Message)
			}
		}
	}
	for _, h := range ex.Hosts {
		fmt.Fprintf(w, "host %s", h.Name)
		if len(h.Aliases) > 0 {
			fmt.Fprintf(w, " (also %s)", strings.Join(h.Aliases, ", "))
		}
		fmt.Fprintln(w)
		for _, r := range h.Routes {
			var backends []string
			for _, b := range r.Backends {
				backends = append(backends, b.Address+" "+b.Name)
			}
			if len(backends) == 0 {
				backends = []string{"no backend (503)"}
			}
			fmt.Fprintf(w, "  %s -> %s\n", r.Path, strings.Join(backends, ", "))
		}
	}
	for _, h := range ex.Hosts {
		edges, ok := ex.Edges[h.Name]
		if !ok {
			continue
		}
		if len(edges) == 0 {
			fmt.Fprintf(w, "edges: none has polled this controller for %s\n", h.Name)
		}
		for _, e := range edges {
			state := "connected"
			if !e.Connected {
				state = "not connected"
			}
			if e.Applied {
				fmt.Fprintf(w, "edge %s (%s, %s): serves %s since %s", e.Edge, e.Remote, state, h.Name, e.Since.Format(time.RFC3339Nano))
			} else {
				fmt.Fprintf(w, "edge %s (%s, %s): does not serve %s yet", e.Edge, e.Remote, state, h.Name)
			}
			if e.Current {
				fmt.Fprintln(w, ", on the live version")
			} else {
				fmt.Fprintf(w, ", on version %.12s applied %s, not the live one\n", e.Version, e.AppliedAt.Format(time.RFC3339Nano))
			}
		}
	}
	if ex.Applied {
		fmt.Fprintf(w, "the table with this is live since %s\n", ex.AppliedAt.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "no table is live yet")
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// envOr is the value of key in environ, or def.
func envOr(environ []string, key, def string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, key+"="); ok && v != "" {
			return v
		}
	}
	return def
}
