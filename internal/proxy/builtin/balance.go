package builtin

import (
	"math/rand/v2"
	"slices"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// pick chooses the backend to try next for one request and returns its index
// in rt.backends, or -1 when every backend is ejected or already tried.
// now is a clock reading; client is the client's IP, used by Source only;
// tried lists the indexes this request has already attempted. pick does not
// allocate.
func (rt *route) pick(now int64, client string, tried []int) int {
	if len(rt.backends) == 0 {
		return -1
	}
	switch rt.balance {
	case routing.LeastConn:
		return rt.pickLeastConn(now, tried)
	case routing.Source:
		return rt.pickSource(now, client, tried)
	case routing.Random:
		return rt.pickRandom(now, tried)
	default:
		return rt.pickRoundRobin(now, tried)
	}
}

func (rt *route) usable(i int, now int64, tried []int) bool {
	return rt.backends[i].state.live(now) && !slices.Contains(tried, i)
}

// pickRoundRobin takes the next backend in turn, skipping unusable ones. One
// atomic counter per route; concurrent requests each get their own turn.
func (rt *route) pickRoundRobin(now int64, tried []int) int {
	n := uint64(len(rt.backends))
	start := rt.next.Add(1) - 1
	for k := range n {
		if i := int((start + k) % n); rt.usable(i, now, tried) {
			return i
		}
	}
	return -1
}

// pickLeastConn takes the backend with the fewest requests in flight. The
// scan starts at a rotating offset and only a strictly smaller count
// replaces the candidate, so ties go round robin and load spreads over idle
// backends. The candidate is compared against counts read in this same scan;
// there is no separate tie counter to go stale (Caddy's leastRequests once
// kept one, and picked a backend that was no longer least loaded when the
// counts came in descending order).
func (rt *route) pickLeastConn(now int64, tried []int) int {
	n := uint64(len(rt.backends))
	start := rt.next.Add(1) - 1
	best, bestLoad := -1, int64(0)
	for k := range n {
		i := int((start + k) % n)
		if !rt.usable(i, now, tried) {
			continue
		}
		if load := rt.backends[i].state.inFlight.Load(); best < 0 || load < bestLoad {
			best, bestLoad = i, load
		}
	}
	return best
}

// pickSource hashes the client address with rendezvous (highest random
// weight) hashing: every usable backend gets the score mix(hash(client) ^
// hash(backend)) and the highest score wins. A client keeps its backend
// while that backend stays; removing or ejecting a backend moves only the
// clients it had, each to its own next-highest score, and adding one takes
// a fair share from every other. See Thaler and Ravishankar, "Using
// name-based mappings to increase hit rates" (1998), and Caddy's
// hostByHashing. The hash is deterministic, so several Interlock instances
// send a client to the same backend.
func (rt *route) pickSource(now int64, client string, tried []int) int {
	key := hashString(client)
	best, bestScore := -1, uint64(0)
	for i := range rt.backends {
		if !rt.usable(i, now, tried) {
			continue
		}
		if s := mix64(key ^ rt.backends[i].hash); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// pickRandom takes a uniformly random usable backend.
func (rt *route) pickRandom(now int64, tried []int) int {
	usable := 0
	for i := range rt.backends {
		if rt.usable(i, now, tried) {
			usable++
		}
	}
	if usable == 0 {
		return -1
	}
	k := rand.IntN(usable)
	for i := range rt.backends {
		if rt.usable(i, now, tried) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	// Reached only when a concurrent request ejected a backend between the
	// two scans (now is fixed, so nothing else changes); take the first one
	// still usable.
	for i := range rt.backends {
		if rt.usable(i, now, tried) {
			return i
		}
	}
	return -1
}

// hashString is 64-bit FNV-1a, written out so it does not allocate.
func hashString(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// mix64 is the MurmurHash3 64-bit finalizer: it spreads the bits of
// key^backend so that rendezvous scores are uniform even when inputs differ
// in a few bits only (addresses on one subnet, ports in one range).
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// nextAttempt picks the backend for the next attempt of a request from client:
// the one its sticky cookie pins (pinned, -1 for none) on the first
// attempt while it is usable, else a live one by the route's algorithm;
// when every untried backend is ejected, the one due back first
// (pickSoonestBack); -1 when all were tried.
func (rt *route) nextAttempt(now int64, client string, tried []int, pinned int) int {
	if len(tried) == 0 && pinned >= 0 && rt.usable(pinned, now, tried) {
		return pinned
	}
	if i := rt.pick(now, client, tried); i >= 0 {
		return i
	}
	// Every untried backend is ejected. Ejection is a guess from one
	// failure, and the engine still lists these backends, so try the one
	// due back first rather than fail without asking (a container whose
	// process was not listening yet at its first request would otherwise
	// stay dark for EjectFor).
	return rt.pickSoonestBack(tried)
}

// pickSoonestBack returns the untried backend whose ejection ends first, or
// -1 when every backend has been tried: the fallback when pick finds no
// live backend.
func (rt *route) pickSoonestBack(tried []int) int {
	best, bestUntil := -1, int64(0)
	for i := range rt.backends {
		if slices.Contains(tried, i) {
			continue
		}
		if until := rt.backends[i].state.ejectedUntil.Load(); best < 0 || until < bestUntil {
			best, bestUntil = i, until
		}
	}
	return best
}
