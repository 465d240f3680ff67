package feed

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// ClientOptions tune a Client. Zero values take the documented defaults.
type ClientOptions struct {
	// Controllers are the base URLs (https://HOST:PORT) to follow, in
	// order of preference. At least one.
	Controllers []string
	// TLS is the edge's side of the mutual TLS (ClientTLS).
	TLS *tls.Config
	// Wait is how long a controller may hold a request when nothing
	// changed. Default 25s (under the server's DefaultMaxWait).
	Wait time.Duration
	// MaxBody bounds a snapshot. Default DefaultMaxBody.
	MaxBody int64
	// RetryMin and RetryMax bound the pause after every controller in the
	// list failed in a row. Defaults 250ms and 5s.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

// Client is an edge's side of the feed: it follows one controller and
// hands every new version to its apply function; on any failure
// (connect, TLS, an answer other than 200 or 304, a refused snapshot) it
// moves to the next controller, and the table in use stays.
type Client struct {
	opts ClientOptions
	log  *slog.Logger
	http *http.Client

	mu     sync.Mutex
	status Status
}

// Status is what an edge knows of its controllers.
type Status struct {
	// Following is true while the edge follows a controller: the last
	// request to one succeeded, or failed less than once per controller
	// in the list since. False before the first answer, and once every
	// controller failed in a row.
	Following bool `json:"following"`
	// Since is when Following last changed.
	Since time.Time `json:"since"`
	// Controller is the URL followed, or tried next.
	Controller string `json:"controller"`
	// Version is the last version received ("" before the first).
	Version   string `json:"version,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Updates counts the versions handed to apply; Switches the moves to
	// another controller after a failure; Refused the snapshots refused.
	Updates  int64 `json:"updates"`
	Switches int64 `json:"switches"`
	Refused  int64 `json:"refused"`
}

// NewClient returns a client of opts.Controllers.
func NewClient(opts ClientOptions) (*Client, error) {
	if len(opts.Controllers) == 0 {
		return nil, errors.New("feed: no controllers to follow")
	}
	for _, c := range opts.Controllers {
		u, err := url.Parse(c)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("feed: controller %q is not https://HOST:PORT", c)
		}
	}
	if opts.Wait <= 0 {
		opts.Wait = 25 * time.Second
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 250 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tr := &http.Transport{
		TLSClientConfig:       opts.TLS,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: opts.Wait + 10*time.Second,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       opts.Wait + 30*time.Second,
	}
	return &Client{opts: opts, log: log, http: &http.Client{Transport: tr},
		status: Status{Controller: strings.TrimSuffix(opts.Controllers[0], "/")}}, nil
}

// Status returns the client's state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Run follows the controllers until ctx ends, calling apply (from this
// goroutine) with every new version's table, normalized and checked.
func (c *Client) Run(ctx context.Context, apply func(routing.Table)) error {
	defer c.http.CloseIdleConnections()
	var (
		cur      int    // index of the controller followed
		after    string // version got from it; "" after a switch, so the first answer is at once
		fails    int    // failures in a row
		applied  string
		retry    = c.opts.RetryMin
		urls     = c.opts.Controllers
		numCtrls = len(urls)
	)
	for ctx.Err() == nil {
		base := strings.TrimSuffix(urls[cur], "/")
		t, version, changed, err := c.poll(ctx, base, after)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fails++
			next := (cur + 1) % numCtrls
			c.mu.Lock()
			c.status.LastError = err.Error()
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrTooLarge) {
				c.status.Refused++
			}
			if numCtrls > 1 {
				c.status.Switches++
			}
			if fails >= numCtrls && c.status.Following {
				c.status.Following, c.status.Since = false, time.Now()
			}
			c.status.Controller = strings.TrimSuffix(urls[next], "/")
			c.mu.Unlock()
			c.log.Warn("feed: controller failed; the table in use stays", "controller", base, "error", err,
				"next", urls[next])
			cur, after = next, ""
			if fails%numCtrls == 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(retry):
				}
				retry = min(retry*2, c.opts.RetryMax)
			}
			continue
		}
		fails, retry = 0, c.opts.RetryMin
		c.mu.Lock()
		if !c.status.Following {
			c.status.Following, c.status.Since = true, time.Now()
			c.log.Info("feed: following a controller", "controller", base, "version", short(version))
		}
		c.status.Controller, c.status.Version, c.status.LastError = base, version, ""
		c.mu.Unlock()
		after = version
		if changed && version != applied {
			apply(t)
			applied = version
			c.mu.Lock()
			c.status.Updates++
			c.mu.Unlock()
		}
	}
	return nil
}

// poll asks base for the version after after. changed is false for a 304
// (the version is after's).
func (c *Client) poll(ctx context.Context, base, after string) (t routing.Table, version string, changed bool, err error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
		q.Set("wait", c.opts.Wait.String())
	}
	u := base + Path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return t, "", false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return t, "", false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return t, after, false, nil
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode == http.StatusNotFound {
			return t, "", false, fmt.Errorf("%s answered 404 to %s: not an Interlock controller of feed protocol %d? (%s)", base, Path, Protocol, strings.TrimSpace(string(msg)))
		}
		return t, "", false, fmt.Errorf("%s answered %s: %s", base, resp.Status, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxBody+1))
	if err != nil {
		return t, "", false, fmt.Errorf("%w: reading the snapshot from %s: %v", ErrCorrupt, base, err)
	}
	if int64(len(body)) > c.opts.MaxBody {
		return t, "", false, fmt.Errorf("%w: %s sent over %d bytes", ErrTooLarge, base, c.opts.MaxBody)
	}
	t, version, err = Decode(body)
	if err != nil {
		return t, "", false, fmt.Errorf("snapshot from %s refused: %w", base, err)
	}
	return t, version, true, nil
}
