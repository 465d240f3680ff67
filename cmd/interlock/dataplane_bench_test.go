package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/client"
)

// The data-plane benchmark: the same backend behind the three proxy drivers
// (built-in, with its net/http and its fasthttp engine, nginx, HAProxy),
// each run by its own `interlock run` process,
// driven by wrk over loopback. It prints one table for BENCHMARKS.md.
//
//	DATAPLANE_BENCH_DURATION  length of each measured run (wrk -d), default 4s
//	DATAPLANE_BENCH_ROUNDS    rounds over every scenario and proxy, default 3
//	DATAPLANE_BENCH_CPUPROFILE  a directory: afterwards, CPU profiles of a
//	                          built-in proxy run inside the test process under
//	                          the same load (builtin-<scenario>.pprof)
//
// The backend is the testenv backend container (/fast: "ok\n", keep-alive),
// reached by its IP on a bridge network of the test's own (--network), for
// all three proxies. Interlock only routes to containers, so a goroutine on
// loopback cannot be a backend; and a published port would put Docker's
// userland proxy (docker-proxy, one more Go process copying every byte) in
// the path, with its own cost and noise. Over the bridge the path is the
// kernel's (a veth pair), with no process but the backend's.
//
// wrk has no --resolve: the HTTPS runs name the host in the URL, so wrk
// sends it as SNI and the proxy serves the host's own certificate (as a
// browser would see it), and a wrk script replaces wrk.resolve so the name
// is never looked up and wrk connects to 127.0.0.1.
//
// wrk with Connection: close resumes each connection slot's TLS session
// (all three proxies accept TLS 1.3 resumption: the test checks and logs
// it), so that scenario is a new TCP connection and a resumed handshake per
// request; full handshakes are measured by a Go client (fullHandshakes).

const (
	defaultDataPlaneDuration = 4 * time.Second
	defaultDataPlaneRounds   = 3
	dataPlaneConns           = 32
	dataPlaneThreads         = 2
)

// wrkResolveScript makes wrk connect to 127.0.0.1 whatever the URL's host.
const wrkResolveScript = `-- interlock data-plane benchmark: the URL's host is kept for SNI and
-- the Host header, never looked up; every connection goes to 127.0.0.1.
wrk.resolve = function(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
`

// dpProxy is one Interlock process driving one proxy.
type dpProxy struct {
	name      string
	p         *process
	httpAddr  string // 127.0.0.1:PORT
	httpsAddr string
	// resumes says whether the proxy accepted TLS 1.3 session resumption
	// (what wrk's Connection: close runs measure when it does).
	resumes bool
}

// dpScenario is one kind of load.
type dpScenario struct {
	key, title string
	short      string // the title in the bench summary
	// run drives p for d and returns what it measured.
	run func(t *testing.T, p *dpProxy, d time.Duration) (loadResult, error)
}

// loadResult is one run's figures, as wrk prints them.
type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	requests int64
	non2xx   int64
	errors   int64         // socket errors: connect, read, write
	timeouts int64         // requests without an answer within wrk's 2s (a loaded machine)
	errText  string        // wrk's socket error line, or the first client error
	cpu      time.Duration // the proxy's: Interlock and its nginx or HAProxy
	client   time.Duration // wrk's, or the Go client's (this process)
	// others is the CPU time the rest of the machine used during the run
	// (all of it minus proxy, backend and client), in cores.
	others float64
}

// TestDataPlaneBenchmark measures requests/s and latency of the three
// proxies for plain HTTP keep-alive, HTTPS keep-alive and one HTTPS
// connection per request, in rounds that alternate the proxies, and
// prints the median of the rounds and its ratio to nginx.
func TestDataPlaneBenchmark(t *testing.T) {
	e := needBench(t)
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is missing (Debian package wrk; make bench installs it)")
	}
	testenv.NginxBinary(t)
	testenv.HAProxyBinary(t)
	dur := envDuration(t, "DATAPLANE_BENCH_DURATION", defaultDataPlaneDuration)
	rounds := envInt(t, "DATAPLANE_BENCH_ROUNDS", defaultDataPlaneRounds)

	network := e.Network(t)
	host := hostFor(t, "dataplane")
	certDir := t.TempDir()
	roots := writeHostCert(t, certDir, "dataplane", host)
	script := filepath.Join(t.TempDir(), "resolve.lua")
	if err := os.WriteFile(script, []byte(wrkResolveScript), 0o644); err != nil {
		t.Fatal(err)
	}
	backend := e.Run(t, testenv.ContainerSpec{Name: "dataplane", Network: network, ExposePorts: []uint16{8000},
		Env: map[string]string{"NAME": "dataplane"},
		Labels: labelsFor(host, "interlock.ssl", "true",
			"interlock.ssl_cert", "dataplane/cert.pem", "interlock.ssl_cert_key", "dataplane/key.pem")})
	ins, err := e.Client.ContainerInspect(context.Background(), backend.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	backendPID := ins.Container.State.Pid

	// The same routing settings for all three; the last flag wins, so
	// these override what the nginx and HAProxy helpers chose.
	common := []string{"--network", network, "--cert-dir", certDir}
	var proxies []*dpProxy
	{
		https := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		// The net/http engine for everything.
		p := startProcess(t, append([]string{"--https-addr", https, "--builtin-engine", "nethttp"}, common...)...)
		proxies = append(proxies, &dpProxy{name: "builtin", p: p, httpsAddr: https})
	}
	{
		// The fasthttp engine for plain HTTP (HTTPS stays net/http), the default.
		https := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		p := startProcess(t, append([]string{"--https-addr", https, "--builtin-engine", "fasthttp"}, common...)...)
		proxies = append(proxies, &dpProxy{name: "builtin-fasthttp", p: p, httpsAddr: https})
	}
	{
		n := newNginxRun(t)
		p := startProcess(t, n.args(common...)...)
		proxies = append(proxies, &dpProxy{name: "nginx", p: p, httpsAddr: n.httpsAddr})
	}
	{
		h := newHAProxyRun(t, e)
		h.network = network
		p := startProcess(t, h.args(common...)...)
		t.Cleanup(httpClient.CloseIdleConnections)
		proxies = append(proxies, &dpProxy{name: "haproxy", p: p, httpsAddr: h.httpsAddr})
	}
	for _, px := range proxies {
		px.httpAddr = strings.TrimPrefix(px.p.proxy, "http://")
		awaitDataPlane(t, px, host, roots)
		px.resumes = tlsResumes(t, px.httpsAddr, host, roots)
	}

	httpsURL := func(p *dpProxy) string {
		_, port, _ := net.SplitHostPort(p.httpsAddr)
		return "https://" + host + ":" + port + "/fast"
	}
	wrkArgs := func(d time.Duration, extra ...string) []string {
		return append([]string{fmt.Sprintf("-t%d", dataPlaneThreads), fmt.Sprintf("-c%d", dataPlaneConns),
			"-d" + wrkDuration(d), "--latency", "-H", "Host: " + host}, extra...)
	}
	scenarios := []dpScenario{
		{key: "http", title: "HTTP keep-alive", short: "HTTP keep-alive", run: func(t *testing.T, p *dpProxy, d time.Duration) (loadResult, error) {
			return runWrk(t, wrk, wrkArgs(d, "http://"+p.httpAddr+"/fast")...)
		}},
		{key: "https", title: "HTTPS keep-alive", short: "HTTPS keep-alive", run: func(t *testing.T, p *dpProxy, d time.Duration) (loadResult, error) {
			return runWrk(t, wrk, wrkArgs(d, "-s", script, httpsURL(p))...)
		}},
		{key: "https-close", title: "HTTPS, Connection: close (wrk: resumed handshakes)", short: "HTTPS resumed handshakes", run: func(t *testing.T, p *dpProxy, d time.Duration) (loadResult, error) {
			return runWrk(t, wrk, wrkArgs(d, "-H", "Connection: close", "-s", script, httpsURL(p))...)
		}},
		{key: "handshake", title: "HTTPS, full handshake per request (Go client)", short: "HTTPS full handshakes", run: func(t *testing.T, p *dpProxy, d time.Duration) (loadResult, error) {
			return fullHandshakes(p, host, dataPlaneConns, d), nil
		}},
	}

	m0 := machineCPU()
	time.Sleep(3 * time.Second)
	t.Logf("machine: %d CPUs; %s; other work before the runs: %.2f cores", nproc(), uptime(), (machineCPU()-m0).Seconds()/3)
	t.Logf("versions: %s; %s; %s", firstLine(wrk, "-v"), firstLine("nginx", "-v"), firstLine("haproxy", "-v"))
	t.Logf("each run: %v, %d connections, %d wrk threads, %d rounds, proxies alternated", dur, dataPlaneConns, dataPlaneThreads, rounds)
	for _, px := range proxies {
		t.Logf("%s: http %s https %s, TLS 1.3 resumption accepted: %v", px.name, px.httpAddr, px.httpsAddr, px.resumes)
	}

	// Warm-up: connection pools, worker start-up, page cache.
	for _, sc := range scenarios {
		for _, px := range proxies {
			if _, err := sc.run(t, px, time.Second); err != nil {
				t.Fatalf("warm-up %s %s: %v", px.name, sc.key, err)
			}
		}
	}

	results := map[string]map[string][]loadResult{} // scenario -> proxy -> rounds
	for _, sc := range scenarios {
		results[sc.key] = map[string][]loadResult{}
	}
	for r := range rounds {
		for si, sc := range scenarios {
			for k := range proxies {
				px := proxies[(k+r+si)%len(proxies)] // a different proxy goes first each time
				began, machine0, self0 := time.Now(), machineCPU(), selfCPU()
				cpu0, backend0 := treeCPU(px.p.cmd.Process.Pid), treeCPU(backendPID)
				res, err := sc.run(t, px, dur)
				if err != nil {
					t.Fatalf("round %d %s %s: %v", r+1, px.name, sc.key, err)
				}
				res.cpu = treeCPU(px.p.cmd.Process.Pid) - cpu0
				res.client += selfCPU() - self0
				others := machineCPU() - machine0 - res.cpu - res.client - (treeCPU(backendPID) - backend0)
				res.others = max(0, others.Seconds()/time.Since(began).Seconds())
				results[sc.key][px.name] = append(results[sc.key][px.name], res)
				t.Logf("round %d %-11s %-8s %9.0f req/s  p50 %8v  p99 %8v  proxy cpu %5.1f us/req  others %.2f cores  %s",
					r+1, sc.key, px.name, res.rps, res.p50, res.p99, cpuPerReq(res), res.others, res.errText)
				// Timeouts are the machine's (wrk gives up after 2s): counted
				// in the table. Failed connections and wrong answers are not.
				if res.non2xx > 0 || res.errors > 0 {
					t.Errorf("round %d %s %s: %d answers not 2xx/3xx, %d socket errors (%s)", r+1, px.name, sc.key, res.non2xx, res.errors, res.errText)
				}
			}
		}
	}
	t.Logf("machine after: %s", uptime())
	t.Logf("data plane, median of %d rounds (%v each, %d connections):\n%s", rounds, dur, dataPlaneConns,
		dataPlaneTable(scenarios, proxies, results))
	recordDataPlane(t, scenarios, proxies, results)

	if dir := os.Getenv("DATAPLANE_BENCH_CPUPROFILE"); dir != "" {
		profileBuiltin(t, dir, common, host, roots, scenarios, dur)
	}
}

// awaitDataPlane waits until px answers 200 from the backend for host over
// HTTP and over HTTPS, the latter with the host's own certificate.
func awaitDataPlane(t *testing.T, px *dpProxy, host string, roots *x509.CertPool) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, px.httpsAddr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host},
	}}
	defer hc.CloseIdleConnections()
	testenv.WaitFor(t, 30*time.Second, px.name+" routes "+host, func() error {
		r, err := getThrough(px.p.proxy, host, "/fast")
		if err != nil {
			return err
		}
		if r.code != http.StatusOK || r.backend != "dataplane" {
			return fmt.Errorf("http: %d from %q: %s", r.code, r.backend, strings.TrimSpace(r.body))
		}
		res, err := hc.Get("https://" + host + "/fast")
		if err != nil {
			return fmt.Errorf("https: %w", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Backend") != "dataplane" {
			return fmt.Errorf("https: %d from %q", res.StatusCode, res.Header.Get("X-Backend"))
		}
		return nil
	})
}

// tlsResumes reports whether the proxy at addr resumes a TLS session: a
// second connection offering the first one's ticket.
func tlsResumes(t *testing.T, addr, host string, roots *x509.CertPool) bool {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: host, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	resumed := false
	for i := range 2 {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 tickets come after the handshake: read an answer.
		if _, err := getOver(conn, host); err != nil {
			t.Fatalf("GET over TLS to %s: %v", addr, err)
		}
		if i == 1 {
			resumed = conn.ConnectionState().DidResume
		}
		conn.Close()
	}
	return resumed
}

// getOver sends GET /fast with Connection: close on conn and reads the
// answer.
func getOver(conn net.Conn, host string) (int, error) {
	if _, err := io.WriteString(conn, "GET /fast HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, err
}

// runWrk runs wrk with args and parses what it printed.
func runWrk(t *testing.T, wrk string, args ...string) (loadResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrk, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	res.client = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	wrkRequests = regexp.MustCompile(`(?m)^\s+(\d+) requests in `)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`(?m)^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads requests/s, the 50th and 99th latency percentiles
// (--latency), the request count, non-2xx answers and socket errors from
// wrk's output.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no Requests/sec line")
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[m[3]]
		d := time.Duration(v * float64(unit)).Round(time.Microsecond)
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, errors.New("no latency distribution (--latency)")
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:4] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
		r.timeouts, _ = strconv.ParseInt(m[4], 10, 64)
		r.errText = strings.TrimSpace(m[0])
	}
	return r, nil
}

// fullHandshakes runs conns clients for d, each doing one request per new
// TLS connection with no session cache: every handshake is a full one
// (ECDHE and the certificate's signature), as for a first visit. wrk
// cannot do this: it resumes the previous session of each connection slot.
func fullHandshakes(p *dpProxy, host string, conns int, d time.Duration) loadResult {
	cfg := &tls.Config{ServerName: host, InsecureSkipVerify: true} // as wrk; awaitDataPlane verified the certificate
	deadline := time.Now().Add(d)
	lat := make([][]time.Duration, conns)
	var (
		mu       sync.Mutex
		failed   int64
		non200   int64
		timeouts int64
		firstErr string
		wg       sync.WaitGroup
	)
	begin := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				start := time.Now()
				code, err := func() (int, error) {
					raw, err := net.DialTimeout("tcp", p.httpsAddr, 5*time.Second)
					if err != nil {
						return 0, err
					}
					conn := tls.Client(raw, cfg)
					defer conn.Close()
					_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
					return getOver(conn, host)
				}()
				var ne net.Error
				switch {
				case errors.As(err, &ne) && ne.Timeout():
					mu.Lock()
					timeouts++
					mu.Unlock()
				case err != nil:
					mu.Lock()
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
				case code != http.StatusOK:
					mu.Lock()
					non200++
					mu.Unlock()
				default:
					lat[i] = append(lat[i], time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := loadResult{requests: int64(len(all)), non2xx: non200, errors: failed, timeouts: timeouts, errText: firstErr}
	r.rps = float64(len(all)) / elapsed.Seconds()
	r.p50, r.p99 = percentile(all, .5).Round(time.Microsecond), percentile(all, .99).Round(time.Microsecond)
	return r
}

// dataPlaneFigures are the figures of one scenario and proxy over the
// rounds: the medians, and the medians of each round's ratio to nginx.
type dataPlaneFigures struct {
	rps, p50, p99, rpsRatio, p99Ratio, cpu, others float64
	byRound                                        []string
	timeouts                                       int64
}

func dataPlaneFiguresOf(rs, ref []loadResult) dataPlaneFigures {
	var f dataPlaneFigures
	var rpsRatio, p99Ratio []float64
	for i, r := range rs {
		f.timeouts += r.timeouts
		f.byRound = append(f.byRound, fmt.Sprintf("%.0f", r.rps))
		if i < len(ref) && ref[i].rps > 0 && ref[i].p99 > 0 {
			// Within a round the proxies ran back to back: the
			// ratio of a round is less exposed to the machine's
			// drifting load than the ratio of the medians.
			rpsRatio = append(rpsRatio, r.rps/ref[i].rps)
			p99Ratio = append(p99Ratio, float64(r.p99)/float64(ref[i].p99))
		}
	}
	f.rps = median(rs, func(r loadResult) float64 { return r.rps })
	f.p50 = median(rs, func(r loadResult) float64 { return float64(r.p50) })
	f.p99 = median(rs, func(r loadResult) float64 { return float64(r.p99) })
	f.rpsRatio, f.p99Ratio = medianOf(rpsRatio), medianOf(p99Ratio)
	f.cpu = median(rs, cpuPerReq)
	f.others = median(rs, func(r loadResult) float64 { return r.others })
	return f
}

// recordDataPlane records the figures of dataPlaneTable for the bench
// summary: per scenario, each proxy's median req/s, p50, p99, their
// ratios to nginx and CPU per request (and timeouts, when there were any),
// and per proxy the other work on the machine during its runs.
func recordDataPlane(t *testing.T, scenarios []dpScenario, proxies []*dpProxy, results map[string]map[string][]loadResult) {
	t.Helper()
	others := map[string][]float64{}
	for _, sc := range scenarios {
		figs := map[string]dataPlaneFigures{}
		var timeouts int64
		for _, px := range proxies {
			f := dataPlaneFiguresOf(results[sc.key][px.name], results[sc.key]["nginx"])
			figs[px.name] = f
			timeouts += f.timeouts
			for _, r := range results[sc.key][px.name] {
				others[px.name] = append(others[px.name], r.others)
			}
		}
		for _, px := range proxies {
			f := figs[px.name]
			recordBench(t, "dataplane", sc.short+": req/s", px.name, f.rps, "req/s")
			recordRatio(t, "dataplane", sc.short+": req/s ratio", px.name, f.rpsRatio, "nginx")
			recordBench(t, "dataplane", sc.short+": p50", px.name, f.p50/float64(time.Millisecond), "ms")
			recordBench(t, "dataplane", sc.short+": p99", px.name, f.p99/float64(time.Millisecond), "ms")
			recordRatio(t, "dataplane", sc.short+": p99 ratio", px.name, f.p99Ratio, "nginx")
			recordBench(t, "dataplane", sc.short+": proxy CPU per request", px.name, f.cpu, "µs")
			if timeouts > 0 {
				recordBench(t, "dataplane", sc.short+": timeouts (wrk's 2 s)", px.name, float64(f.timeouts), "requests")
			}
		}
	}
	for _, px := range proxies {
		recordBench(t, "dataplane", "other work on the machine during the runs, median", px.name, medianOf(others[px.name]), "cores")
	}
}

// dataPlaneTable renders the medians as a Markdown table.
func dataPlaneTable(scenarios []dpScenario, proxies []*dpProxy, results map[string]map[string][]loadResult) string {
	var b strings.Builder
	b.WriteString("| scenario | proxy | req/s | req/s by round | p50 | p99 | req/s x nginx | p99 x nginx | proxy CPU µs/req | timeouts | others, cores |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scenarios {
		ref := results[sc.key]["nginx"]
		for _, px := range proxies {
			f := dataPlaneFiguresOf(results[sc.key][px.name], ref)
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %v | %v | %.2f | %.2f | %.1f | %d | %.2f |\n", sc.title, px.name,
				f.rps, strings.Join(f.byRound, " / "),
				time.Duration(f.p50).Round(time.Microsecond), time.Duration(f.p99).Round(time.Microsecond),
				f.rpsRatio, f.p99Ratio, f.cpu, f.timeouts, f.others)
		}
	}
	return b.String()
}

func cpuPerReq(r loadResult) float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.requests)
}

func median[T any](xs []T, f func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = f(x)
	}
	return medianOf(vs)
}

func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// profileBuiltin runs a built-in proxy inside the test process and takes a
// CPU profile of it under each scenario, written to dir.
func profileBuiltin(t *testing.T, dir string, common []string, host string, roots *x509.CertPool, scenarios []dpScenario, d time.Duration) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in := startInterlock(t, append(common, "--log-level", "warn")...)
	px := &dpProxy{name: "builtin-in-process", p: &process{proxy: in.proxy, api: in.api, cmd: exec.Command("true")},
		httpAddr: strings.TrimPrefix(in.proxy, "http://"), httpsAddr: in.httpsAddr}
	awaitDataPlane(t, px, host, roots)
	for _, sc := range scenarios {
		if sc.key == "handshake" {
			continue // the client runs in this process too: its profile would mix in
		}
		path := filepath.Join(dir, "builtin-"+sc.key+".pprof")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		res, err := sc.run(t, px, d)
		pprof.StopCPUProfile()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("profile %s: %.0f req/s in process; go tool pprof -top %s", sc.key, res.rps, path)
	}
}

// treeCPU is the CPU time (user and system) of pid and all its
// descendants: Interlock and, for nginx and HAProxy, the proxy's master
// and workers.
func treeCPU(root int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	ticks := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		utime, _ := strconv.Atoi(fields[11])
		stime, _ := strconv.Atoi(fields[12])
		parent[pid], ticks[pid] = ppid, utime+stime
	}
	total := 0
	for pid := range ticks {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += ticks[pid]
				break
			}
		}
	}
	return time.Duration(total) * 10 * time.Millisecond // USER_HZ 100
}

// machineCPU is the CPU time the whole machine spent in user and system
// mode (/proc/stat; interrupts and steal left out).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle ...
	total := 0
	for _, v := range f[1:4] {
		n, _ := strconv.Atoi(v)
		total += n
	}
	return time.Duration(total) * 10 * time.Millisecond
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg1() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "load " + loadAvg1()
	}
	return strings.TrimSpace(string(out))
}

func nproc() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// firstLine is the first line a command prints (to either stream).
func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// wrkDuration formats d for wrk -d (whole seconds, at least one).
func wrkDuration(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s"
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		t.Fatalf("%s=%q: want a duration of at least 1s", name, v)
	}
	return d
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	n, err := strconv.Atoi(cmp.Or(os.Getenv(name), strconv.Itoa(def)))
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, os.Getenv(name))
	}
	return n
}
