package lsp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// LocationService is what registrars and proxies use: the draft's Location
// Service Protocol as a Go interface. Service (in-process) and Client (a
// remote lsnode over the client protocol) implement it.
type LocationService interface {
	// Publish signs and stores bindings of aor; it returns once a write
	// quorum of replicas holds them.
	Publish(ctx context.Context, aor string, bindings ...Binding) error
	// Lookup returns the live (unexpired, not removed) bindings of aor,
	// merged from several replicas and verified. No binding: empty, nil error.
	Lookup(ctx context.Context, aor string) ([]Binding, error)
	// Remove writes tombstones for the bindings of aor with the given
	// identities (Binding.ID or Contact); none means all of them.
	Remove(ctx context.Context, aor string, ids ...string) error
}

var (
	_ LocationService = (*Service)(nil)
	_ LocationService = (*Client)(nil)
)

// clock hands out strictly increasing write timestamps.
type clock struct {
	mu   sync.Mutex
	last time.Time
}

func (c *clock) next(min time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now()
	if !t.After(c.last) {
		t = c.last.Add(time.Nanosecond)
	}
	if !t.After(min) {
		t = min.Add(time.Nanosecond)
	}
	c.last = t
	return t
}

// prepare builds signed entries for aor from bindings, hidden by k (nil:
// in clear).
func prepare(cred *Credential, clk *clock, aor string, bs []Binding, k *sealer) ([]*entry, error) {
	es, err := build(cred, clk, aor, bs, k)
	if err != nil {
		return nil, err
	}
	return es, cred.sign(es)
}

// build checks bindings and turns them into unsigned entries of aor,
// hidden by k (nil: in clear).
func build(cred *Credential, clk *clock, aor string, bs []Binding, k *sealer) ([]*entry, error) {
	if cred == nil {
		return nil, ErrNoCredential
	}
	canon, err := Canonical(aor)
	if err != nil {
		return nil, err
	}
	if !cred.Authorizes(canon) {
		return nil, fmt.Errorf("%w: credential %v does not cover %q", ErrForbidden, cred.Domains(), canon)
	}
	if len(bs) == 0 || len(bs) > maxEntries {
		return nil, fmt.Errorf("%w: %d bindings", ErrInvalid, len(bs))
	}
	es := make([]*entry, len(bs))
	now := time.Now()
	seen := map[string]bool{}
	for i, b := range bs {
		if err := b.validate(); err != nil {
			return nil, err
		}
		if !b.Expires.After(now) {
			return nil, fmt.Errorf("%w: binding %s already expired (use Remove)", ErrInvalid, b.Contact)
		}
		if seen[b.ID()] {
			return nil, fmt.Errorf("%w: binding %s given twice", ErrInvalid, b.ID())
		}
		seen[b.ID()] = true
		b.Path = slices.Clone(b.Path)
		b.Signer = ""
		b.Expires = time.UnixMilli(b.Expires.UnixMilli())
		if b.Timestamp.IsZero() {
			b.Timestamp = clk.next(time.Time{})
		}
		es[i] = &entry{AOR: canon, B: b}
	}
	k.hideAll(es)
	return es, nil
}

// tombstones builds signed removals of the current entries (opened) matching
// ids, hidden by k (nil: in clear).
func tombstones(cred *Credential, clk *clock, aor string, current []*entry, ids []string, k *sealer) ([]*entry, error) {
	if cred == nil {
		return nil, ErrNoCredential
	}
	var es []*entry
	for _, e := range current {
		if e.Removed || (len(ids) > 0 && !slices.Contains(ids, e.B.ID()) && !slices.Contains(ids, e.B.Contact)) {
			continue
		}
		b := ownBinding(e.B) // the tombstone outlives e (as a ghost, days)
		b.Signer = ""
		b.Timestamp = clk.next(e.B.Timestamp)
		es = append(es, &entry{AOR: aor, B: b, Removed: true})
	}
	if len(es) == 0 {
		return nil, nil
	}
	k.hideAll(es)
	return es, cred.sign(es)
}

// merge keeps the newest entry per binding identity.
func merge(into map[string]*entry, es []*entry) {
	for _, e := range es {
		id := e.B.ID()
		if old := into[id]; old == nil || e.newer(old) {
			into[id] = e
		}
	}
}

// ownBinding returns b with its strings copied into one allocation of their
// own (and its Path into a new slice): a decoded entry's strings share the
// entry's wire bytes (decodeEntry), which a binding kept longer than the
// entry must not keep.
func ownBinding(b Binding) Binding {
	n := len(b.Contact) + len(b.Instance) + len(b.CallID) + len(b.Received)
	for _, p := range b.Path {
		n += len(p)
	}
	if n == 0 {
		return b
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(b.Contact)
	sb.WriteString(b.Instance)
	sb.WriteString(b.CallID)
	sb.WriteString(b.Received)
	for _, p := range b.Path {
		sb.WriteString(p)
	}
	all, at := sb.String(), 0
	take := func(s string) string {
		at += len(s)
		return all[at-len(s) : at]
	}
	b.Contact, b.Instance, b.CallID, b.Received = take(b.Contact), take(b.Instance), take(b.CallID), take(b.Received)
	if len(b.Path) > 0 {
		path := make([]string, len(b.Path))
		for i, p := range b.Path {
			path[i] = take(p)
		}
		b.Path = path
	}
	return b
}

// liveBindings returns the live bindings of merged entries, highest q first.
func liveBindings(merged map[string]*entry, signer func(*entry) string, now time.Time) []Binding {
	out := []Binding{}
	for _, e := range merged {
		if e.live(now) {
			b := ownBinding(e.B) // callers keep bindings (caches, watches) past e
			b.Signer = signer(e)
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Binding) int {
		if a.Q != b.Q {
			if a.Q > b.Q {
				return -1
			}
			return 1
		}
		return a.Expires.Compare(b.Expires) * -1
	})
	return out
}

func subjectName(c *chain) string {
	if c == nil {
		return ""
	}
	if len(c.leaf.DNSNames) > 0 {
		return c.leaf.DNSNames[0]
	}
	if len(c.leaf.URIs) > 0 {
		return c.leaf.URIs[0].String()
	}
	return c.leaf.Subject.CommonName
}

// chainsOf returns a credential's chain keyed by its fingerprint.
func chainsOf(c *Credential) map[[32]byte][][]byte {
	return map[[32]byte][][]byte{c.fp: c.Chain}
}

// flatten lists the distinct certificates of chains for a message.
func flatten(chains map[[32]byte][][]byte) [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	for _, c := range chains {
		for _, der := range c {
			if !seen[string(der)] {
				seen[string(der)] = true
				out = append(out, der)
			}
		}
	}
	return out
}
