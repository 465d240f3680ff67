package haproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/interlock-proxy/interlock/internal/atomicfile"
	"github.com/interlock-proxy/interlock/internal/routing"
	"github.com/interlock-proxy/interlock/internal/tlsconf"
)

// Mode says where the HAProxy that serves the file runs.
type Mode string

const (
	// Supervise: Interlock starts HAProxy in master-worker mode as its
	// child, reloads it through the master CLI, restarts it with backoff
	// if it dies and stops it gracefully on Close.
	Supervise Mode = "supervise"
	// Volume: side-loaded HAProxy containers (Options.Containers) that
	// mount the state directory at the same path and run
	// "haproxy -W -db -f CONFIG". Validation uses the local haproxy; each
	// container has its own admin socket and server-state file there,
	// named by its host name; a reload is SIGUSR2 to each container.
	Volume Mode = "volume"
)

// Options configure a Driver. Zero values take the documented defaults.
type Options struct {
	// Template is the parsed template; nil means the built-in one.
	Template *Template
	// HTTPAddr and HTTPSAddr are where HAProxy listens (host:port,
	// port > 0). HTTPS is bound only when a host has TLS.
	HTTPAddr, HTTPSAddr string
	// TCPAddr is where tcp routes are served, routed by TLS SNI; "" leaves
	// tcp routes out (reported in Stats.Skipped).
	TCPAddr string
	// StatsAddr is HAProxy's stats page and /metrics; it must be a
	// loopback address. "" means none.
	StatsAddr string
	// CertDir is the directory label certificate paths are relative to.
	CertDir string
	// Profile is the TLS profile; the zero value is tlsconf.Default.
	Profile tlsconf.Profile
	// StateDir is Interlock's directory for HAProxy: the live file (unless
	// ConfigPath says otherwise), the candidate, the admin and master
	// sockets, the server-state file, the default certificate and the
	// certificate bundles. Socket paths must stay under 104 bytes.
	StateDir string
	// ConfigPath is the live file. Default StateDir/haproxy.cfg.
	ConfigPath string
	// Binary is the haproxy executable (PATH is searched). Default
	// "haproxy".
	Binary string
	// Mode is where HAProxy runs; "" means Supervise.
	Mode Mode
	// Containers reaches the proxy containers (Volume).
	Containers Containers
	// DrainTimeout is how long a server that left the table may finish its
	// connections (in drain state) before they are cut; also HAProxy's
	// hard-stop-after for old workers after a reload. Default 30s.
	DrainTimeout time.Duration
	// Edge is the PROXY protocol, forwarded headers, access log, timeouts
	// and limits (README.md, "Edge"); the zero value renders none.
	Edge Edge
	// CertCheck judges a table's label certificates (Settings.CertCheck):
	// a host whose certificate cannot be served gets the default one, as
	// in the built-in proxy. Nil checks only that the files are readable.
	CertCheck func(t routing.Table) map[string]string
	// ACME supplies ACME hosts' certificates as files (routing.TLS.ACME);
	// nil serves those hosts the default certificate.
	ACME ACMECertificates
	// ACMEChallenge is the host:port of Interlock's HTTP-01 responder,
	// where ACME hosts' /.well-known/acme-challenge/ requests go; ""
	// passes none.
	ACMEChallenge string
	// Stdout receives a supervised HAProxy's standard output when
	// Edge.AccessLog is "-" (log stdout: the access log); otherwise it
	// goes to the log with HAProxy's stderr, as before. Default os.Stdout.
	Stdout io.Writer
	Logger *slog.Logger
}

// ACMECertificates is the ACME side (internal/acme, wired up by
// cmd/interlock), declared here in plain types so that this driver never
// imports it.
type ACMECertificates interface {
	// Sync is handed the names of the ACME hosts of every table applied.
	Sync(names []string)
	// File returns name's certificate (chain and key in one PEM file, as
	// HAProxy sees the path), "" while there is none.
	File(name string) string
}

// Stats are the driver's counters since it was created.
type Stats struct {
	// Applies counts Apply calls; Unchanged those that changed nothing.
	Applies, Unchanged int64
	// RuntimeApplies counts applies done over the Runtime API alone:
	// backend-only changes, with no reload.
	RuntimeApplies int64
	// Reloads counts reloads of a running HAProxy (not its first start).
	Reloads int64
	// Starts counts HAProxy starts: the first one and every restart.
	Starts int64
	// RuntimeOps counts Runtime API commands that changed a server (add,
	// enable, drain, ready, disable, delete, shutdown sessions).
	RuntimeOps int64
	// RuntimeFallbacks counts backend-only changes that needed a reload
	// after all (a Runtime API command failed, or a server is named by a
	// host name, which the Runtime API cannot resolve).
	RuntimeFallbacks int64
	// Adopted counts first applies that took over running proxy
	// containers already serving the file, without a reload (adopt).
	Adopted int64
	// Draining is the number of servers in drain now; Drained counts
	// those deleted once their connections ended, DrainTimeouts those
	// whose connections were cut after DrainTimeout.
	Draining               int
	Drained, DrainTimeouts int64
	// Failures counts Apply calls that failed (render, validation, reload).
	Failures int64
	// LastError is the last failure, "" after a success.
	LastError string
	// LastReload is when the last reload (or start) completed.
	LastReload time.Time
	// Bytes is the size of the live file; Servers the number of servers in
	// it.
	Bytes, Servers int
	// Skipped is what the live file leaves out.
	Skipped []Skip
}

// Driver is the HAProxy driver. Apply is called from one goroutine (the
// controller's); Render, Stats and Proc are safe from any.
type Driver struct {
	opts     Options
	tmpl     *Template
	settings Settings
	run      runner
	// sup is the supervised HAProxy (Supervise), nil otherwise.
	sup *supervisor
	log *slog.Logger

	// mu serializes Apply, the drain reaper and Close, and guards what
	// follows.
	mu sync.Mutex
	// live is what HAProxy serves now; nil until the first successful
	// apply, and reset when a reload fails.
	live *live
	// table is the table live now, for Refresh.
	table    routing.Table
	draining map[serverKey]*drain
	// known are the instances (by id) that served at the last reload;
	// one that is new takes a reload before any Runtime API change.
	known  map[string]bool
	stats  Stats
	closed bool
	// reaper is the drain goroutine, started with the first drain.
	reaper     sync.Once
	reaperStop context.CancelFunc
	reaperDone chan struct{}
	wake       chan struct{}
}

// live is what HAProxy serves.
type live struct {
	// hash is the live table's Hash; shape its tableShape; view the live
	// view's viewShape.
	hash, shape string
	view        [sha256.Size]byte
	// fileCurrent is true when the live file lists what HAProxy serves.
	fileCurrent bool
	// backends are each backend's servers in the table (draining ones are
	// in Driver.draining instead), with the backend's server options.
	backends map[string]liveBackend
}

type liveBackend struct {
	opts  []string
	check bool
	// sticky: the backend has a sticky cookie (Backend.Cookie); its new
	// servers need a reload (HAProxy 2.6 cannot give a server added at run
	// time its cookie value), and leaving ones go to maintenance, not
	// drain, which would still take their pinned clients.
	sticky  bool
	servers map[string]Server
}

type serverKey struct{ backend, server string }

// New returns a driver for opts. It has no side effects: the state
// directory and the default certificate are made on the first Apply, so
// Render (interlock render) touches nothing.
func New(opts Options) (*Driver, error) {
	if opts.Template == nil {
		t, err := LoadTemplate("")
		if err != nil {
			return nil, err
		}
		opts.Template = t
	}
	if opts.Binary == "" {
		opts.Binary = "haproxy"
	}
	if opts.StateDir == "" {
		return nil, errors.New("haproxy: a state directory is needed")
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = filepath.Join(opts.StateDir, "haproxy.cfg")
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = defaultHardStop
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("driver", "haproxy")
	d := &Driver{
		opts: opts, tmpl: opts.Template, log: log,
		draining: map[serverKey]*drain{},
		wake:     make(chan struct{}, 1),
		settings: Settings{
			HTTPAddr: opts.HTTPAddr, HTTPSAddr: opts.HTTPSAddr, TCPAddr: opts.TCPAddr, StatsAddr: opts.StatsAddr,
			CertDir: opts.CertDir, Profile: opts.Profile,
			DefaultCert: filepath.Join(opts.StateDir, defaultCertName), BundleDir: filepath.Join(opts.StateDir, "certs"),
			HardStopAfter: opts.DrainTimeout, CertMissing: unreadable, Edge: opts.Edge,
			ACMEChallenge: opts.ACMEChallenge,
		},
	}
	if opts.ACME != nil {
		d.settings.ACMECert = opts.ACME.File
	}
	d.settings.CertCheck = opts.CertCheck
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	switch opts.Mode {
	case Supervise, "":
		d.opts.Mode = Supervise
		admin, masterSock := filepath.Join(opts.StateDir, "admin.sock"), filepath.Join(opts.StateDir, "master.sock")
		for _, p := range []string{admin, masterSock} {
			if len(p) >= 104 {
				return nil, fmt.Errorf("haproxy: socket path %s is %d bytes; unix sockets take at most 103, so choose a shorter state directory", p, len(p))
			}
		}
		if strings.ContainsAny(masterSock, ", \t\n") {
			return nil, fmt.Errorf("haproxy: state directory %q must not hold commas or spaces (the master CLI argument is comma-separated)", opts.StateDir)
		}
		d.settings.AdminSocket, d.settings.StateFile = admin, filepath.Join(opts.StateDir, "servers.state")
		d.sup = newSupervisor(opts.Binary, opts.ConfigPath, masterSock, admin, log)
		if opts.Edge.AccessLog == AccessLogStdout {
			d.sup.stdout = opts.Stdout
		}
		d.sup.restarted = d.restarted
		d.run = supervised{d.sup, d.settings.StateFile}
	case Volume:
		if opts.Containers == nil {
			return nil, errors.New("haproxy: mode volume needs the Docker side (Containers)")
		}
		// Docker's default host name is the ID's first 12 characters.
		if p := adminSocketFor(opts.StateDir, strings.Repeat("h", 12)); len(p) >= 104 {
			return nil, fmt.Errorf("haproxy: state directory %s is too long: a container's admin socket there takes %d bytes, over the 103 a unix socket takes", opts.StateDir, len(p))
		}
		if strings.ContainsAny(opts.StateDir, "$\\\"") {
			return nil, fmt.Errorf("haproxy: state directory %q must not hold '$', '\\' or '\"' (the containers' paths are double-quoted in the file)", opts.StateDir)
		}
		d.settings.AdminSocket = adminSocketFor(opts.StateDir, InstanceVar)
		d.settings.StateFile = stateFileFor(opts.StateDir, InstanceVar)
		d.run = &containerRunner{c: opts.Containers, dir: opts.StateDir, log: log}
	default:
		return nil, fmt.Errorf("haproxy: unknown mode %q; want %s or %s", opts.Mode, Supervise, Volume)
	}
	// SNI passthrough's https frontend binds a unix socket beside the
	// admin socket (one per container, like it, in mode volume; the same
	// length, so the checks above cover it).
	d.settings.TLSSocket = tlsSocketFor(opts.StateDir, "")
	if d.opts.Mode == Volume {
		d.settings.TLSSocket = tlsSocketFor(opts.StateDir, InstanceVar)
	}
	return d, nil
}

// tlsSocketFor is the https frontend's unix socket behind the SNI
// frontend: STATE/https.sock, or STATE/https-HOSTNAME.sock for a
// side-loaded container.
func tlsSocketFor(dir, hostname string) string {
	if hostname == "" {
		return filepath.Join(dir, "https.sock")
	}
	return filepath.Join(dir, "https-"+hostname+".sock")
}

// Name returns "haproxy".
func (d *Driver) Name() string { return "haproxy" }

// Render returns the file and the view for t without touching anything:
// interlock render --proxy haproxy.
func (d *Driver) Render(t routing.Table) ([]byte, View, error) {
	v, err := NewView(t, d.settings)
	if err != nil {
		return nil, View{}, fmt.Errorf("haproxy: %w", err)
	}
	conf, err := d.tmpl.Render(v)
	if err != nil {
		return nil, View{}, fmt.Errorf("haproxy: %w", err)
	}
	if d.opts.Mode == Volume {
		// Without it every container would bind the same literal path,
		// and Interlock would reach none of them.
		for _, p := range []string{d.settings.AdminSocket, d.settings.StateFile} {
			if !bytes.Contains(conf, []byte(`"`+p+`"`)) {
				return nil, View{}, fmt.Errorf("haproxy: template %s does not render %q double-quoted; with --haproxy-target containers, write {{path .Global.AdminSocket}} and {{path .Global.StateFile}}", d.tmpl.Source, p)
			}
		}
	}
	return conf, v, nil
}

// Apply puts t live, by the cheapest safe means:
//
//   - nothing, when t equals the live table;
//   - the Runtime API alone, when only backends change (added, removed,
//     moved): added servers are created and enabled, removed ones put in
//     drain and deleted once their connections end (see drain.go). Traffic
//     follows at once; then the file is rendered, validated and put live
//     without a reload, so a later reload or restart keeps them;
//   - otherwise a reload: the candidate is validated with haproxy -c, put
//     live atomically, the servers' state is saved, and the master reloads
//     seamlessly; Apply returns once the new worker serves.
//
// On any failure the previous configuration keeps serving and the error
// says why (HAProxy's own message for a rejected file). t must be
// normalized.
func (d *Driver) Apply(ctx context.Context, t routing.Table) error {
	d.mu.Lock()
	err := d.apply(ctx, t)
	if err == nil {
		d.table = t
	}
	d.mu.Unlock()
	if err == nil && d.opts.ACME != nil {
		// Only now does HAProxy pass the new names' HTTP-01 challenges on.
		d.opts.ACME.Sync(t.ACMENames())
	}
	return err
}

// Refresh implements controller.Refresher: the live table's file is
// rendered again and HAProxy reloaded, so it reads the certificates the
// file names anew (an ACME certificate issued or renewed, a certificate
// file rotated): the certificate bundles are rewritten from their sources
// first. Before the first Apply, or while HAProxy does not run, it does
// nothing: the next Apply reloads anyway.
func (d *Driver) Refresh(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.live == nil || !d.run.running() {
		return nil
	}
	t := d.table
	conf, view, err := d.Render(t)
	if err != nil {
		return d.fail(err)
	}
	if err := d.reload(ctx, conf, view, t.Hash(), tableShape(t)); err != nil {
		return d.fail(err)
	}
	d.succeed(view, conf)
	return nil
}

// apply is Apply, with d.mu held.
func (d *Driver) apply(ctx context.Context, t routing.Table) error {
	d.stats.Applies++
	if d.closed {
		return d.fail(errors.New("haproxy: driver is closed"))
	}
	hash, shape := t.Hash(), tableShape(t)
	running := d.run.running()
	if d.live != nil && running && d.live.fileCurrent && hash == d.live.hash {
		d.stats.Unchanged++
		d.stats.LastError = ""
		return nil
	}
	if d.live != nil && running && shape == d.live.shape {
		err := d.applyRuntime(ctx, t)
		if err == nil {
			return d.afterRuntime(ctx, t, hash)
		}
		d.stats.RuntimeFallbacks++
		d.log.Warn("backend change needs a reload", "reason", err)
	}
	conf, view, err := d.Render(t)
	if err != nil {
		return d.fail(err)
	}
	if d.live == nil && d.opts.Mode == Volume && d.adopt(ctx, conf, view, hash, shape) {
		d.succeed(view, conf)
		return nil
	}
	if err := d.reload(ctx, conf, view, hash, shape); err != nil {
		return d.fail(err)
	}
	d.succeed(view, conf)
	return nil
}

// Cheap reports whether Apply would put t live over the Runtime API alone,
// without a reload (controller.CheapApplier): HAProxy serves, and t
// differs from the live table in its backends only. (Apply may still fall
// back to a reload, for a backend named by a host name.)
func (d *Driver) Cheap(t routing.Table) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live != nil && !d.closed && d.run.running() && tableShape(t) == d.live.shape
}

// afterRuntime renders the file for a table whose backends the Runtime API
// has just put live, and writes it, validated, without a reload; unless
// the view changed beyond its servers (a certificate became readable or
// unreadable meanwhile), which takes a reload after all.
func (d *Driver) afterRuntime(ctx context.Context, t routing.Table, hash string) error {
	d.live.hash, d.live.fileCurrent = hash, false
	conf, view, err := d.Render(t)
	if err != nil {
		// HAProxy serves the new servers; only the file is behind, and the
		// next apply writes it again.
		return d.fail(err)
	}
	if viewShape(view) != d.live.view {
		d.stats.RuntimeFallbacks++
		if err := d.reload(ctx, conf, view, hash, d.live.shape); err != nil {
			return d.fail(err)
		}
		d.succeed(view, conf)
		return nil
	}
	if err := d.putFile(ctx, conf, view); err != nil {
		return d.fail(err)
	}
	d.live.fileCurrent = true
	d.stats.RuntimeApplies++
	d.succeed(view, conf)
	return nil
}

func (d *Driver) fail(err error) error {
	d.stats.Failures++
	d.stats.LastError = err.Error()
	return err
}

func (d *Driver) succeed(v View, conf []byte) {
	d.stats.LastError = ""
	d.stats.Bytes = len(conf)
	d.stats.Skipped = v.Skipped
	n := 0
	for _, b := range v.Backends {
		n += len(b.Servers)
	}
	d.stats.Servers = n
}

// tableShape hashes t without its backends. The view is a function of the
// table, the settings and which certificates are readable, and backends
// only become servers; so two tables of equal shape render files that
// differ in server lines only, which the Runtime API can change.
func tableShape(t routing.Table) string {
	bare := routing.Table{Hosts: make([]routing.Host, len(t.Hosts))}
	for i, h := range t.Hosts {
		h.Routes = slices.Clone(h.Routes)
		for j := range h.Routes {
			h.Routes[j].Backends = nil
		}
		bare.Hosts[i] = h
	}
	return bare.Hash()
}

// viewShape hashes a view without its servers: what the file says besides
// the server lines. (A custom template whose text outside the server lines
// depends on the servers is therefore only re-rendered into HAProxy at the
// next reload; README.md says so.)
func viewShape(v View) [sha256.Size]byte {
	bare := v
	bare.Backends = make([]Backend, len(v.Backends))
	for i, b := range v.Backends {
		b.Servers = nil
		bare.Backends[i] = b
	}
	data, err := json.Marshal(bare)
	if err != nil {
		panic("haproxy: marshal view: " + err.Error()) // plain data only
	}
	return sha256.Sum256(data)
}

// adopt takes over proxy containers that already serve conf, as after a
// restart of Interlock: the live file is conf byte for byte, its
// certificate bundles are in place, and every running instance has
// exactly the view's servers (admit). Then nothing is reloaded, and the
// containers' connections, health checks and counters carry on. Otherwise
// it reports false and the caller reloads as usual. (A container that
// runs an older file although the file on disk is conf, because a reload
// was lost with the previous Interlock, is caught by the servers' check
// only when its servers differ.)
func (d *Driver) adopt(ctx context.Context, conf []byte, v View, hash, shape string) bool {
	old, err := os.ReadFile(d.opts.ConfigPath)
	if err != nil || !bytes.Equal(old, conf) {
		return false
	}
	if err := d.prepare(v); err != nil {
		return false
	}
	ins, err := d.run.instances(ctx)
	if err != nil || len(ins) == 0 {
		return false
	}
	d.live = &live{hash: hash, shape: shape, view: viewShape(v), fileCurrent: true, backends: liveBackends(v)}
	d.known = map[string]bool{}
	for _, in := range ins {
		if err := d.admit(ctx, in); err != nil {
			d.log.Info("proxy containers not adopted: reloading them", "reason", err)
			d.live = nil
			return false
		}
	}
	d.stats.Adopted++
	d.log.Info("proxy containers adopted without a reload: they serve the file Interlock renders", "instances", len(ins))
	return true
}

// reload validates conf, puts it live and (re)starts or reloads HAProxy.
func (d *Driver) reload(ctx context.Context, conf []byte, v View, hash, shape string) error {
	if err := d.putFile(ctx, conf, v); err != nil {
		return err
	}
	if d.run.running() {
		if err := d.saveState(ctx); err != nil {
			d.log.Warn("server state not saved; health and admin states restart from the file", "error", err)
		}
		if err := d.run.reload(ctx); err != nil {
			d.live = nil // what runs is unknown now: the next apply reloads
			return fmt.Errorf("haproxy: %s is live but HAProxy was not reloaded: %w", d.opts.ConfigPath, err)
		}
		d.stats.Reloads++
	} else {
		// A state file HAProxy can read, holding no server yet: the first
		// start then has nothing to warn about.
		if _, err := os.Stat(d.settings.StateFile); errors.Is(err, os.ErrNotExist) {
			_ = atomicfile.Write(d.settings.StateFile, []byte("1\n"), 0o600)
		}
		if err := d.run.start(ctx); err != nil {
			d.live = nil
			return fmt.Errorf("haproxy: %w", err)
		}
	}
	d.known = map[string]bool{}
	if ins, err := d.run.instances(ctx); err == nil {
		for _, in := range ins {
			d.known[in.id] = true
		}
	}
	// The new worker knows only the file: servers draining in the old one
	// finish there (bounded by hard-stop-after).
	clear(d.draining)
	d.stats.Draining = 0
	d.stats.Starts = d.run.startCount()
	d.stats.LastReload = time.Now()
	d.live = &live{hash: hash, shape: shape, view: viewShape(v), fileCurrent: true, backends: liveBackends(v)}
	return nil
}

// putFile makes the state directory and certificate bundles, writes conf
// as the candidate, validates it with haproxy -c and renames it over the
// live file.
func (d *Driver) putFile(ctx context.Context, conf []byte, v View) error {
	if err := d.prepare(v); err != nil {
		return err
	}
	cand := d.opts.ConfigPath + ".candidate"
	if err := atomicfile.WriteSynced(cand, conf, 0o600); err != nil {
		return fmt.Errorf("haproxy: write candidate: %w", err)
	}
	if err := Validate(ctx, d.opts.Binary, cand); err != nil {
		return err
	}
	if err := atomicfile.Promote(cand, d.opts.ConfigPath); err != nil {
		return fmt.Errorf("haproxy: put %s live: %w", d.opts.ConfigPath, err)
	}
	return nil
}

// prepare makes the state directory, the default certificate (when a host
// uses TLS) and the certificate bundles.
func (d *Driver) prepare(v View) error {
	for _, dir := range []string{d.opts.StateDir, filepath.Dir(d.opts.ConfigPath)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("haproxy: state directory: %w", err)
		}
	}
	if v.TLS.Enabled {
		if err := ensureDefaultCert(d.settings.DefaultCert); err != nil {
			return err
		}
		if err := writeBundles(v.TLS.Certs); err != nil {
			return err
		}
	}
	return nil
}

// saveState dumps each instance's servers' state for its next worker to
// load.
func (d *Driver) saveState(ctx context.Context) error {
	ins, err := d.run.instances(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range ins {
		st, err := in.api.serversState(ctx)
		if err == nil {
			err = atomicfile.Write(in.state, []byte(st), 0o600)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", in.name, err))
		}
	}
	return errors.Join(errs...)
}

func liveBackends(v View) map[string]liveBackend {
	m := make(map[string]liveBackend, len(v.Backends))
	for _, b := range v.Backends {
		lb := liveBackend{opts: b.ServerOptions, check: b.Check != nil, sticky: b.Cookie != nil, servers: make(map[string]Server, len(b.Servers))}
		for _, s := range b.Servers {
			lb.servers[s.Name] = s
		}
		m[b.Name] = lb
	}
	return m
}

// restarted is told by the supervisor that it restarted HAProxy on its
// own: the new process serves the file, which lists the table's servers
// (unless writing it failed after a Runtime API change); nothing drains
// any more.
func (d *Driver) restarted() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.live != nil && !d.live.fileCurrent {
		d.live = nil // the file is behind what ran: the next apply reloads
	}
	clear(d.draining)
	d.stats.Draining = 0
	d.stats.Starts = d.run.startCount()
}

// Stats returns the driver's counters.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Skipped = slices.Clone(s.Skipped)
	s.Starts = d.run.startCount()
	return s
}

// Proc returns HAProxy's own view of its processes (master CLI "show
// proc"): its reload count, and the current and old workers.
func (d *Driver) Proc(ctx context.Context) (Proc, error) {
	if d.sup == nil {
		return Proc{}, fmt.Errorf("haproxy: mode %s has no master CLI of Interlock's", d.opts.Mode)
	}
	return d.sup.master.showProc(ctx)
}

// Close stops the drain reaper and HAProxy (gracefully: the worker
// finishes its connections, up to 10s, or until ctx ends).
func (d *Driver) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	stop, done := d.reaperStop, d.reaperDone
	d.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	return d.run.close(ctx)
}
