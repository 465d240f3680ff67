package feed

import (
	"bytes"
	"compress/gzip"
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// DefaultMaxWait caps how long the server holds a request for a change.
const DefaultMaxWait = 30 * time.Second

// ServerOptions tune a Server. Zero values take the documented defaults.
type ServerOptions struct {
	// MaxWait caps the wait a client asks for. Default DefaultMaxWait.
	MaxWait time.Duration
	// Ready, when set, says why the server should not be followed now
	// (its Docker connection is lost, say): a non-nil error is answered
	// 503 with its text, and edges move to another controller. nil: ready
	// whenever it holds a table.
	Ready func() error
	// Challenges, when set, answers the ACME HTTP-01 challenges
	// (ChallengePath, with the Host the CA asked for) that edges pass
	// on: the controllers obtain the certificates, the CA connects to
	// the edges.
	Challenges http.Handler
	// OnEdgeApplied, when set, is called (in a goroutine of its own)
	// after an edge reported a version it had not reported before.
	OnEdgeApplied func()
	Logger        *slog.Logger
}

// Server is a controller's side of the feed. It is the controller's
// driver (Name, Apply): every table put live becomes the next version,
// and the http.Handler serves it on Path. Before the first Apply it
// answers 503: an edge never gets an empty table from a controller that
// has not heard from Docker yet.
type Server struct {
	opts ServerOptions
	log  *slog.Logger

	mu sync.Mutex
	// table and certs are the live state (certs nil: no ACME);
	// hasTable is false before the first Apply.
	table    routing.Table
	certs    *Certificates
	hasTable bool
	// body and version are the live snapshot ("" before the first);
	// gzipped is body compressed once, for the clients that accept it
	// (Go's transport asks for gzip by itself): a table's JSON repeats
	// its field names and address prefixes, and shrinks about tenfold.
	body, gzipped []byte
	version       string
	// changed is closed, and replaced, at every new version or Close.
	changed chan struct{}
	closed  bool
	stats   ServerStats
	edges   edgeBook
}

// ServerStats counts what the server did.
type ServerStats struct {
	// Version is the live version, "" before the first table.
	Version string `json:"version"`
	// Size is the live snapshot's size in bytes, and GzipSize the same
	// compressed: what one change costs per edge.
	Size     int `json:"size"`
	GzipSize int `json:"gzip_size"`
	// Versions counts the tables applied; Sent the snapshots sent, and
	// SentBytes their bytes; NotModified the waits that ended unchanged.
	Versions    int64 `json:"versions"`
	Sent        int64 `json:"sent"`
	SentBytes   int64 `json:"sent_bytes"`
	NotModified int64 `json:"not_modified"`
	// Waiting is the number of requests held now.
	Waiting int `json:"waiting"`
	// EdgesConnected counts the edges following this controller now,
	// and EdgesCurrent those of them on the live version.
	EdgesConnected int `json:"edges_connected"`
	EdgesCurrent   int `json:"edges_current"`
}

// NewServer returns a server with no table yet.
func NewServer(opts ServerOptions) *Server {
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{opts: opts, log: log, changed: make(chan struct{})}
}

// Name is the driver's name.
func (s *Server) Name() string { return "feed" }

// Apply makes t the live table and wakes the waiting requests. It
// cannot fail but for a table that does not encode.
func (s *Server) Apply(_ context.Context, t routing.Table) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.table, s.hasTable = t, true
	s.edges.sawTable(t)
	return s.publish()
}

// SetCertificates makes c the certificates sent with the table (nil:
// none), a new version when they changed.
func (s *Server) SetCertificates(c *Certificates) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c != nil && s.certs != nil && c.Hash() == s.certs.Hash() {
		return nil // the usual case: a periodic look that found nothing new
	}
	s.certs = c
	if !s.hasTable {
		return nil
	}
	return s.publish()
}

// publish encodes the live table and certificates, and makes them the
// live snapshot when their version changed. s.mu is held: encoding a
// table of 10,000 backends takes a few milliseconds, and changes are
// rare next to polls, which only read.
func (s *Server) publish() error {
	body, version, err := Encode(s.table, s.certs)
	if err != nil {
		return err
	}
	if version == s.version {
		return nil
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(body); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	s.body, s.gzipped, s.version = body, gz.Bytes(), version
	s.stats.Versions++
	if !s.closed { // Close closed it for good: a change while shutting down wakes no one
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return nil
}

// Close answers every waiting request, now and to come, with 503, so that
// edges move to another controller at once instead of waiting for a
// connection that is going away. Give it to http.Server.RegisterOnShutdown.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.changed)
	}
}

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Version, st.Size, st.GzipSize = s.version, len(s.body), len(s.gzipped)
	for _, e := range s.edges.edges {
		if es := s.stateOf(e); es.Connected {
			st.EdgesConnected++
			if es.Current {
				st.EdgesCurrent++
			}
		}
	}
	return st
}

// ServeHTTP answers GET Path?after=VERSION&wait=DURATION: at once with the
// live snapshot when its version is not after; otherwise when it changes,
// or with 304 after the wait (at most MaxWait). 503 (text) while the
// server has no table, is not ready, or is shutting down.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ChallengePath) && s.opts.Challenges != nil {
		s.opts.Challenges.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != Path {
		http.Error(w, "not found: the feed is GET "+Path, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	after := q.Get("after")
	defer s.sawEdge(r, after)()
	wait := s.opts.MaxWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			http.Error(w, "wait="+strconv.Quote(v)+" is not a duration such as 30s", http.StatusBadRequest)
			return
		}
		wait = min(d, s.opts.MaxWait)
	}
	w.Header().Set("Interlock-Feed-Protocol", strconv.Itoa(Protocol))
	timer := time.NewTimer(wait)
	defer timer.Stop()
	waiting := false
	defer func() {
		if waiting {
			s.mu.Lock()
			s.stats.Waiting--
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		body, gzipped, version, changed, closed := s.body, s.gzipped, s.version, s.changed, s.closed
		s.mu.Unlock()
		switch {
		case closed:
			http.Error(w, "controller shutting down", http.StatusServiceUnavailable)
			return
		case version == "":
			http.Error(w, "controller has no routing table yet (Docker has not answered)", http.StatusServiceUnavailable)
			return
		}
		if s.opts.Ready != nil {
			if err := s.opts.Ready(); err != nil {
				http.Error(w, "controller not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if version != after {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ETag", strconv.Quote(version))
			w.Header().Add("Vary", "Accept-Encoding")
			if acceptsGzip(r) {
				w.Header().Set("Content-Encoding", "gzip")
				body = gzipped
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, err := w.Write(body)
			s.mu.Lock()
			s.stats.Sent++
			s.stats.SentBytes += int64(len(body))
			s.mu.Unlock()
			if err != nil {
				s.log.Debug("feed: write snapshot", "remote", r.RemoteAddr, "error", err)
			}
			return
		}
		if !waiting {
			waiting = true
			s.mu.Lock()
			s.stats.Waiting++
			s.mu.Unlock()
		}
		select {
		case <-changed:
		case <-timer.C:
			s.mu.Lock()
			s.stats.NotModified++
			s.mu.Unlock()
			w.Header().Set("ETag", strconv.Quote(version))
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// acceptsGzip reports whether r's Accept-Encoding lists gzip (without
// q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
