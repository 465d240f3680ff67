package discovery

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/interlock-proxy/interlock/internal/docker"
)

// mixedSnapshot has a bit of everything whose outcome depends on order:
// shared routes, host and route conflicts, name clashes, a tcp host, an
// invalid container and equal creation times.
func mixedSnapshot() []docker.Container {
	return []docker.Container{
		published(ctr("a", 0, appLabels(map[string]string{LabelAliasDomain: "www.example.com"})), 1001),
		published(ctr("b", 0, appLabels(map[string]string{LabelAliasDomain: "www.example.com", LabelSSL: "true"})), 1002),
		published(ctr("c", 1, appLabels(map[string]string{LabelAliasDomain: "www.example.com", LabelContextRoot: "/api", LabelBalanceAlgorithm: "leastconn"})), 1003),
		published(ctr("d", 1, appLabels(map[string]string{LabelAliasDomain: "www.example.com", LabelContextRoot: "/api/", LabelBalanceAlgorithm: "source"})), 1004),
		published(ctr("e", 2, map[string]string{LabelHostname: "www.example.com"}), 1005),
		published(ctr("f", 2, map[string]string{LabelHostname: "db", LabelProtocol: "tcp"}), 1006),
		published(ctr("g", 3, map[string]string{LabelHostname: "db", LabelContextRoot: "/x"}), 1007),
		published(ctr("h", 3, map[string]string{LabelHostname: "bad", LabelPort: "x", "interlock.sslonly": "true"}), 1008),
		published(ctr("i", 0, appLabels(map[string]string{LabelAliasDomain: "www.example.com"})), 1009),
	}
}

// TestBuildPermutations checks that Build depends on the set of containers
// only, not on their order or the order of their ports.
func TestBuildPermutations(t *testing.T) {
	base := mixedSnapshot()
	wantTable, wantProblems := Build(docker.Snapshot{Containers: base}, Options{})
	t.Logf("table %+v\nproblems:\n%s", wantTable, describe(wantProblems))
	if len(wantTable.Hosts) != 2 || len(wantProblems) < 6 {
		t.Fatalf("fixture no longer exercises conflicts: %d hosts, problems:\n%s", len(wantTable.Hosts), describe(wantProblems))
	}
	wantHash := wantTable.Hash()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		cs := slices.Clone(base)
		rng.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
		if i%2 == 1 {
			slices.Reverse(cs)
		}
		for k := range cs {
			cs[k].Ports = append(slices.Clone(cs[k].Ports), cs[k].Ports[0])
			cs[k].Ports[0].HostIP = "::"
			rng.Shuffle(len(cs[k].Ports), func(i, j int) { cs[k].Ports[i], cs[k].Ports[j] = cs[k].Ports[j], cs[k].Ports[i] })
		}
		got, problems := Build(docker.Snapshot{Containers: cs}, Options{})
		if h := got.Hash(); h != wantHash {
			t.Fatalf("permutation %d: hash %s, want %s\n got: %+v\nwant: %+v", i, h, wantHash, got, wantTable)
		}
		if !reflect.DeepEqual(problems, wantProblems) {
			t.Fatalf("permutation %d: problems differ\n got:\n%s\nwant:\n%s", i, describe(problems), describe(wantProblems))
		}
	}
}

// TestBuildDoesNotModifyInput guards the pure-function contract: the
// snapshot may be shared with other readers.
func TestBuildDoesNotModifyInput(t *testing.T) {
	cs := mixedSnapshot()
	slices.Reverse(cs)
	before := mixedSnapshot() // built apart, so no slice or map is shared
	slices.Reverse(before)
	Build(docker.Snapshot{Containers: cs}, Options{})
	if !reflect.DeepEqual(cs, before) {
		t.Fatal("Build reordered or changed the snapshot's containers")
	}
}
