// Package feed carries the routing table from controllers to edges: a
// controller (Server) serves its live table as versioned snapshots over
// mutual TLS, and an edge (Client) follows one controller at a time by
// long-polling, moving to the next on any failure. The table's Hash is its
// version. Equal Docker state gives byte-identical tables, so an edge may
// follow any controller, and controllers need no consensus.
package feed

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/interlock-proxy/interlock/internal/routing"
)

// Protocol is the version of the wire format below. A snapshot of another
// version is refused (ErrProtocol), never guessed at. 2 added the ACME
// certificates.
const Protocol = 2

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

// Snapshot is the body of a 200 answer: one whole table, the ACME
// certificates of its hosts when the controller obtains them, and the
// version of both.
type Snapshot struct {
	// Protocol is the wire format's version (Protocol).
	Protocol int `json:"protocol"`
	// Version is Table.Hash() as the controller computed it, followed by
	// "+" and Certificates.Hash() when there are certificates: an edge
	// holds the version of what it applied, and a new certificate is a
	// new version as a new table is.
	Version string        `json:"version"`
	Table   routing.Table `json:"table"`
	// Certificates is nil when the controller obtains none (ACME off).
	Certificates *Certificates `json:"certificates,omitempty"`
}

// Certificates are the ACME certificates a controller obtained for the
// hosts of its table, with their private keys, for the edges to serve:
// edges never talk to the CA and never hold its account keys.
type Certificates struct {
	// Certificates are sorted by Name, one per name.
	Certificates []Certificate `json:"certificates,omitempty"`
	// Failures are the names whose issuance or renewal failed, with the
	// controller's error, until they succeed.
	Failures map[string]string `json:"failures,omitempty"`
}

// Certificate is one name's certificate chain and private key, PEM.
type Certificate struct {
	Name string `json:"name"`
	PEM  []byte `json:"pem"`
}

// Hash is the certificates' version: equal sets hash alike on every
// controller.
func (c *Certificates) Hash() string {
	b, _ := json.Marshal(c) // sorted by the controller; map keys are sorted by encoding/json
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// version is the snapshot version of a table of hash tableHash and c.
func version(tableHash string, c *Certificates) string {
	if c == nil {
		return tableHash
	}
	return tableHash + "+" + c.Hash()
}

// TableVersion is the table's part of a snapshot version v.
func TableVersion(v string) string {
	t, _, _ := strings.Cut(v, "+")
	return t
}

// Encode returns the snapshot body of t and c (nil: no certificates); t
// must be normalized (as every table discovery builds is), and c's
// certificates sorted by name.
func Encode(t routing.Table, c *Certificates) ([]byte, string, error) {
	v := version(t.Hash(), c)
	b, err := json.Marshal(Snapshot{Protocol: Protocol, Version: v, Table: t, Certificates: c})
	return b, v, err
}

// Decode parses a snapshot body, refuses another protocol version, and
// checks that the table, once normalized, and the certificates have the
// version the snapshot claims.
func Decode(body []byte) (Snapshot, error) {
	var head struct {
		Protocol *int `json:"protocol"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return Snapshot{}, fmt.Errorf("%w: not a feed snapshot (truncated?): %v", ErrCorrupt, err)
	}
	if head.Protocol == nil {
		return Snapshot{}, fmt.Errorf("%w: no protocol field; not a feed snapshot", ErrCorrupt)
	}
	if *head.Protocol != Protocol {
		return Snapshot{}, fmt.Errorf("%w: the controller sends protocol %d, this Interlock reads protocol %d; run the same Interlock version on controllers and edges",
			ErrProtocol, *head.Protocol, Protocol)
	}
	var s Snapshot
	if err := json.Unmarshal(body, &s); err != nil {
		return Snapshot{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	s.Table.Normalize()
	if v := version(s.Table.Hash(), s.Certificates); v != s.Version {
		return Snapshot{}, fmt.Errorf("%w: the snapshot does not match its version (truncated or altered?): hash %s, version %s", ErrCorrupt, short(v), short(s.Version))
	}
	return s, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
