package discovery

import (
	"slices"
	"testing"

	"github.com/interlock-proxy/interlock/internal/docker"
	"github.com/interlock-proxy/interlock/internal/routing"
)

// TestBuildAddress covers port selection and backend addresses in both
// published-port and network mode. Each case also runs with the container's
// port list reversed: the engine's order must not matter.
func TestBuildAddress(t *testing.T) {
	tcp := func(priv uint16, hostIP string, public uint16) docker.Port {
		return docker.Port{Private: priv, Proto: "tcp", HostIP: hostIP, Public: public}
	}
	exposed := func(priv uint16) docker.Port { return docker.Port{Private: priv, Proto: "tcp"} }
	onNet := map[string]string{"bridge": "172.17.0.2", "backend": "10.0.1.5"}
	tests := []struct {
		name     string
		labels   map[string]string // added to appLabels
		ports    []docker.Port
		networks map[string]string // nil keeps the default ("bridge" only)
		opts     Options
		want     string
		problems []wantProblem
	}{
		{name: "published on all addresses", ports: []docker.Port{tcp(80, "0.0.0.0", 32768), tcp(80, "::", 32768)}, want: "127.0.0.1:32768"},
		{name: "published on IPv6 wildcard only", ports: []docker.Port{tcp(80, "::", 32768)}, want: "127.0.0.1:32768"},
		{name: "no host IP", ports: []docker.Port{tcp(80, "", 32768)}, want: "127.0.0.1:32768"},
		{name: "configured backend address", ports: []docker.Port{tcp(80, "0.0.0.0", 32768)}, opts: Options{BackendAddress: "192.168.1.10"}, want: "192.168.1.10:32768"},
		{name: "IPv6 backend address", ports: []docker.Port{tcp(80, "::", 32768)}, opts: Options{BackendAddress: "fd00::1"}, want: "[fd00::1]:32768"},
		{name: "specific host IP", ports: []docker.Port{tcp(80, "10.0.0.5", 8080)}, opts: Options{BackendAddress: "192.168.1.10"}, want: "10.0.0.5:8080"},
		{name: "specific IPv6 host IP", ports: []docker.Port{tcp(80, "::1", 8080)}, want: "[::1]:8080"},
		{name: "IPv4 preferred over IPv6", ports: []docker.Port{tcp(80, "::1", 40000), tcp(80, "127.0.0.2", 40001)}, want: "127.0.0.2:40001"},
		{name: "lowest host port of several publications", ports: []docker.Port{tcp(80, "0.0.0.0", 8081), tcp(80, "0.0.0.0", 8080)}, want: "127.0.0.1:8080"},
		{name: "unparsable host IP skipped", ports: []docker.Port{tcp(80, "bogus", 1), tcp(80, "0.0.0.0", 32768)}, want: "127.0.0.1:32768"},
		{name: "only an unparsable host IP", ports: []docker.Port{tcp(80, "bogus", 1)},
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "container c-a publishes no TCP port, publish one (docker run -p 80)"}}},
		{name: "no ports", ports: nil,
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "publishes no TCP port"}}},
		{name: "exposed but nothing published", ports: []docker.Port{exposed(80)},
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "publishes no TCP port"}}},
		{name: "only UDP published", ports: []docker.Port{{Private: 53, Proto: "udp", HostIP: "0.0.0.0", Public: 5353}},
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "publishes no TCP port"}}},
		{name: "several published", ports: []docker.Port{tcp(443, "0.0.0.0", 2), tcp(80, "0.0.0.0", 1), tcp(80, "::", 1)},
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "publishes several TCP ports (80, 443), set interlock.port"}}},
		{name: "port label picks one", labels: map[string]string{LabelPort: "443"},
			ports: []docker.Port{tcp(443, "0.0.0.0", 2), tcp(80, "0.0.0.0", 1)}, want: "127.0.0.1:2"},
		{name: "port label not published", labels: map[string]string{LabelPort: "443"},
			ports:    []docker.Port{exposed(443), tcp(80, "0.0.0.0", 1)},
			problems: []wantProblem{{label: LabelPort, reason: routing.ReasonNoPort, msg: "port 443 is exposed but not published, publish it (docker run -p 443) or route over a network"}}},
		{name: "port label only UDP", labels: map[string]string{LabelPort: "53"},
			ports:    []docker.Port{{Private: 53, Proto: "udp", HostIP: "0.0.0.0", Public: 5353}},
			problems: []wantProblem{{label: LabelPort, reason: routing.ReasonInvalidLabel, msg: "not a TCP port the container exposes (exposed: none)"}}},
		{name: "network mode", ports: []docker.Port{exposed(80)}, networks: onNet, opts: Options{Network: "backend"}, want: "10.0.1.5:80"},
		{name: "network mode ignores publication", ports: []docker.Port{tcp(80, "0.0.0.0", 32768)}, networks: onNet, opts: Options{Network: "backend"}, want: "10.0.1.5:80"},
		{name: "network label", labels: map[string]string{LabelNetwork: "backend"}, ports: []docker.Port{exposed(8080)}, networks: onNet, want: "10.0.1.5:8080"},
		{name: "network label overrides option", labels: map[string]string{LabelNetwork: "bridge"}, ports: []docker.Port{exposed(80)}, networks: onNet, opts: Options{Network: "backend"}, want: "172.17.0.2:80"},
		{name: "network IPv6 address", ports: []docker.Port{exposed(80)}, networks: map[string]string{"v6": "fd00::5"}, opts: Options{Network: "v6"}, want: "[fd00::5]:80"},
		{name: "network mode port label", labels: map[string]string{LabelPort: "9000"}, ports: []docker.Port{exposed(80), exposed(9000)}, networks: onNet, opts: Options{Network: "backend"}, want: "10.0.1.5:9000"},
		{name: "network mode several exposed", ports: []docker.Port{exposed(9000), exposed(80)}, networks: onNet, opts: Options{Network: "backend"},
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "exposes several TCP ports (80, 9000), set interlock.port"}}},
		{name: "network mode nothing exposed", ports: nil, networks: onNet, opts: Options{Network: "backend"},
			problems: []wantProblem{{reason: routing.ReasonNoPort, msg: "exposes no TCP port"}}},
		{name: "network mode port label not exposed", labels: map[string]string{LabelPort: "81"}, ports: []docker.Port{exposed(80)}, networks: onNet, opts: Options{Network: "backend"},
			problems: []wantProblem{{label: LabelPort, reason: routing.ReasonInvalidLabel, msg: "port 81 is not a TCP port the container exposes (exposed: 80)"}}},
		{name: "not on configured network", ports: []docker.Port{exposed(80)}, networks: map[string]string{"bridge": "172.17.0.2", "a": "10.9.0.2"}, opts: Options{Network: "backend"},
			problems: []wantProblem{{reason: routing.ReasonNoNetwork, msg: `container c-a is not on network "backend" (its networks: "a", "bridge")`}}},
		{name: "not on labelled network", labels: map[string]string{LabelNetwork: "backend"}, ports: []docker.Port{exposed(80)},
			problems: []wantProblem{{label: LabelNetwork, reason: routing.ReasonNoNetwork, msg: `is not on network "backend" (its networks: "bridge")`}}},
		{name: "on no network", ports: []docker.Port{exposed(80)}, networks: map[string]string{}, opts: Options{Network: "backend"},
			problems: []wantProblem{{reason: routing.ReasonNoNetwork, msg: "(its networks: none)"}}},
		{name: "no IP on network", ports: []docker.Port{exposed(80)}, networks: map[string]string{"backend": ""}, opts: Options{Network: "backend"},
			problems: []wantProblem{{reason: routing.ReasonNoNetwork, msg: `no usable IP address on network "backend"`}}},
		{name: "bad network label", labels: map[string]string{LabelNetwork: "a b"},
			problems: []wantProblem{{label: LabelNetwork, reason: routing.ReasonInvalidLabel, msg: "network name"}}},
	}
	for _, tc := range tests {
		for _, order := range []string{"engine order", "reversed"} {
			t.Run(tc.name+"/"+order, func(t *testing.T) {
				c := ctr("a", 0, appLabels(tc.labels))
				c.Ports = slices.Clone(tc.ports)
				if order == "reversed" {
					slices.Reverse(c.Ports)
				}
				if tc.networks != nil {
					c.Networks = tc.networks
				}
				got, problems := Build(docker.Snapshot{Containers: []docker.Container{c}}, tc.opts)
				checkProblems(t, problems, tc.problems)
				var want routing.Table
				if tc.want != "" {
					want.Hosts = []routing.Host{{Name: "app.example.com", Routes: []routing.Route{defaultRoute(backend("a", tc.want))}}}
				}
				checkTable(t, got, want)
			})
		}
	}
}
