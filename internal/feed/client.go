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
	"os"
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
	// TLS is the edge's side of the mutual TLS (ClientTLS), or Files,
	// which re-reads the files when they change: the next connection
	// uses them (the one held is closed when they changed).
	TLS   *tls.Config
	Files *TLSFiles
	// Wait is how long a controller may hold a request when nothing
	// changed. Default 25s (under the server's DefaultMaxWait).
	Wait time.Duration
	// MaxBody bounds a snapshot. Default DefaultMaxBody.
	MaxBody int64
	// RetryMin and RetryMax bound the pause after every controller in the
	// list failed in a row. Defaults 250ms and 5s.
	RetryMin, RetryMax time.Duration
	// Name is how the controllers know this edge (EdgeParam). Default
	// the host name.
	Name string
	// OnCertificates, when set, is called (from Run's goroutine) with
	// every new set of ACME certificates a controller sends.
	OnCertificates func(Certificates)
	Logger         *slog.Logger
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
	if opts.Name == "" {
		opts.Name, _ = os.Hostname()
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
	if opts.Files != nil {
		dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg := opts.Files.ClientConfig()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // the dial and handshake only
			defer cancel()
			return (&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext(ctx, network, addr)
		}
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
		applied  string // the table's hash
		certs    string // the certificates' hash
		retry    = c.opts.RetryMin
		urls     = c.opts.Controllers
		numCtrls = len(urls)
	)
	tlsGen := 0
	if c.opts.Files != nil {
		tlsGen = c.opts.Files.Generation()
	}
	for ctx.Err() == nil {
		if c.opts.Files != nil {
			if g := c.opts.Files.Generation(); g != tlsGen {
				tlsGen = g
				c.http.CloseIdleConnections() // the next poll connects with the new files
			}
		}
		base := strings.TrimSuffix(urls[cur], "/")
		snap, changed, err := c.poll(ctx, base, after)
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
			c.log.Info("feed: following a controller", "controller", base, "version", short(snap.Version))
		}
		c.status.Controller, c.status.Version, c.status.LastError = base, snap.Version, ""
		c.mu.Unlock()
		after = snap.Version
		if !changed {
			continue
		}
		if snap.Certificates != nil && c.opts.OnCertificates != nil {
			// Before the table: a host that enters with its certificate
			// is served with it from its first request.
			if h := snap.Certificates.Hash(); h != certs {
				c.opts.OnCertificates(*snap.Certificates)
				certs = h
			}
		}
		if v := TableVersion(snap.Version); v != applied {
			// Counted as it is handed over, so that whoever sees the
			// table applied sees it counted too.
			c.mu.Lock()
			c.status.Updates++
			c.mu.Unlock()
			apply(snap.Table)
			applied = v
		}
	}
	return nil
}

// poll asks base for the version after after. changed is false for a 304
// (the version is after's).
func (c *Client) poll(ctx context.Context, base, after string) (snap Snapshot, changed bool, err error) {
	q := url.Values{}
	q.Set(EdgeParam, c.opts.Name)
	if after != "" {
		q.Set("after", after)
		q.Set("wait", c.opts.Wait.String())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+Path+"?"+q.Encode(), nil)
	if err != nil {
		return snap, false, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return snap, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return Snapshot{Version: after}, false, nil
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode == http.StatusNotFound {
			return snap, false, fmt.Errorf("%s answered 404 to %s: not an Interlock controller of feed protocol %d? (%s)", base, Path, Protocol, strings.TrimSpace(string(msg)))
		}
		return snap, false, fmt.Errorf("%s answered %s: %s", base, resp.Status, strings.TrimSpace(string(msg)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxBody+1))
	if err != nil {
		return snap, false, fmt.Errorf("%w: reading the snapshot from %s: %v", ErrCorrupt, base, err)
	}
	if int64(len(body)) > c.opts.MaxBody {
		return snap, false, fmt.Errorf("%w: %s sent over %d bytes", ErrTooLarge, base, c.opts.MaxBody)
	}
	if snap, err = Decode(body); err != nil {
		return snap, false, fmt.Errorf("snapshot from %s refused: %w", base, err)
	}
	return snap, true, nil
}

// challengeTimeout bounds a challenge passed on to a controller; the CA
// waits about 10 s for an answer.
const challengeTimeout = 5 * time.Second

// ForwardChallenge passes an ACME HTTP-01 challenge request r on to the
// controller followed (or tried next), which holds the answer, and
// copies its answer to w; 502 when it cannot be reached.
func (c *Client) ForwardChallenge(w http.ResponseWriter, r *http.Request) {
	base := c.Status().Controller
	ctx, cancel := context.WithTimeout(r.Context(), challengeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+r.URL.Path, nil)
	if err == nil {
		req.Host = r.Host // the answer is the host's
		var resp *http.Response
		if resp, err = c.http.Do(req); err == nil {
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
			c.log.Debug("feed: ACME challenge passed on to the controller", "host", r.Host, "path", r.URL.Path, "controller", base, "status", resp.StatusCode)
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(body)
			return
		}
	}
	c.log.Warn("feed: ACME challenge not passed on to the controller; the CA's validation fails and is retried", "host", r.Host, "controller", base, "error", err)
	http.Error(w, "interlock edge: the controller holding the ACME challenge answer is unreachable", http.StatusBadGateway)
}
