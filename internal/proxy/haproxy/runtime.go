package haproxy

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// socket is one HAProxy CLI socket: a worker's Runtime API (the stats
// socket, level admin) or the master CLI. Each command is one connection
// in non-interactive mode: write the line, half-close, read to EOF.
type socket struct {
	path string
}

// cliTimeout bounds one command when the context has no deadline.
const cliTimeout = 5 * time.Second

// do sends one command line and returns HAProxy's answer.
func (s socket) do(ctx context.Context, line string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(cliTimeout)
	}
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", fmt.Errorf("%s: %w", firstWords(line), err)
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", firstWords(line), err)
	}
	return string(out), nil
}

// command joins a verb and its arguments into one CLI line, refusing any
// argument that the CLI would split or treat specially (spaces, ';' which
// chains commands, '\', '#', quotes, control bytes), so a value can never
// become a second command.
func command(verb string, args ...string) (string, error) {
	parts := append([]string{verb}, args...)
	for _, a := range args {
		if a == "" {
			return "", fmt.Errorf("runtime api: %s: empty argument", verb)
		}
		for i := 0; i < len(a); i++ {
			if !isWordByte(a[i]) {
				return "", fmt.Errorf("runtime api: %s: argument %q holds %q", verb, a, a[i])
			}
		}
	}
	return strings.Join(parts, " "), nil
}

func firstWords(line string) string {
	f := strings.Fields(line)
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

// runtimeAPI is a worker's Runtime API on the admin socket.
type runtimeAPI struct{ sock socket }

// exec runs a command that answers nothing on success (enable, disable,
// set server): any output is HAProxy's error.
func (r runtimeAPI) exec(ctx context.Context, verb string, args ...string) error {
	return r.expect(ctx, "", verb, args...)
}

// expect runs a command whose success answer is want ("" for none).
func (r runtimeAPI) expect(ctx context.Context, want, verb string, args ...string) error {
	line, err := command(verb, args...)
	if err != nil {
		return err
	}
	out, err := r.sock.do(ctx, line)
	if err != nil {
		return fmt.Errorf("runtime api: %w", err)
	}
	if strings.TrimSpace(out) != want {
		return &RuntimeError{Command: line, Answer: strings.TrimSpace(out)}
	}
	return nil
}

// RuntimeError is a Runtime API command HAProxy refused.
type RuntimeError struct {
	Command, Answer string
}

func (e *RuntimeError) Error() string {
	return fmt.Sprintf("runtime api: %q: haproxy answered %q", e.Command, e.Answer)
}

// addServer creates a server (in maintenance, as HAProxy makes them), then
// turns its health check on and puts it in service.
func (r runtimeAPI) addServer(ctx context.Context, backend string, s Server, opts []string, check bool) (ops int, err error) {
	id := backend + "/" + s.Name
	if err := r.expect(ctx, "New server registered.", "add server", append([]string{id, s.Address}, opts...)...); err != nil {
		return 0, err
	}
	ops = 1
	if check {
		if err := r.exec(ctx, "enable health", id); err != nil {
			return ops, err
		}
		ops++
	}
	if err := r.exec(ctx, "enable server", id); err != nil {
		return ops, err
	}
	return ops + 1, nil
}

// maintServer stops all new traffic to a server, requests its sticky
// cookie pins included (drain still takes those); its connections go on.
func (r runtimeAPI) maintServer(ctx context.Context, backend, server string) error {
	return r.exec(ctx, "set server", backend+"/"+server, "state", "maint")
}

// drainServer stops new traffic to a server; its connections go on.
func (r runtimeAPI) drainServer(ctx context.Context, backend, server string) error {
	return r.exec(ctx, "set server", backend+"/"+server, "state", "drain")
}

// readyServer takes a server back from drain.
func (r runtimeAPI) readyServer(ctx context.Context, backend, server string) error {
	return r.exec(ctx, "set server", backend+"/"+server, "state", "ready")
}

// deleteServer puts a server in maintenance and deletes it. HAProxy
// refuses the deletion while the server still has connections; the
// error then says so and the server stays in maintenance.
func (r runtimeAPI) deleteServer(ctx context.Context, backend, server string) error {
	id := backend + "/" + server
	if err := r.exec(ctx, "disable server", id); err != nil {
		return err
	}
	return r.expect(ctx, "Server deleted.", "del server", id)
}

// shutdownSessions cuts a server's remaining connections.
func (r runtimeAPI) shutdownSessions(ctx context.Context, backend, server string) error {
	return r.exec(ctx, "shutdown sessions server", backend+"/"+server)
}

// pid returns the pid of the worker that answers on the socket.
func (r runtimeAPI) pid(ctx context.Context) (int, error) {
	out, err := r.sock.do(ctx, "show info")
	if err != nil {
		return 0, fmt.Errorf("runtime api: %w", err)
	}
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("runtime api: show info: no Pid in %q", truncate(out, 200))
}

// serversState is "show servers state", the server-state-file's content.
func (r runtimeAPI) serversState(ctx context.Context) (string, error) {
	out, err := r.sock.do(ctx, "show servers state")
	if err != nil {
		return "", fmt.Errorf("runtime api: %w", err)
	}
	if !strings.HasPrefix(out, "1\n") { // the format version line
		return "", fmt.Errorf("runtime api: show servers state: unexpected answer %q", truncate(out, 200))
	}
	return out, nil
}

// servers returns the server names of each backend, from "show servers
// state" (version 1: be_id be_name srv_id srv_name ...).
func (r runtimeAPI) servers(ctx context.Context) (map[string]map[string]bool, error) {
	out, err := r.serversState(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]map[string]bool{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if m[f[1]] == nil {
			m[f[1]] = map[string]bool{}
		}
		m[f[1]][f[3]] = true
	}
	return m, nil
}

// serverStat is a server's row of "show stat".
type serverStat struct {
	Backend, Server string
	// Queued and Sessions are qcur and scur: requests waiting for the
	// server and connections on it now.
	Queued, Sessions int
	// Status is HAProxy's status ("UP", "DOWN", "DRAIN", "MAINT", "no check").
	Status string
}

// stats returns the rows of "show stat" of backend's servers, or of every
// server when backend is "".
func (r runtimeAPI) stats(ctx context.Context, backend string) ([]serverStat, error) {
	px := "-1"
	if backend != "" {
		px = backend
	}
	line, err := command("show stat", px, "4", "-1")
	if err != nil {
		return nil, err
	}
	out, err := r.sock.do(ctx, line)
	if err != nil {
		return nil, fmt.Errorf("runtime api: %w", err)
	}
	return parseStat(out)
}

// parseStat reads "show stat" CSV: a "# pxname,svname,..." header, one row
// per object.
func parseStat(out string) ([]serverStat, error) {
	out = strings.TrimPrefix(out, "# ")
	rd := csv.NewReader(strings.NewReader(out))
	rd.FieldsPerRecord = -1
	rows, err := rd.ReadAll()
	if err != nil || len(rows) == 0 {
		return nil, fmt.Errorf("runtime api: show stat: unreadable answer %q", truncate(out, 200))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, k := range []string{"pxname", "svname", "qcur", "scur", "status"} {
		if _, ok := col[k]; !ok {
			return nil, fmt.Errorf("runtime api: show stat: no %s column", k)
		}
	}
	var stats []serverStat
	for _, row := range rows[1:] {
		if len(row) < len(rows[0]) {
			continue
		}
		sv := row[col["svname"]]
		if sv == "BACKEND" || sv == "FRONTEND" {
			continue
		}
		q, _ := strconv.Atoi(row[col["qcur"]])
		sc, _ := strconv.Atoi(row[col["scur"]])
		stats = append(stats, serverStat{Backend: row[col["pxname"]], Server: sv, Queued: q, Sessions: sc, Status: row[col["status"]]})
	}
	return stats, nil
}

// master is the master CLI (-S), in master-worker mode.
type master struct{ sock socket }

// Proc is the master CLI's "show proc": the master and its workers.
type Proc struct {
	// MasterPID is the master's pid; Reloads counts the reloads it has
	// done since it started, Failed those whose new worker did not start.
	MasterPID, Reloads, Failed int
	// Workers are the current workers' pids (one, unless nbproc is set).
	Workers []int
	// OldWorkers are workers of earlier configurations still finishing
	// their connections.
	OldWorkers []int
}

// showProc reads the master's process list.
func (m master) showProc(ctx context.Context) (Proc, error) {
	out, err := m.sock.do(ctx, "show proc")
	if err != nil {
		return Proc{}, fmt.Errorf("master cli: %w", err)
	}
	return parseProc(out)
}

// parseProc reads "show proc":
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	1162            master          5 [failed: 0]   0d00h02m07s     2.6.12
//	# workers
//	1271            worker          1               0d00h00m00s     2.6.12
//	# old workers
//	1233            worker          3               0d00h00m43s     2.6.12
//	# programs
func parseProc(out string) (Proc, error) {
	var p Proc
	section := ""
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "#<"):
			continue
		case strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		switch {
		case f[1] == "master":
			p.MasterPID = pid
			p.Reloads, _ = strconv.Atoi(f[2])
			if len(f) > 4 && f[3] == "[failed:" {
				p.Failed, _ = strconv.Atoi(strings.TrimSuffix(f[4], "]"))
			}
		case section == "workers":
			p.Workers = append(p.Workers, pid)
		case section == "old workers":
			p.OldWorkers = append(p.OldWorkers, pid)
		}
	}
	if p.MasterPID == 0 {
		return Proc{}, fmt.Errorf("master cli: show proc: no master in %q", truncate(out, 300))
	}
	return p, nil
}

// reload asks the master to reload: it re-executes itself on the file,
// starts a new worker that takes the listening sockets from the old one
// (-x over a socket pair), and the old worker finishes its connections.
// The master closes the connection; the answer carries nothing useful.
func (m master) reload(ctx context.Context) error {
	_, err := m.sock.do(ctx, "reload")
	if err != nil && !errors.Is(err, io.EOF) && !isConnReset(err) {
		return fmt.Errorf("master cli: reload: %w", err)
	}
	return nil
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
