package lsp

import (
	"slices"
	"strings"
	"time"
)

// What this node's replica holds and has done, for the operator's
// dashboard and metrics (metrics.go): cheap counters, and a cached scan of
// the store.

type domainsScan struct {
	at  time.Time
	all []DomainCount
}

// domainsTTL: Domains scans the store (under its read lock) at most this
// often, however many dashboards ask.
const domainsTTL = 5 * time.Second

// StoreStats is what this replica holds: AORs, entries (tombstones
// included) and their encoded bytes. The dashboard shows it and the
// metrics export it.
type StoreStats struct {
	Records int   `json:"records"`
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

// StoreStats returns what this replica holds.
func (s *Service) StoreStats() StoreStats {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	st := StoreStats{Records: len(s.store.recs)}
	for _, u := range s.store.signers {
		st.Entries += u.n
		st.Bytes += int64(u.bytes)
	}
	return st
}

// RegisterStats reports how many registrations Register has sent and in how
// many batches.
func (s *Service) RegisterStats() (registrations, batches int64) {
	return s.regRequests.Load(), s.regBatches.Load()
}

// DomainCount is what a replica holds of one domain: AORs with a live
// binding and live bindings.
type DomainCount struct {
	Domain   string `json:"domain"`
	AORs     int    `json:"aors"`
	Bindings int    `json:"bindings"`
}

// Domains returns what this replica holds per domain, most bindings first,
// at most n domains (n ≤ 0: all). It reads the whole store, at most once
// per domainsTTL (the result may be that old): for a dashboard, not a hot
// path.
func (s *Service) Domains(n int) []DomainCount {
	now := time.Now()
	sc := s.domains.Load()
	if sc == nil || now.Sub(sc.at) >= domainsTTL {
		sc = &domainsScan{at: now, all: s.scanDomains(now)}
		s.domains.Store(sc)
	}
	out := sc.all
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return slices.Clone(out)
}

// DomainUsage is what one domain's signers hold on this replica (the
// signer quota's accounting): entries, tombstones included, and bytes.
type DomainUsage struct {
	Domain  string
	Entries int
	Bytes   int64
}

// DomainUsage returns the n domains holding the most entries on this
// replica (n ≤ 0: all), and the sum over the others. Cheap: the store
// keeps these counts as it goes.
func (s *Service) DomainUsage(n int) (top []DomainUsage, rest DomainUsage) {
	s.store.mu.RLock()
	for d, u := range s.store.signers {
		top = append(top, DomainUsage{Domain: d, Entries: u.n, Bytes: int64(u.bytes)})
	}
	s.store.mu.RUnlock()
	slices.SortFunc(top, func(a, b DomainUsage) int {
		if a.Entries != b.Entries {
			return b.Entries - a.Entries
		}
		return strings.Compare(a.Domain, b.Domain)
	})
	if n > 0 && len(top) > n {
		for _, u := range top[n:] {
			rest.Entries += u.Entries
			rest.Bytes += u.Bytes
		}
		top = top[:n]
	}
	return top, rest
}

func (s *Service) scanDomains(now time.Time) []DomainCount {
	by := map[string]*DomainCount{}
	s.store.mu.RLock()
	for aor, rec := range s.store.recs {
		live := 0
		for _, e := range rec.entries {
			if e.live(now) {
				live++
			}
		}
		if live == 0 {
			continue
		}
		d := Domain(aor)
		c := by[d]
		if c == nil {
			c = &DomainCount{Domain: d}
			by[d] = c
		}
		c.AORs++
		c.Bindings += live
	}
	s.store.mu.RUnlock()
	out := make([]DomainCount, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b DomainCount) int {
		if a.Bindings != b.Bindings {
			return b.Bindings - a.Bindings
		}
		return strings.Compare(a.Domain, b.Domain)
	})
	return out
}

// RegisterDropped reports how many queued registrations were dropped
// unsent because their caller had stopped waiting (overload).
func (s *Service) RegisterDropped() int64 { return s.regDropped.Load() }
