package lsp

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/lsnode/lsnode/overlay"
)

// Datastore key prefixes of the replica store.
const (
	dsRecords = "/lsp/rec/"
	dsCerts   = "/lsp/cert/"
)

// store is a node's replica store: the verified entries of the AORs it holds,
// indexed in memory and written through to the datastore.
type store struct {
	// ds: nil when the node's datastore is itself in memory (no data
	// directory). Writing through to it then kept a second, encoded copy
	// of every record that nothing would ever read, and cost about 3% of
	// a loaded registrar's CPU (record encoding and the map's lock).
	ds ds.Datastore

	// Record quota (RELOAD's max-count / max-size): a write that would
	// give an AOR more entries or encoded bytes than this is refused.
	maxEntries, maxBytes int
	// Signer quota: what one signing domain may hold on this replica,
	// over all its AORs (entries and encoded bytes).
	signerEntries, signerBytes int
	// retain: how long after its timestamp an entry that expired is kept
	// as a ghost (the longest any signed version of a binding may live:
	// MaxTTL), so an older version replayed after it expired stays dead.
	retain time.Duration

	// check verifies an entry the replica took unchecked (entry.unchecked)
	// against its chain; nil: every entry counts as checked.
	check func(e *entry, chain [][]byte) bool

	mu      sync.RWMutex
	recs    map[string]*record
	certs   map[[32]byte][][]byte // verified chains by leaf fingerprint
	signers map[string]*usage     // by the AORs' domain (only its signers write it)
	// seq numbers the records' changes (record.version; it starts at the
	// store's start time in ns, so a restarted replica's versions do not
	// repeat the ones it gave before); changes holds, by AOR, a channel
	// closed at its record's next change, while waiting counts its
	// waiters (watch.go).
	seq     uint64
	changes map[string]chan struct{}
	waiting map[string]int
}

type usage struct{ n, bytes int }

// account adds (or, with sign −1, removes) an entry to its domain's usage.
func (s *store) account(e *entry, sign int) {
	d := Domain(e.AOR)
	u := s.signers[d]
	if u == nil {
		u = &usage{}
		s.signers[keyOf(d)] = u
	}
	u.n += sign
	u.bytes += sign * len(e.encode())
	if u.n <= 0 {
		delete(s.signers, d)
	}
}

type record struct {
	entries map[string]*entry // by binding identity
	placed  []overlay.PeerID  // closest set the record was last placed on
	// ghosts are expired entries (tombstones and bindings) kept until no
	// older version of their binding can be valid (timestamp + retain):
	// a write that does not beat its ghost is dropped, so a replayed older
	// version cannot come back to life. Never returned; counted in their
	// domain's usage, not in the record quota; at most maxEntries per
	// record, beyond which the oldest go and raise floor.
	ghosts map[string]*entry
	// floor: the newest timestamp of a ghost dropped for room (zero:
	// none). An entry of a binding the record has no trace of, no newer
	// than floor, is dropped as a possible replay, until floor + retain.
	floor time.Time
	// version: the store's seq at the record's last change (watch.go).
	version uint64
}

func (r *record) empty() bool {
	return len(r.entries) == 0 && len(r.ghosts) == 0 && r.floor.IsZero()
}

func newStore(d ds.Datastore, q quota) *store {
	return &store{ds: d, recs: map[string]*record{}, certs: map[[32]byte][][]byte{}, signers: map[string]*usage{}, changes: map[string]chan struct{}{},
		waiting: map[string]int{}, seq: uint64(max(time.Now().UnixNano(), 0)),
		maxEntries: q.RecordEntries, maxBytes: q.RecordBytes, signerEntries: q.SignerEntries, signerBytes: q.SignerBytes,
		retain: q.Retain}
}

// quota bounds what a replica stores: per AOR record and per signing domain.
// Retain is how long an expired entry is kept as a ghost after its
// timestamp (MaxTTL).
type quota struct {
	RecordEntries, RecordBytes int
	SignerEntries, SignerBytes int
	Retain                     time.Duration
}

// quotaError is a write refused by the record or domain quota; proof holds
// the records of the AORs over their record quota (every entry, so the
// writer can count them itself). A domain's usage cannot be proven.
type quotaError struct {
	err   error
	proof []*entry
}

func (q *quotaError) Error() string { return q.err.Error() }
func (q *quotaError) Unwrap() error { return q.err }

// recordOf returns every entry of aor's record, expired ones not yet
// collected included (what the record quota counts), adding their chains
// to chains (s.mu held).
func (s *store) recordOf(aor string, chains map[[32]byte][][]byte) []*entry {
	rec := s.recs[aor]
	if rec == nil {
		return nil
	}
	out := make([]*entry, 0, len(rec.entries))
	for _, e := range rec.entries {
		out = append(out, e)
		if c := s.certs[e.CertFP]; c != nil {
			chains[e.CertFP] = c
		}
	}
	return out
}

// quotaSize is what one AOR's record would hold with a write applied.
type quotaSize struct {
	aor            string
	n, bytes       int
	oldN, oldBytes int             // the record as stored
	added          []string        // ids of the write the record does not hold
	addedSet       map[string]bool // the same, once there are more than a few
	// ghosts the write replaces (their usage goes)
	ghostN, ghostBytes int
}

// addID notes id as one the write adds to the record; false if it was
// noted already. A short list first (a REGISTER adds one or two
// bindings), a set past 8: a batch of thousands of bindings for one AOR
// must not cost a scan each under the store's lock.
func (z *quotaSize) addID(id string) bool {
	if z.addedSet != nil {
		if z.addedSet[id] {
			return false
		}
		z.addedSet[id] = true
		return true
	}
	if slices.Contains(z.added, id) {
		return false
	}
	if z.added = append(z.added, id); len(z.added) > 8 {
		z.addedSet = make(map[string]bool, 2*len(z.added))
		for _, a := range z.added {
			z.addedSet[a] = true
		}
		z.added = nil
	}
	return true
}

// quotaSizes sizes the records of es's AORs with es applied, one per AOR
// in one allocation: a batch's AORs are mostly distinct, each a record of
// one or two bindings (s.mu held).
func (s *store) quotaSizes(es []*entry) []quotaSize {
	pool := make([]quotaSize, 0, len(es))
	sizes := make(map[string]*quotaSize, len(es))
	for _, e := range es {
		rec := s.recs[e.AOR]
		z := sizes[e.AOR]
		if z == nil {
			pool = append(pool, quotaSize{aor: e.AOR})
			z = &pool[len(pool)-1] // pool never grows past its capacity: z stays valid
			if rec != nil {
				for _, old := range rec.entries {
					z.oldBytes += len(old.encode())
				}
				z.oldN = len(rec.entries)
			}
			z.n, z.bytes = z.oldN, z.oldBytes
			sizes[e.AOR] = z
		}
		id := e.B.ID()
		if old := rec.entry(id); old != nil {
			z.bytes -= len(old.encode())
		} else if z.addID(id) {
			z.n++
			if g := rec.ghost(id); g != nil {
				z.ghostN++
				z.ghostBytes += len(g.encode())
			}
		}
		z.bytes += len(e.encode())
	}
	return pool
}

// overQuota lists the AORs of es whose records would exceed the quota
// with es applied, and among them those over their record's own quota
// (s.mu held).
func (s *store) overQuota(es []*entry) (over, records map[string]bool) {
	pool := s.quotaSizes(es)
	mark := func(aor string) {
		if over == nil {
			over = map[string]bool{}
		}
		over[aor] = true
	}
	deltas := map[string]*usage{}
	for i := range pool {
		z, aor := &pool[i], pool[i].aor
		if z.n > s.maxEntries || z.bytes > s.maxBytes {
			mark(aor)
			if records == nil {
				records = map[string]bool{}
			}
			records[aor] = true
			continue
		}
		d := Domain(aor)
		du := deltas[d]
		if du == nil {
			du = &usage{}
			deltas[d] = du
		}
		du.n += z.n - z.ghostN - z.oldN
		du.bytes += z.bytes - z.ghostBytes - z.oldBytes
	}
	for d, du := range deltas {
		cur := s.signers[d]
		if cur == nil {
			cur = &usage{}
		}
		if (du.n > 0 && cur.n+du.n > s.signerEntries) || (du.bytes > 0 && cur.bytes+du.bytes > s.signerBytes) {
			for i := range pool {
				if aor := pool[i].aor; Domain(aor) == d {
					mark(aor)
				}
			}
		}
	}
	return over, records
}

// entry returns r's entry of binding id (r may be nil).
func (r *record) entry(id string) *entry {
	if r == nil {
		return nil
	}
	return r.entries[id]
}

// ghost returns r's ghost of binding id (r may be nil).
func (r *record) ghost(id string) *entry {
	if r == nil {
		return nil
	}
	return r.ghosts[id]
}

// load reads the persisted records, dropping expired entries.
func (s *store) load(ctx context.Context, now time.Time) (int, error) {
	if s.ds == nil {
		return 0, nil
	}
	res, err := s.ds.Query(ctx, query.Query{Prefix: dsCerts})
	if err != nil {
		return 0, err
	}
	for r := range res.Next() {
		if r.Error != nil {
			res.Close()
			return 0, r.Error
		}
		fp, err := hex.DecodeString(strings.TrimPrefix(r.Key, dsCerts))
		if err != nil || len(fp) != 32 {
			continue
		}
		if ders, err := splitFrames(r.Value); err == nil {
			s.certs[[32]byte(fp)] = ders
		}
	}
	res.Close()
	res, err = s.ds.Query(ctx, query.Query{Prefix: dsRecords})
	if err != nil {
		return 0, err
	}
	defer res.Close()
	n := 0
	for r := range res.Next() {
		if r.Error != nil {
			return n, r.Error
		}
		raws, err := splitFrames(r.Value)
		if err != nil {
			continue
		}
		for _, raw := range raws {
			e, err := decodeEntry(raw)
			expired := err == nil && !e.B.Expires.After(now)
			if err != nil || (expired && !now.Before(e.B.Timestamp.Add(s.retain))) {
				continue
			}
			rec := s.recs[e.AOR]
			if rec == nil {
				rec = &record{entries: map[string]*entry{}}
				s.recs[keyOf(e.AOR)] = rec
				n++
			}
			id := e.B.ID()
			if old := rec.entries[id]; old != nil {
				if !e.newer(old) {
					continue
				}
				s.account(old, -1)
				delete(rec.entries, id)
			}
			if g := rec.ghost(id); g != nil {
				if !e.newer(g) {
					continue
				}
				s.account(g, -1)
				delete(rec.ghosts, id)
			}
			s.account(e, 1)
			if expired {
				s.addGhost(rec, e)
			} else {
				e.unchecked = 1 // what the disk holds is checked again before it is handed out
				rec.entries[id] = e
			}
		}
	}
	return n, nil
}

// apply merges verified entries (with their chains) and returns how many
// changed the store. placement computes the closest set of a new record.
func (s *store) apply(ctx context.Context, es []*entry, chains map[[32]byte][][]byte, placement func(aor string) []overlay.PeerID) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	over, records := s.overQuota(es)
	if len(records) > 0 && s.vetRecords(ctx, records) {
		over, records = s.overQuota(es)
	}
	if len(over) > 0 {
		qe := &quotaError{}
		for aor := range over {
			if qe.err == nil {
				qe.err = fmt.Errorf("%w: %q: over the quota of its record (%d bindings, %d bytes) or of its domain on this replica (%d bindings, %d bytes)",
					ErrTooLarge, aor, s.maxEntries, s.maxBytes, s.signerEntries, s.signerBytes)
			}
			if records[aor] {
				qe.proof = append(qe.proof, s.recordOf(aor, chains)...)
			}
		}
		return 0, qe
	}
	return s.applyLocked(ctx, es, chains, placement)
}

// applyIf is apply with RFC 3261 §10.3 step 7 checked per AOR at the replica:
// an AOR is refused, and none of its entries applied, when its record holds
// the same binding from the same Call-ID with an equal or higher CSeq. An
// identical entry is no conflict, so a retried request is idempotent. It
// returns the refused AORs and those over their quota, and the proof of
// each refusal by AOR: the live entries that beat the write, or the whole
// record over its record quota (none for a domain over its quota); proof's
// chains are added to chains.
func (s *store) applyIf(ctx context.Context, es []*entry, chains map[[32]byte][][]byte, placement func(aor string) []overlay.PeerID) (refused, over map[string]bool, proof map[string][]*entry, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	over, records := s.overQuota(es)
	if len(records) > 0 && s.vetRecords(ctx, records) {
		over, records = s.overQuota(es)
	}
	refused = map[string]bool{}
	proof = map[string][]*entry{}
	now := time.Now()
	for _, e := range es {
		rec := s.recs[e.AOR]
		if rec == nil || over[e.AOR] {
			continue
		}
		old := rec.entries[e.B.ID()]
		if old != nil && old.B.Expires.After(now) && beats(old, e) && s.vetLocked(ctx, rec, old) {
			refused[e.AOR] = true
			proof[e.AOR] = append(proof[e.AOR], old)
			if c := s.certs[old.CertFP]; c != nil {
				chains[old.CertFP] = c
			}
		}
	}
	for aor := range records {
		proof[aor] = s.recordOf(aor, chains)
	}
	if len(refused) > 0 || len(over) > 0 {
		kept := make([]*entry, 0, len(es))
		for _, e := range es {
			if !refused[e.AOR] && !over[e.AOR] {
				kept = append(kept, e)
			}
		}
		es = kept
	}
	_, err = s.applyLocked(ctx, es, chains, placement)
	return refused, over, proof, err
}

func (s *store) applyLocked(ctx context.Context, es []*entry, chains map[[32]byte][][]byte, placement func(aor string) []overlay.PeerID) (int, error) {
	changed := map[string]*record{}
	for fp, c := range chains {
		if _, ok := s.certs[fp]; !ok {
			s.certs[fp] = c
			if err := s.put(ctx, certKey(fp), func() []byte { return joinFrames(c) }); err != nil {
				return 0, fmt.Errorf("lsp: store certificate: %w", err)
			}
		}
	}
	n := 0
	for _, e := range es {
		rec := s.recs[e.AOR]
		if rec == nil {
			rec = &record{entries: map[string]*entry{}}
			if placement != nil {
				rec.placed = placement(e.AOR)
			}
			s.recs[keyOf(e.AOR)] = rec
		}
		id := e.B.ID()
		old := rec.entries[id]
		if old != nil && !e.newer(old) {
			continue
		}
		if old == nil {
			// A binding that expired here: only a newer version revives
			// it (and what the record lost track of must beat floor).
			if g := rec.ghost(id); g != nil {
				if !e.newer(g) {
					continue
				}
				s.account(g, -1)
				delete(rec.ghosts, id)
			} else if !rec.floor.IsZero() && !e.B.Timestamp.After(rec.floor) {
				continue
			}
		}
		if old != nil {
			s.account(old, -1)
		}
		s.account(e, 1)
		rec.entries[id] = e
		changed[e.AOR] = rec
		n++
	}
	for aor, rec := range changed {
		s.changedLocked(aor, rec)
		if err := s.putRecord(ctx, aor, rec); err != nil {
			return n, fmt.Errorf("lsp: persist record: %w", err)
		}
	}
	return n, nil
}

// get returns the entries (tombstones included, expired excluded) of aor and
// the chains they need.
func (s *store) get(aor string, now time.Time, chains map[[32]byte][][]byte) []*entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.recs[aor]
	if rec == nil {
		return nil
	}
	out := make([]*entry, 0, len(rec.entries))
	for _, e := range rec.entries {
		if e.B.Expires.After(now) {
			out = append(out, e)
			if _, ok := chains[e.CertFP]; !ok {
				chains[e.CertFP] = s.certs[e.CertFP]
			}
		}
	}
	return out
}

// gc turns expired entries (tombstones included) into ghosts, drops the
// ghosts (and floors) past their retention, and drops empty records. It
// returns how many entries expired or were dropped.
func (s *store) gc(ctx context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := 0
	for aor, rec := range s.recs {
		changed := 0
		for id, e := range rec.entries {
			if !e.B.Expires.After(now) {
				delete(rec.entries, id)
				s.addGhost(rec, e)
				changed++
			}
		}
		for id, g := range rec.ghosts {
			if !now.Before(g.B.Timestamp.Add(s.retain)) {
				delete(rec.ghosts, id)
				s.account(g, -1)
				changed++
			}
		}
		if !rec.floor.IsZero() && !now.Before(rec.floor.Add(s.retain)) {
			rec.floor = time.Time{}
			changed++
		}
		if changed == 0 {
			continue
		}
		dropped += changed
		var err error
		if rec.empty() {
			delete(s.recs, aor)
			if s.ds != nil {
				err = s.ds.Delete(ctx, recordKey(aor))
			}
		} else {
			err = s.putRecord(ctx, aor, rec)
		}
		if err != nil {
			return dropped, fmt.Errorf("lsp: gc: %w", err)
		}
	}
	return dropped, nil
}

// keyOf copies a string of a decoded entry that becomes a key of the
// store's records or domains: the entry's strings share its wire bytes
// (decodeEntry), and such a key outlives the entry it came from (the
// record's next version does not write the key again), so it would keep
// those bytes too. A binding's key is written again with each version
// (Go replaces a string key on assignment) and goes with its last one.
func keyOf(s string) string { return strings.Clone(s) }

// addGhost keeps e, an expired entry already accounted for, as a ghost of
// rec; beyond maxEntries ghosts the oldest goes and raises the floor (s.mu
// held).
func (s *store) addGhost(rec *record, e *entry) {
	if rec.ghosts == nil {
		rec.ghosts = map[string]*entry{}
	}
	rec.ghosts[e.B.ID()] = e
	for len(rec.ghosts) > max(1, s.maxEntries) {
		var oldest *entry
		for _, g := range rec.ghosts {
			if oldest == nil || g.B.Timestamp.Before(oldest.B.Timestamp) {
				oldest = g
			}
		}
		delete(rec.ghosts, oldest.B.ID())
		s.account(oldest, -1)
		if oldest.B.Timestamp.After(rec.floor) {
			rec.floor = oldest.B.Timestamp
		}
	}
}

// placementWork is what the rebalancer must push: entries per new replica.
type placementWork struct {
	aor     string
	entries []*entry
	targets []overlay.PeerID
	set     []overlay.PeerID
}

// replan lists records whose closest set gained peers since they were placed.
func (s *store) replan(self overlay.PeerID, now time.Time, closest func(aor string) []overlay.PeerID) []placementWork {
	// The AORs first, then each one's closest set outside the lock: a
	// walk of every record under the lock, asking the overlay for each,
	// held every write (a pending writer stops new readers too) for
	// seconds on a busy replica.
	s.mu.RLock()
	aors := make([]string, 0, len(s.recs))
	for aor, rec := range s.recs {
		if len(rec.entries) > 0 { // ghosts only: nothing to place
			aors = append(aors, aor)
		}
	}
	s.mu.RUnlock()
	var out []placementWork
	for _, aor := range aors {
		set := closest(aor)
		if w, ok := s.placement(aor, self, set, now); ok {
			out = append(out, w)
		}
	}
	return out
}

// placement is the work that places aor's record on set, if any.
func (s *store) placement(aor string, self overlay.PeerID, set []overlay.PeerID, now time.Time) (placementWork, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.recs[aor]
	if rec == nil || len(rec.entries) == 0 {
		return placementWork{}, false
	}
	var targets []overlay.PeerID
	for _, p := range set {
		if p != self && !containsPeer(rec.placed, p) {
			targets = append(targets, p)
		}
	}
	if len(targets) == 0 && len(set) == len(rec.placed) {
		return placementWork{}, false
	}
	w := placementWork{aor: aor, targets: targets, set: set}
	for _, e := range rec.entries {
		if e.B.Expires.After(now) {
			w.entries = append(w.entries, e)
		}
	}
	return w, true
}

// setPlaced records the closest set a record now lives on.
func (s *store) setPlaced(aor string, set []overlay.PeerID) {
	s.mu.Lock()
	if rec := s.recs[aor]; rec != nil {
		rec.placed = set
	}
	s.mu.Unlock()
}

// drop turns e into a ghost of its record, if the record still holds it:
// an entry whose signature failed its check (see Service.vetted). It is
// never handed out again, but, as a ghost, still keeps the older versions
// it displaced from being replayed (its holder could have done as much
// with a good signature).
func (s *store) drop(ctx context.Context, e *entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recs[e.AOR]
	if rec == nil || rec.entries[e.B.ID()] != e {
		return nil
	}
	return s.bury(ctx, rec, e)
}

// bury moves e from rec's entries to its ghosts and persists rec (s.mu
// held).
func (s *store) bury(ctx context.Context, rec *record, e *entry) error {
	delete(rec.entries, e.B.ID())
	s.addGhost(rec, e)
	return s.putRecord(ctx, e.AOR, rec)
}

// put writes what value returns under key, if the store writes through.
func (s *store) put(ctx context.Context, key ds.Key, value func() []byte) error {
	if s.ds == nil {
		return nil
	}
	return s.ds.Put(ctx, key, value())
}

// putRecord writes rec through to the datastore, if there is one (its key
// is not even made otherwise).
func (s *store) putRecord(ctx context.Context, aor string, rec *record) error {
	if s.ds == nil {
		return nil
	}
	return s.put(ctx, recordKey(aor), rec.encode)
}

// vetLocked checks e, an entry of rec, if the replica took it unchecked,
// before it decides anything for someone else (a refusal, a quota): true
// when it stands; a forgery is buried (s.mu held).
func (s *store) vetLocked(ctx context.Context, rec *record, e *entry) bool {
	if s.check == nil || atomic.LoadUint32(&e.unchecked) == 0 {
		return true
	}
	if s.check(e, s.certs[e.CertFP]) {
		atomic.StoreUint32(&e.unchecked, 0)
		return true
	}
	_ = s.bury(ctx, rec, e) // a failed write leaves it unchecked in the datastore: checked again after a reload
	return false
}

// vetRecords checks the unchecked entries of the records of aors (s.mu
// held) and reports whether any was buried.
func (s *store) vetRecords(ctx context.Context, aors map[string]bool) bool {
	buried := false
	for aor := range aors {
		if rec := s.recs[aor]; rec != nil {
			for _, e := range rec.entries {
				if !s.vetLocked(ctx, rec, e) {
					buried = true
				}
			}
		}
	}
	return buried
}

// holds reports whether e itself (not another version of its binding)
// is one of the store's live entries.
func (s *store) holds(e *entry) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.recs[e.AOR]
	return rec != nil && rec.entries[e.B.ID()] == e
}

func (s *store) chain(fp [32]byte) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.certs[fp]
}

// encode persists the entries and ghosts (load tells them apart by
// expiry); floor is not persisted.
func (r *record) encode() []byte {
	var raws [][]byte
	for _, e := range r.entries {
		raws = append(raws, e.encode())
	}
	for _, g := range r.ghosts {
		raws = append(raws, g.encode())
	}
	return joinFrames(raws)
}

func recordKey(aor string) ds.Key { return ds.NewKey(dsRecords + hex.EncodeToString([]byte(aor))) }
func certKey(fp [32]byte) ds.Key  { return ds.NewKey(dsCerts + hex.EncodeToString(fp[:])) }

// joinFrames is parts, each length-prefixed as overlay.WriteFrame does, in
// one allocation (every write persists its record this way).
func joinFrames(parts [][]byte) []byte {
	n := 0
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

func splitFrames(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: stored frame", ErrMalformed)
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out, nil
}

func containsPeer(ps []overlay.PeerID, p overlay.PeerID) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
