package lsp

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Config configures a node's location service. Zero values take the defaults
// given per field; negative ones are refused (ErrConfig).
type Config struct {
	// Overlay the service places and finds replicas in. Required.
	Overlay *overlay.Overlay
	// Credential signs this node's writes; nil for an overlay-only node.
	Credential *Credential
	// TrustAnchors verify every write's certificate chain. Required.
	TrustAnchors *x509.CertPool
	// Replicas (R) per AOR. Default 3.
	Replicas int
	// WriteQuorum (W) acknowledgements a write waits for. Default R/2+1.
	// Reads ask R−W+1 replicas' answers, so reads see every acknowledged write.
	WriteQuorum int
	// MaxClockSkew: how far in the future a timestamp may lie. Default 30s.
	MaxClockSkew time.Duration
	// MaxTTL bounds expiry beyond a binding's timestamp. Default 7 days.
	MaxTTL time.Duration
	// MaxMessage bounds one protocol message. Default 1 MiB.
	MaxMessage int
	// RequestTimeout bounds one request to one replica. Default 5s.
	RequestTimeout time.Duration
	// RebalanceDelay: how long after a membership change records are pushed
	// to their new closest peers. Default 1s.
	RebalanceDelay time.Duration
	// RebalanceInterval: periodic re-placement check. Default 1 min.
	RebalanceInterval time.Duration
	// GCInterval: how often expired entries are dropped. Default 1 min.
	GCInterval time.Duration
	// MaxBindings and MaxRecordBytes are the record quota of one AOR on a
	// replica (RELOAD's max-count and max-size): entries (tombstones
	// included) and encoded bytes. Defaults 64 and 256 KiB.
	MaxBindings, MaxRecordBytes int
	// MaxDomainBindings and MaxDomainBytes are the quota of one signing
	// domain on a replica, over all its AORs (RELOAD's per-user quota: a
	// domain cannot fill a replica with bindings of made-up users).
	// Defaults 1,000,000 and 512 MiB.
	MaxDomainBindings, MaxDomainBytes int
	// PeerRate and PeerBurst bound the requests one remote peer may send
	// on the LSP protocols (a token bucket per peer); beyond them it gets
	// ErrRateLimited. Defaults 20000/s and 20000.
	PeerRate  float64
	PeerBurst int
	// BackgroundChecks: how many signatures a second a replica checks, in
	// the background, of the entries it took unchecked from a proven
	// holder (holder.go), so that their first read does not wait for the
	// check. What it has no budget for is checked at its first read, as
	// without. Default 100 (under 1% of a core: an Ed25519 check took 44 µs
	// here, go test crypto/ed25519 -bench Verification); negative: none.
	BackgroundChecks int
	// PrivateRecords hides records from their replicas (private.go): they
	// are stored under a hash of the AOR and their bindings sealed under a
	// key derived from it. Every member of an overlay must agree on it: a
	// reader looks an AOR up only under the name this setting gives it.
	PrivateRecords bool
	// Logger; default slog.Default(). Tagged with component=lsp.
	Logger *slog.Logger

	// fault, in tests, makes this replica misbehave: a non-nil reply
	// replaces the honest one.
	fault func(from overlay.PeerID, m *message) *message
}

// withDefaults validates c, then returns it with every zero field set to
// its default. Errors wrap ErrConfig.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Overlay == nil:
		return c, fmt.Errorf("%w: no overlay", ErrConfig)
	case c.TrustAnchors == nil:
		return c, fmt.Errorf("%w: no trust anchors", ErrConfig)
	}
	if err := nonNegative([]named{
		{"replicas", float64(c.Replicas)}, {"write quorum", float64(c.WriteQuorum)},
		{"max clock skew", float64(c.MaxClockSkew)}, {"max TTL", float64(c.MaxTTL)},
		{"max message", float64(c.MaxMessage)}, {"request timeout", float64(c.RequestTimeout)},
		{"rebalance delay", float64(c.RebalanceDelay)}, {"rebalance interval", float64(c.RebalanceInterval)},
		{"GC interval", float64(c.GCInterval)}, {"max bindings", float64(c.MaxBindings)},
		{"max record bytes", float64(c.MaxRecordBytes)}, {"max domain bindings", float64(c.MaxDomainBindings)},
		{"max domain bytes", float64(c.MaxDomainBytes)}, {"peer rate", c.PeerRate}, {"peer burst", float64(c.PeerBurst)},
	}); err != nil {
		return c, err
	}
	def(&c.Replicas, 3)
	def(&c.WriteQuorum, c.Replicas/2+1)
	if c.WriteQuorum > c.Replicas {
		return c, fmt.Errorf("%w: write quorum %d above replicas %d", ErrConfig, c.WriteQuorum, c.Replicas)
	}
	def(&c.MaxClockSkew, 30*time.Second)
	def(&c.MaxTTL, 7*24*time.Hour)
	def(&c.MaxMessage, DefaultMaxMessage)
	def(&c.RequestTimeout, 5*time.Second)
	def(&c.RebalanceDelay, time.Second)
	def(&c.RebalanceInterval, time.Minute)
	def(&c.GCInterval, time.Minute)
	def(&c.MaxBindings, 64)
	def(&c.MaxRecordBytes, 256<<10)
	def(&c.MaxDomainBindings, 1_000_000)
	def(&c.MaxDomainBytes, 512<<20)
	def(&c.PeerRate, 20000)
	def(&c.PeerBurst, 20000)
	def(&c.BackgroundChecks, 100)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "lsp")
	return c, nil
}

// def sets *v to d when it is zero.
func def[T int | float64 | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// named is a config value by its name, for nonNegative.
type named struct {
	name string
	v    float64
}

// nonNegative refuses the first negative value, naming it.
func nonNegative(vals []named) error {
	for _, n := range vals {
		if n.v < 0 {
			return fmt.Errorf("%w: negative %s (%v)", ErrConfig, n.name, n.v)
		}
	}
	return nil
}
