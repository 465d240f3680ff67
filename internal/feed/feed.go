// Package feed carries the routing table from controllers to edges: a
// controller (Server) serves its live table as versioned snapshots over
// mutual TLS, and an edge (Client) follows one controller at a time by
// long-polling, moving to the next on any failure. The table's Hash is its
// version. Equal Docker state gives byte-identical tables, so an edge may
// follow any controller, and controllers need no consensus.
package feed

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// Protocol is the version of the wire format below. A snapshot of another
// version is refused (ErrProtocol), never guessed at.
const Protocol = 1

// Path is where a controller serves the table. Query parameters: after, the
// version the edge holds ("" for none: answer at once), and wait, the
// longest the controller may hold the request when nothing changed (a Go
// duration, capped by the server's MaxWait).
const Path = "/v1/table"

// DefaultMaxBody bounds a snapshot's size as an edge reads it: far above
// any real table (10,000 backends are about 2 MB of JSON).
const DefaultMaxBody = 64 << 20

// Errors a Client reports for a snapshot it refuses; the table in use is
// kept in every case.
var (
	// ErrProtocol: the controller speaks another protocol version.
	ErrProtocol = errors.New("feed protocol version mismatch")
	// ErrCorrupt: the body is not a snapshot, or the table does not match
	// its version (truncated or altered on the way).
	ErrCorrupt = errors.New("corrupt snapshot")
	// ErrTooLarge: the body is over the size limit.
	ErrTooLarge = errors.New("snapshot too large")
)

// Snapshot is the body of a 200 answer: one whole table and its version.
type Snapshot struct {
	// Protocol is the wire format's version (Protocol).
	Protocol int `json:"protocol"`
	// Version is Table.Hash() as the controller computed it.
	Version string        `json:"version"`
	Table   routing.Table `json:"table"`
}

// Encode returns t's snapshot body; t must be normalized (as every table
// discovery builds is).
func Encode(t routing.Table) ([]byte, string, error) {
	v := t.Hash()
	b, err := json.Marshal(Snapshot{Protocol: Protocol, Version: v, Table: t})
	return b, v, err
}

// Decode parses a snapshot body, refuses another protocol version, and
// checks that the table, once normalized, has the version it claims.
func Decode(body []byte) (routing.Table, string, error) {
	var head struct {
		Protocol *int `json:"protocol"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return routing.Table{}, "", fmt.Errorf("%w: not a feed snapshot (truncated?): %v", ErrCorrupt, err)
	}
	if head.Protocol == nil {
		return routing.Table{}, "", fmt.Errorf("%w: no protocol field; not a feed snapshot", ErrCorrupt)
	}
	if *head.Protocol != Protocol {
		return routing.Table{}, "", fmt.Errorf("%w: the controller sends protocol %d, this Interlock reads protocol %d; run the same Interlock version on controllers and edges",
			ErrProtocol, *head.Protocol, Protocol)
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return routing.Table{}, "", fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	s.Table.Normalize()
	if h := s.Table.Hash(); h != s.Version {
		return routing.Table{}, "", fmt.Errorf("%w: the table does not match its version (truncated or altered?): hash %s, version %s", ErrCorrupt, short(h), short(s.Version))
	}
	return s.Table, s.Version, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
