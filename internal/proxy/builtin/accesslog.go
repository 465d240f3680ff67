package builtin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// The access log: one line per request the proxy answers (forwarded or
// answered itself), in NCSA Common Log Format extended with the host, the
// route, the backend and the duration, or as one JSON object per line. See
// README.md for both formats, field by field.
//
// Cost: a request formats its line into a pooled buffer with strconv and
// appends, no fmt and no reflection, then copies it into one shared
// bufio.Writer under a mutex; a goroutine flushes it every FlushInterval,
// and a full buffer (64 KiB) is written at once. The record that carries
// the route and the backend back from the retry loop is one allocation per
// request, plus the request copy that puts it in the context
// (BenchmarkEdge).

// The access log formats (AccessLogOptions.Format).
const (
	AccessLogCommon = "common"
	AccessLogJSON   = "json"
)

const (
	accessLogBuffer        = 64 << 10
	defaultAccessLogFlush  = time.Second
	accessLogErrorLogEvery = time.Minute
)

// AccessLogOptions configures OpenAccessLog.
type AccessLogOptions struct {
	// Path is the file lines are appended to (created 0640 if missing),
	// or "-" for Stdout.
	Path string
	// Format is AccessLogCommon (the default when empty) or AccessLogJSON.
	Format string
	// Stdout is where "-" writes; nil means os.Stdout.
	Stdout io.Writer
	// Logger receives write and reopen failures. Nil means slog.Default().
	Logger *slog.Logger
	// FlushInterval is how often buffered lines are written out. Zero
	// means 1s.
	FlushInterval time.Duration
}

// AccessLog writes access log lines for a Proxy (Options.AccessLog). It is
// safe for concurrent use. Reopen reopens the file (log rotation); Close
// flushes it and stops the flushing goroutine.
type AccessLog struct {
	json bool
	path string // "" for a writer that is not a file (Stdout)
	log  *slog.Logger

	mu     sync.Mutex
	file   *os.File // nil when writing to Stdout
	out    io.Writer
	buf    *bufio.Writer
	closed bool
	// lost counts lines dropped by failed writes since the last report;
	// lastReport is when one was last logged. Both guarded by mu.
	lost       uint64
	lastReport time.Time

	stop chan struct{}
	done chan struct{}
}

// OpenAccessLog opens the access log and starts its flushing goroutine.
func OpenAccessLog(opts AccessLogOptions) (*AccessLog, error) {
	l := &AccessLog{log: opts.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if l.log == nil {
		l.log = slog.Default()
	}
	switch opts.Format {
	case "", AccessLogCommon:
	case AccessLogJSON:
		l.json = true
	default:
		return nil, fmt.Errorf("access log format %q: want %s or %s", opts.Format, AccessLogCommon, AccessLogJSON)
	}
	switch opts.Path {
	case "":
		return nil, errors.New("access log: no path; want a file or \"-\" for standard output")
	case "-":
		l.out = opts.Stdout
		if l.out == nil {
			l.out = os.Stdout
		}
	default:
		f, err := openAccessFile(opts.Path)
		if err != nil {
			return nil, err
		}
		l.path, l.file, l.out = opts.Path, f, f
	}
	l.buf = bufio.NewWriterSize(l.out, accessLogBuffer)
	every := opts.FlushInterval
	if every <= 0 {
		every = defaultAccessLogFlush
	}
	go l.flushLoop(every)
	return l, nil
}

func openAccessFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open access log: %s is a directory", path)
	}
	return f, nil
}

func (l *AccessLog) flushLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.Flush()
		}
	}
}

// Flush writes out the buffered lines.
func (l *AccessLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	return l.flushLocked()
}

func (l *AccessLog) flushLocked() error {
	if l.buf.Buffered() == 0 {
		return nil
	}
	err := l.buf.Flush()
	if err != nil {
		l.failedLocked(err)
	}
	return err
}

// failedLocked handles a write error: bufio.Writer keeps its error for
// good, so the buffer is dropped (counted) and reset, and the next write
// tries again. Reported at most once per accessLogErrorLogEvery.
func (l *AccessLog) failedLocked(err error) {
	l.lost += uint64(l.buf.Buffered()) // bytes rather than lines: what was lost
	l.buf.Reset(l.out)
	if now := time.Now(); now.Sub(l.lastReport) >= accessLogErrorLogEvery {
		l.lastReport = now
		l.log.Warn("access log write failed; buffered lines were dropped", "path", l.path, "dropped_bytes", l.lost, "error", err)
		l.lost = 0
	}
}

// Reopen closes the file and opens the same path again, so that a file
// renamed by logrotate is let go of and a new one created (SIGUSR1). The
// lines buffered so far go to the old file. If the path cannot be opened,
// the old file stays in use and the error is returned. For "-" it only
// flushes.
func (l *AccessLog) Reopen() error {
	if l.path == "" {
		return l.Flush()
	}
	f, err := openAccessFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		f.Close()
		return errors.New("access log: closed")
	}
	_ = l.flushLocked()
	old := l.file
	l.file, l.out = f, f
	l.buf.Reset(f)
	l.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("close the old access log: %w", err)
	}
	return nil
}

// Path is the file the log writes to, "" for standard output.
func (l *AccessLog) Path() string { return l.path }

// Close flushes the log, stops its goroutine and closes the file. Lines
// written after Close are dropped.
func (l *AccessLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.flushLocked()
	if l.file != nil {
		err = errors.Join(err, l.file.Close())
	}
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	return err
}

// write appends one finished line.
func (l *AccessLog) write(line []byte) {
	l.mu.Lock()
	if !l.closed {
		if _, err := l.buf.Write(line); err != nil {
			l.failedLocked(err)
		}
	}
	l.mu.Unlock()
}

// accessKey finds a request's accessRecord in its context.
type accessKey struct{}

// accessRecord is what the access log learns about one request as it is
// served: the route (Proxy.serve) and the backend last tried (RoundTrip),
// the status and size (its writer). It is the request's context too, so
// the retry loop, which sees only the outbound request, can find it: one
// allocation for all of it. Everything is written on the request's own
// goroutine (ReverseProxy calls RoundTrip synchronously), before the line
// is written.
type accessRecord struct {
	context.Context
	w       accessWriter
	start   time.Time
	route   *route
	backend string
}

func (r *accessRecord) Value(key any) any {
	if key == (accessKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// recordOf returns the request's accessRecord, nil without one.
func recordOf(r *http.Request) *accessRecord {
	rec, _ := r.Context().Value(accessKey{}).(*accessRecord)
	return rec
}

// serveLogged serves r and writes its access log line, also when the
// handler is aborted (ReverseProxy panics with http.ErrAbortHandler when a
// backend breaks off in the middle of a body).
func (p *Proxy) serveLogged(w http.ResponseWriter, r *http.Request, t *table, h *host, rt *route) {
	rec := &accessRecord{Context: r.Context(), start: time.Now()}
	rec.w.ResponseWriter = w
	r = r.WithContext(rec)
	defer p.logRequest(rec, r)
	p.serveMatched(&rec.w, r, rec, t, h, rt)
}

var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// logRequest formats rec's line and writes it.
func (p *Proxy) logRequest(rec *accessRecord, r *http.Request) {
	p.access.writeLine(&logFields{
		start: rec.start, took: time.Since(rec.start),
		client: clientIP(r.RemoteAddr), method: r.Method, uri: requestURI(r), proto: r.Proto,
		host: r.Host, path: r.URL.Path, query: r.URL.RawQuery,
		status: rec.status(), bytes: rec.w.bytes, route: rec.route, backend: rec.backend,
	})
}

// logFields is one access log line's values, whichever engine served the
// request. The strings are only read while the line is formatted.
type logFields struct {
	start                                         time.Time
	took                                          time.Duration
	client, method, uri, proto, host, path, query string
	status                                        int
	bytes                                         int64
	route                                         *route
	backend                                       string
}

// writeLine formats f into a pooled buffer and writes it.
func (l *AccessLog) writeLine(f *logFields) {
	bp := lineBuffers.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = appendJSONLine(b, f)
	} else {
		b = appendCommonLine(b, f)
	}
	l.write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		lineBuffers.Put(bp)
	}
}

// status is the code the client got: what was written, else 200 (net/http
// answers 200 for a handler that wrote nothing).
func (rec *accessRecord) status() int {
	if rec.w.code == 0 {
		return http.StatusOK
	}
	return rec.w.code
}

// appendRoute appends the route as "HOST/PATH" ("app.example/api",
// "app.example/"), nothing when no route matched.
func appendRoute(b []byte, rt *route) []byte {
	if rt == nil {
		return b
	}
	b = append(b, rt.host...)
	return append(b, rt.path...)
}

// requestURI is the request target as the client sent it.
func requestURI(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// appendCommonLine appends
//
//	CLIENT - - [TIME] "METHOD URI PROTO" STATUS BYTES "HOST" "ROUTE" "BACKEND" SECONDS
//
// with "-" for an empty field, quoted fields escaped as \" \\ and \xHH.
func appendCommonLine(b []byte, f *logFields) []byte {
	b = appendCommonField(b, f.client)
	b = append(b, " - - ["...)
	b = f.start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, `] "`...)
	b = appendEscaped(b, f.method)
	b = append(b, ' ')
	b = appendEscaped(b, f.uri)
	b = append(b, ' ')
	b = appendEscaped(b, f.proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(f.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, f.bytes, 10)
	b = append(b, ` "`...)
	b = appendEscaped(b, f.host)
	b = append(b, `" "`...)
	if f.route != nil {
		b = appendEscaped(b, f.route.host)
		b = appendEscaped(b, f.route.path)
	}
	b = append(b, `" "`...)
	b = appendEscaped(b, f.backend)
	b = append(b, `" `...)
	b = strconv.AppendFloat(b, f.took.Seconds(), 'f', 6, 64)
	return append(b, '\n')
}

// appendCommonField appends an unquoted field, "-" when empty.
func appendCommonField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

// appendEscaped appends s with '"', '\\', control bytes, DEL and bytes
// from 0x80 up escaped (\" \\ \xHH), as nginx escapes its log variables:
// a line never breaks or lets a field end early, whatever the client sent.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendJSONLine appends one JSON object and a newline:
//
//	{"time":"2006-01-02T15:04:05.000Z07:00","client":"IP","host":"...","method":"GET",
//	 "path":"/x","query":"a=1","proto":"HTTP/1.1","status":200,"bytes":2,
//	 "duration_ms":0.123,"route":"HOST/PATH","backend":"IP:PORT"}
//
// route and backend are "" when there was none.
func appendJSONLine(b []byte, f *logFields) []byte {
	b = append(b, `{"time":"`...)
	b = f.start.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","client":`...)
	b = appendJSONString(b, f.client)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, f.host)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, f.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, f.path)
	b = append(b, `,"query":`...)
	b = appendJSONString(b, f.query)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, f.proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(f.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, f.bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(f.took)/float64(time.Millisecond), 'f', 3, 64)
	b = append(b, `,"route":"`...)
	if f.route != nil {
		b = appendJSONChars(b, f.route.host)
		b = appendJSONChars(b, f.route.path)
	}
	b = append(b, `","backend":`...)
	b = appendJSONString(b, f.backend)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONChars(b, s)
	return append(b, '"')
}

// appendJSONChars appends s escaped for the inside of a JSON string:
// '"', '\\' and control characters escaped, invalid UTF-8 replaced by
// U+FFFD, and U+2028/U+2029 escaped (as encoding/json does).
func appendJSONChars(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

// accessWriter records the status code and the body bytes written through
// it. Like statusWriter it hides nothing: Unwrap lets
// http.ResponseController (flush, hijack) reach the server's writer, and
// Hijack notes the 101 of an upgraded connection.
type accessWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *accessWriter) WriteHeader(code int) {
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *accessWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *accessWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (w *accessWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
