package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-proxy/interlock/internal/testenv"
	"github.com/moby/moby/api/types/swarm"
)

// TestClusterBenchmark measures Interlock on the real Swarm of
// TestClusterManagerLoss (three managers with TLS, two workers; Interlock on
// worker1 watching all three managers; the service's tasks on manager2,
// manager3 and worker2), under a steady GET every 5 ms (open loop,
// keep-alive) through the built-in proxy:
//
//   - scale 2 -> 10: for each new task, from the time the swarm says it
//     runs (its task status timestamp, as the node running it reported it:
//     the nodes share the host's clock) to its first answer through
//     Interlock;
//   - a rolling update of the 10 tasks (start-first, parallelism 1):
//     failed requests and duration;
//   - the loss of the manager Interlock is connected to (the Raft leader),
//     as TestClusterManagerLoss: time to reconnect, and to route a change
//     made after the loss.
//
// RUN_BENCH=1 only; it prints figures and asserts no timings.
func TestClusterBenchmark(t *testing.T) {
	e := needBench(t)
	ctx := context.Background()
	mc := startManagerCluster(t, e, 2)
	c := mc.c
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

	// Scale 2 -> 10 under load.
	l := startSteadyLoad(mc.il.Proxy, mc.host, 5*time.Millisecond, 15*time.Second)
	time.Sleep(time.Second)
	const to = 10
	newSlots := map[int]bool{}
	for s := 3; s <= to; s++ {
		newSlots[s] = true
	}
	began := time.Now()
	if err := c.Scale(ctx, mc.svc, to); err != nil {
		t.Fatal(err)
	}
	runningAt := map[int]time.Time{} // slot -> when its new task ran
	onNode := map[int]string{}
	var allServed time.Duration
	var served map[int]time.Duration
	testenv.WaitFor(t, 90*time.Second, "the 8 new tasks running and answering through Interlock", func() error {
		ts, err := c.Tasks(ctx, mc.svc)
		if err != nil {
			return err
		}
		for _, tk := range ts {
			if newSlots[tk.Slot] && tk.Running() {
				runningAt[tk.Slot], onNode[tk.Slot] = tk.Since, tk.Node.String()
			}
		}
		served = l.firstAnswers(began, "", newSlots)
		if len(runningAt) < len(newSlots) || len(served) < len(newSlots) {
			return fmt.Errorf("%d of %d new tasks running, %d answered", len(runningAt), len(newSlots), len(served))
		}
		for _, d := range served {
			allServed = max(allServed, d)
		}
		return nil
	})
	time.Sleep(time.Second)
	scaleRes := l.stop()
	var lags []time.Duration
	var perTask []string
	var allRunning time.Duration // by the tasks' timestamps
	for _, at := range runningAt {
		allRunning = max(allRunning, at.Sub(began))
	}
	for _, slot := range slices.Sorted(maps.Keys(newSlots)) {
		lag := began.Add(served[slot]).Sub(runningAt[slot])
		lags = append(lags, lag)
		perTask = append(perTask, fmt.Sprintf("%s.%d %v", onNode[slot], slot, ms(lag)))
	}
	slices.Sort(lags)
	t.Logf("scale 2 -> %d across %s under %d GETs (one every 5ms): %d failed; task running -> first answer through interlock: p50 %v, max %v (min %v); all running %v and all served %v after the scale call",
		to, nodeSpread(onNode), scaleRes.total, len(scaleRes.failures), ms(percentile(lags, 0.5)), ms(lags[len(lags)-1]), ms(lags[0]), ms(allRunning), ms(allServed))
	t.Logf("per task: %s", strings.Join(perTask, ", "))
	logFailures(t, scaleRes, began)
	scale := fmt.Sprintf("scale 2 -> %d", to)
	recordDuration(t, "cluster", scale+": task running -> first answer, p50", "builtin", percentile(lags, 0.5), "ms")
	recordDuration(t, "cluster", scale+": task running -> first answer, max", "builtin", lags[len(lags)-1], "ms")
	recordBench(t, "cluster", scale+": failed GETs", "builtin", float64(len(scaleRes.failures)), "requests")

	// A rolling update of the ten, start-first, one at a time: the new
	// tasks answer as NODE.SLOT.v2.
	l = startSteadyLoad(mc.il.Proxy, mc.host, 5*time.Millisecond, 15*time.Second)
	time.Sleep(time.Second)
	began = time.Now()
	err := c.UpdateService(ctx, mc.svc, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Env = replaceEnv(s.TaskTemplate.ContainerSpec.Env, "NAME", "{{.Node.Hostname}}.{{.Task.Slot}}.v2")
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStartFirst}
	})
	if err != nil {
		t.Fatal(err)
	}
	var completed time.Duration
	testenv.WaitFor(t, 3*time.Minute, "the rolling update completed", func() error {
		st, err := c.UpdateState(ctx, mc.svc)
		if err != nil {
			return err
		}
		if st != swarm.UpdateStateCompleted {
			return fmt.Errorf("update state %q", st)
		}
		completed = time.Since(began)
		return nil
	})
	// Until only new tasks answer.
	var onlyNew time.Duration
	testenv.WaitFor(t, 30*time.Second, "only the new tasks answer", func() error {
		lastOld, v2, _ := l.versions(began)
		if lastOld > 0 && time.Since(began.Add(lastOld)) < time.Second || len(v2) < to {
			return fmt.Errorf("last answer of an old task %v after the update began; %d new tasks answered", lastOld, len(v2))
		}
		onlyNew = lastOld
		return nil
	})
	time.Sleep(time.Second)
	rollRes := l.stop()
	_, v2, lastNew := rollRes.versions(began)
	t.Logf("rolling update of %d tasks across %s (start-first, parallelism 1) under %d GETs (one every 5ms): %d failed, longest %v; after it began: the last new task answered %v, the last old one %v, the swarm called it completed %v (after its 5s monitor); new tasks: %s",
		to, mc.spread(t), rollRes.total, len(rollRes.failures), ms(rollRes.longest), ms(lastNew), ms(onlyNew), ms(completed), strings.Join(v2, " "))
	t.Logf("requests slower than 200ms during the update: %s", rollRes.slow(began, 200*time.Millisecond))
	logFailures(t, rollRes, began)
	roll := fmt.Sprintf("rolling update of %d tasks", to)
	recordBench(t, "cluster", roll+": failed GETs", "builtin", float64(len(rollRes.failures)), "requests")
	recordDuration(t, "cluster", roll+": longest GET", "builtin", rollRes.longest, "ms")
	recordDuration(t, "cluster", roll+": last new task answering", "builtin", lastNew, "s")
	recordDuration(t, "cluster", roll+": the swarm's completed", "builtin", completed, "s")

	// The loss of the manager Interlock is connected to, the leader.
	mc.replicas = to
	r := mc.loseManager(t, "kill")
	r.log(t, "manager loss: ")
	recordBench(t, "cluster", "manager loss: failed GETs", "builtin", float64(len(r.load.failures)), "requests")
	recordDuration(t, "cluster", "manager loss: a new leader seen", "builtin", r.leader, "s")
	recordDuration(t, "cluster", "manager loss: interlock connected to another manager", "builtin", r.reconnect, "s")
	recordDuration(t, "cluster", "manager loss: the scale-up's new tasks answering", "builtin", r.served, "s")
}

// nodeSpread counts tasks by node: "manager2=3 manager3=3 worker2=2".
func nodeSpread(onNode map[int]string) string {
	count := map[string]int{}
	for _, n := range onNode {
		count[n]++
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%s=%d", n, count[n]))
	}
	return strings.Join(parts, " ")
}

// spread counts the service's running tasks by node.
func (mc *managerCluster) spread(t *testing.T) string {
	ts, err := mc.c.Tasks(context.Background(), mc.svc)
	if err != nil {
		t.Fatal(err)
	}
	onNode := map[int]string{}
	for _, tk := range ts {
		if tk.Running() {
			onNode[tk.Slot] = tk.Node.String()
		}
	}
	return nodeSpread(onNode)
}

func logFailures(t *testing.T, res steadyResult, since time.Time) {
	t.Helper()
	for i, f := range res.failures {
		if i == 10 {
			t.Logf("... and %d more failures", len(res.failures)-10)
			break
		}
		t.Logf("failure %d: started %v in, took %v: %s", i+1, f.start.Sub(since).Round(time.Millisecond), f.took.Round(time.Millisecond), f.err)
	}
}

// replaceEnv sets key=value in a container's environment.
func replaceEnv(env []string, key, value string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	return append(out, key+"="+value)
}

// versions returns, for the answers since t, how long after t the last
// answer of an old task (NODE.SLOT) came, the new tasks (NODE.SLOT.v2)
// that answered, and how long after t the last of them first answered.
func (l *steadyLoad) versions(since time.Time) (lastOld time.Duration, v2 []string, lastNew time.Duration) {
	l.mu.Lock()
	reqs := slices.Clone(l.reqs)
	l.mu.Unlock()
	return steadyResult{reqs: reqs}.versions(since)
}

func (r steadyResult) versions(since time.Time) (lastOld time.Duration, v2 []string, lastNew time.Duration) {
	first := map[string]time.Duration{}
	for _, q := range r.reqs {
		if q.err != "" || q.start.Before(since) {
			continue
		}
		at := q.start.Add(q.took).Sub(since)
		if name, ok := strings.CutSuffix(q.backend, ".v2"); ok {
			if f, seen := first[name]; !seen || at < f {
				first[name] = at
			}
		} else if at > lastOld {
			lastOld = at
		}
	}
	for _, at := range first {
		lastNew = max(lastNew, at)
	}
	return lastOld, slices.SortedFunc(maps.Keys(first), func(a, b string) int {
		return strings.Compare(slotOf(a), slotOf(b))
	}), lastNew
}

// slotOf is the slot of NODE.SLOT, zero-padded for sorting.
func slotOf(name string) string {
	_, slot, _ := strings.Cut(name, ".")
	n, _ := strconv.Atoi(slot)
	return fmt.Sprintf("%04d", n)
}
