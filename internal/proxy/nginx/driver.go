// Package nginx is the nginx driver: it renders the routing table into a
// complete nginx.conf from a template (built in, or the user's), validates
// the candidate with the real nginx -t, swaps it in atomically and reloads
// nginx gracefully: a local process (supervised by Interlock, or named by a
// pid file) or side-loaded nginx containers. A candidate that fails
// validation never goes live; the error carries nginx's own message.
// README.md documents the features, the template view and the modes.
package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// Mode says where the nginx that serves the file runs and how it is
// reloaded.
type Mode string

const (
	// Supervise: Interlock starts nginx as its child (daemon off), reloads
	// it with SIGHUP, restarts it with backoff if it dies, and stops it
	// gracefully (SIGQUIT) on Close.
	Supervise Mode = "supervise"
	// PidFile: an nginx started by someone else, whose master writes its
	// pid to Options.PidFile (the rendered pid directive names that file);
	// reloaded with SIGHUP.
	PidFile Mode = "pidfile"
	// Copy: side-loaded nginx containers. The file is copied into each over
	// the Docker API, validated there with nginx -t, then put live and
	// reloaded with SIGHUP (Options.Containers does all of it).
	Copy Mode = "copy"
	// Volume: side-loaded nginx containers that share the directory of
	// Options.ConfigPath at the same path. Validation uses the local nginx;
	// the containers are reloaded with SIGHUP over the Docker API.
	Volume Mode = "volume"
)

// Containers is the Docker side of the container modes (docker.Sideload).
// Reload puts files (path inside the containers -> content) live in every
// running proxy container and reloads them; nil files only reloads. It is
// declared here, in plain types, so this driver never imports Docker code.
type Containers interface {
	Reload(ctx context.Context, files map[string][]byte) error
}

// ACMECertificates is the ACME side (internal/acme, wired up by
// cmd/interlock), declared here in plain types so that this driver never
// imports it.
type ACMECertificates interface {
	// Sync is handed the names of the ACME hosts of every table applied.
	Sync(names []string)
	// File returns name's certificate (chain and key in one PEM file, as
	// nginx sees the path), "" while there is none.
	File(name string) string
}

// Options configure a Driver. Zero values take the documented defaults.
type Options struct {
	// Template is the parsed template; nil means the built-in one.
	Template *Template
	// HTTPAddr and HTTPSAddr are where nginx listens (host:port, port > 0).
	// HTTPS is rendered only when a host has TLS.
	HTTPAddr, HTTPSAddr string
	// CertDir is the directory label certificate paths are relative to.
	CertDir string
	// Profile is the TLS profile; the zero value is tlsconf.Default.
	Profile tlsconf.Profile
	// StateDir is Interlock's directory for nginx: the live file (unless
	// ConfigPath says otherwise), the candidate, pid file, temp paths, the
	// default certificate and nginx -t's scratch prefix.
	StateDir string
	// ConfigPath is the live file Interlock writes (Supervise, PidFile,
	// Volume). Default StateDir/nginx.conf.
	ConfigPath string
	// Binary is the nginx executable (PATH is searched). Default "nginx".
	Binary string
	Mode   Mode
	// PidFile is the pid file of the nginx master (Mode PidFile).
	PidFile string
	// Containers reaches the proxy containers (Copy, Volume).
	Containers Containers
	// ContainerConfigPath is where the file goes inside the containers
	// (Copy). Default /etc/nginx/nginx.conf.
	ContainerConfigPath string
	// StreamModule is the file of nginx's stream module, which SNI
	// passthrough (routing.TLS.Passthrough) needs: loaded with load_module
	// only when a passthrough host is rendered. Default DefaultStreamModule
	// (Debian's libnginx-mod-stream); StreamModuleBuiltIn for an nginx
	// built with the stream module compiled in.
	StreamModule string
	// Edge is the PROXY protocol, forwarded headers, access log, timeouts
	// and limits (README.md, "Edge"); the zero value renders none.
	Edge Edge
	// CertCheck judges a table's label certificates (Settings.CertCheck):
	// a host whose certificate cannot be served gets the default one, as
	// in the built-in proxy. Nil checks only that the files are readable.
	CertCheck func(t routing.Table) map[string]string
	// ACME supplies ACME hosts' certificates as files (routing.TLS.ACME);
	// nil serves those hosts the default certificate. Not with Copy: the
	// files would have to be copied into the containers too.
	ACME ACMECertificates
	// ACMEChallenge is the host:port of Interlock's HTTP-01 responder,
	// where ACME hosts' /.well-known/acme-challenge/ requests are passed;
	// "" passes none.
	ACMEChallenge string
	// Stdout receives a supervised nginx's standard output when
	// Edge.AccessLog is "-" (the access log); otherwise it goes to the log
	// with nginx's stderr, as before. Default os.Stdout.
	Stdout io.Writer
	Logger *slog.Logger
}

// DefaultStreamModule is where Debian's libnginx-mod-stream puts nginx's
// stream module (with ssl_preread and realip in it).
const DefaultStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// StreamModuleBuiltIn as Options.StreamModule says that nginx has the
// stream module compiled in (--with-stream): no load_module is rendered.
const StreamModuleBuiltIn = "builtin"

// containerSocketDir is where the internal sockets of SNI passthrough are
// in the container modes: a directory of each container's own (the shared
// directory of mode volume would have them collide).
const containerSocketDir = "/run"

// Stats are the driver's counters since it was created.
type Stats struct {
	// Applies counts Apply calls; Unchanged those whose rendered bytes
	// equalled the live file (no write, no reload).
	Applies, Unchanged int64
	// Reloads counts configurations put live and reloaded.
	Reloads int64
	// Adopted counts first applies that took over an nginx already
	// serving the file, without a reload (mode pidfile or volume).
	Adopted int64
	// Failures counts Apply calls that failed (render, validation, reload).
	Failures int64
	// LastError is the last failure, "" after a success.
	LastError string
	// LastReload is when the last reload was sent.
	LastReload time.Time
	// Bytes is the size of the live file.
	Bytes int
	// Skipped is what the live file leaves out (tcp routes, unreadable
	// certificates).
	Skipped []Skip
}

// Driver is the nginx driver. Apply is called from one goroutine (the
// controller's); Stats and Render are safe from any.
type Driver struct {
	opts     Options
	tmpl     *Template
	settings Settings
	target   target
	log      *slog.Logger

	prepareOnce sync.Mutex
	prepared    bool

	mu   sync.Mutex
	live []byte
	// table is the table live now, for Refresh.
	table routing.Table
	stats Stats
}

// target puts a validated configuration live and reloads nginx.
type target interface {
	// put validates conf and, only if it passes, makes it live and reloads.
	put(ctx context.Context, conf []byte) error
	close(ctx context.Context) error
}

// New returns a driver for opts. It has no side effects: directories and
// the default certificate are made on the first Apply, so Render (interlock
// render) touches nothing.
func New(opts Options) (*Driver, error) {
	if opts.Template == nil {
		t, err := LoadTemplate("")
		if err != nil {
			return nil, err
		}
		opts.Template = t
	}
	if opts.Binary == "" {
		opts.Binary = "nginx"
	}
	if opts.StateDir == "" {
		return nil, errors.New("nginx: a state directory is needed")
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(opts.StateDir, "nginx.conf")
	}
	if opts.ContainerConfigPath == "" {
		opts.ContainerConfigPath = "/etc/nginx/nginx.conf"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	switch opts.StreamModule {
	case "":
		opts.StreamModule = DefaultStreamModule
	case StreamModuleBuiltIn:
	default:
		if !filepath.IsAbs(opts.StreamModule) {
			return nil, fmt.Errorf("nginx: stream module %q must be an absolute path (or %q)", opts.StreamModule, StreamModuleBuiltIn)
		}
	}
	d := &Driver{opts: opts, tmpl: opts.Template, log: opts.Logger}
	s := Settings{
		HTTPAddr: opts.HTTPAddr, HTTPSAddr: opts.HTTPSAddr, CertDir: opts.CertDir, Profile: opts.Profile,
		DefaultCert: filepath.Join(opts.StateDir, defaultCertName), DefaultKey: filepath.Join(opts.StateDir, defaultKeyName),
		CertMissing: unreadable, StreamModule: opts.StreamModule, ModuleMissing: unreadable, SocketDir: opts.StateDir,
		Edge: opts.Edge, ACMEChallenge: opts.ACMEChallenge,
	}
	if opts.ACME != nil && opts.Mode == Copy {
		opts.Logger.Warn("nginx: ACME certificates are not delivered in mode copy (only the configuration is copied into the containers); ACME hosts get the default certificate. Share the state directory (mode volume) instead")
		opts.ACME, d.opts.ACME = nil, nil
	}
	if opts.ACME != nil {
		s.ACMECert = opts.ACME.File
	}
	if opts.Mode != Copy {
		s.CertCheck = opts.CertCheck // in mode copy the certificate directory is the containers'
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if s.StreamModule == StreamModuleBuiltIn {
		s.StreamModule = ""
	}
	local := localTarget{bin: opts.Binary, live: opts.ConfigPath, scratch: filepath.Join(opts.StateDir, "scratch"), log: opts.Logger}
	switch opts.Mode {
	case Supervise, "":
		d.opts.Mode = Supervise
		s.Runtime = Runtime{PidFile: filepath.Join(opts.StateDir, "nginx.pid"), ErrorLog: "stderr", TempDir: filepath.Join(opts.StateDir, "tmp")}
		sup := newSupervisor(opts.Binary, opts.StateDir, opts.ConfigPath, s.Runtime.PidFile, opts.Logger)
		if opts.Edge.AccessLog == AccessLogStdout {
			sup.stdout = opts.Stdout
		}
		sup.sockets = []string{filepath.Join(s.SocketDir, socketTLS), filepath.Join(s.SocketDir, socketRelay)}
		local.reloader = sup
		d.target = &local
	case PidFile:
		if opts.PidFile == "" {
			return nil, errors.New("nginx: mode pidfile needs the pid file of the nginx master")
		}
		s.Runtime = Runtime{PidFile: opts.PidFile, ErrorLog: "stderr", TempDir: filepath.Join(opts.StateDir, "tmp")}
		local.reloader = pidFileReloader(opts.PidFile)
		d.target = &local
	case Volume:
		if opts.Containers == nil {
			return nil, errors.New("nginx: mode volume needs the Docker side (Containers)")
		}
		dir := filepath.Dir(opts.ConfigPath)
		s.DefaultCert, s.DefaultKey = filepath.Join(dir, defaultCertName), filepath.Join(dir, defaultKeyName)
		s.SocketDir = containerSocketDir
		local.reloader = containerReloader{opts.Containers}
		d.target = &local
	case Copy:
		if opts.Containers == nil {
			return nil, errors.New("nginx: mode copy needs the Docker side (Containers)")
		}
		dir := filepath.Dir(opts.ContainerConfigPath)
		s.DefaultCert, s.DefaultKey = filepath.Join(dir, defaultCertName), filepath.Join(dir, defaultKeyName)
		// The certificate directory is the containers'; Interlock may not
		// see it, and nginx -t inside the container checks it anyway, as
		// it does the stream module.
		s.CertMissing, s.ModuleMissing = nil, nil
		s.SocketDir = containerSocketDir
		d.target = &copyTarget{containers: opts.Containers, path: opts.ContainerConfigPath,
			certPath: s.DefaultCert, keyPath: s.DefaultKey, stateDir: opts.StateDir}
	default:
		return nil, fmt.Errorf("nginx: unknown mode %q", opts.Mode)
	}
	d.settings = s
	// Fail now, not at the first event, when a setting cannot reach the
	// file: addresses nginx cannot listen on, paths nginxString refuses,
	// a template that fails on an empty table.
	for _, p := range []string{opts.CertDir, s.DefaultCert, s.DefaultKey, s.Runtime.PidFile, s.Runtime.TempDir, s.StreamModule} {
		if _, err := nginxString(p); err != nil {
			return nil, fmt.Errorf("nginx: path %q cannot be written into nginx.conf: %w", p, err)
		}
	}
	if _, _, err := d.Render(routing.Table{}); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return d, nil
}

// Name implements controller.Driver.
func (d *Driver) Name() string { return "nginx" }

// Render returns the exact file Apply would write for t, and what it
// leaves out.
func (d *Driver) Render(t routing.Table) ([]byte, []Skip, error) {
	v, err := NewView(t, d.settings)
	if err != nil {
		return nil, nil, err
	}
	b, err := d.tmpl.Render(v)
	return b, v.Skipped, err
}

// Apply implements controller.Driver: render; when the bytes equal the
// live file, nothing; else validate the candidate and only then swap it in
// and reload. On any failure the previous configuration keeps serving.
func (d *Driver) Apply(ctx context.Context, t routing.Table) error {
	err := d.apply(ctx, t, false)
	if err == nil && d.opts.ACME != nil {
		// Only now does nginx pass the new names' HTTP-01 challenges on.
		d.opts.ACME.Sync(t.ACMENames())
	}
	return err
}

// Refresh implements controller.Refresher: the live table's file is
// rendered, validated and reloaded again, even when its bytes are the
// same, so nginx reads the certificates it names anew (an ACME
// certificate issued or renewed, a certificate file rotated). Before the
// first Apply it does nothing.
func (d *Driver) Refresh(ctx context.Context) error {
	d.mu.Lock()
	t, live := d.table, d.live != nil
	d.mu.Unlock()
	if !live {
		return nil
	}
	return d.apply(ctx, t, true)
}

// apply is Apply; force reloads even an unchanged file.
func (d *Driver) apply(ctx context.Context, t routing.Table, force bool) error {
	conf, skips, err := d.Render(t)
	d.mu.Lock()
	d.stats.Applies++
	same := err == nil && d.live != nil && bytes.Equal(conf, d.live) && !force
	if same {
		d.stats.Unchanged++
		d.table = t
	}
	first := d.live == nil
	d.mu.Unlock()
	if same {
		return nil
	}
	if err == nil && first && !force && d.adopt(conf) {
		d.mu.Lock()
		d.live, d.table = conf, t
		d.stats.Adopted++
		d.stats.Bytes, d.stats.Skipped, d.stats.LastError = len(conf), skips, ""
		d.mu.Unlock()
		d.log.Info("nginx adopted without a reload: it serves the file Interlock renders", "mode", string(d.opts.Mode), "config", d.opts.ConfigPath)
		return nil
	}
	if err == nil {
		err = d.prepare()
	}
	if err == nil {
		err = d.target.put(ctx, conf)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.stats.Failures++
		d.stats.LastError = err.Error()
		return err
	}
	if !slices.Equal(skips, d.stats.Skipped) {
		for _, s := range skips {
			d.log.Warn("nginx: left out of the configuration", "host", s.Host, "path", s.Path, "reason", s.Reason)
		}
	}
	d.live, d.table = conf, t
	d.stats.Reloads++
	d.log.Debug("nginx reloaded", "mode", string(d.opts.Mode), "reloads", d.stats.Reloads, "bytes", len(conf))
	d.stats.LastError = ""
	d.stats.LastReload = time.Now()
	d.stats.Bytes = len(conf)
	d.stats.Skipped = skips
	return nil
}

// Stats returns a copy of the counters.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Skipped = slices.Clone(s.Skipped)
	return s
}

// Close stops a supervised nginx gracefully (SIGQUIT, then SIGKILL when ctx
// ends first). Other modes leave nginx running: it keeps serving the last
// configuration.
func (d *Driver) Close(ctx context.Context) error {
	return d.target.close(ctx)
}

// adopt reports whether the first apply may take over an nginx that
// already serves conf, as after a restart of Interlock, instead of
// reloading it: an nginx Interlock does not start (mode pidfile, whose
// master is alive, or mode volume), and a live file that is conf byte for
// byte. (A reload lost with the previous Interlock, between the file and
// the signal, would go unnoticed until the next change; the window is the
// time of one signal.)
func (d *Driver) adopt(conf []byte) bool {
	switch d.opts.Mode {
	case PidFile:
		pid, err := readPid(d.opts.PidFile)
		if err != nil || syscall.Kill(pid, 0) != nil {
			return false
		}
	case Volume:
	default:
		return false
	}
	old, err := os.ReadFile(d.opts.ConfigPath)
	if err != nil || !bytes.Equal(old, conf) {
		return false
	}
	return d.prepare() == nil
}

// prepare makes the state directory, the temp directory and the default
// certificate, once.
func (d *Driver) prepare() error {
	d.prepareOnce.Lock()
	defer d.prepareOnce.Unlock()
	if d.prepared {
		return nil
	}
	dirs := []string{d.opts.StateDir, filepath.Join(d.opts.StateDir, "scratch"), filepath.Dir(d.opts.ConfigPath)}
	if td := d.settings.Runtime.TempDir; td != "" {
		dirs = append(dirs, td)
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("nginx: state directory: %w", err)
		}
	}
	certDir := d.opts.StateDir
	if d.opts.Mode == Volume {
		certDir = filepath.Dir(d.opts.ConfigPath)
	}
	if err := ensureDefaultCert(certDir); err != nil {
		return err
	}
	d.prepared = true
	return nil
}

// unreadable reports whether path cannot be opened for reading.
func unreadable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	_ = f.Close()
	return false
}
