package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// maxCached bounds the lookup cache; when full it is emptied (a hot AOR is
// back after one lookup).
const maxCached = 100000

// cache keeps recent lookups so a hot AOR does not cost an overlay round
// trip per call.
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[string]cached
}

type cached struct {
	bs    []lsp.Binding
	until time.Time
}

func newCache(max int) *cache { return &cache{max: max, entries: map[string]cached{}} }

func (c *cache) get(aor string, now time.Time) ([]lsp.Binding, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[aor]
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) {
		delete(c.entries, aor)
		return nil, false
	}
	// Drop bindings that expired since they were cached.
	live := make([]lsp.Binding, 0, len(e.bs))
	for _, b := range e.bs {
		if b.Expires.After(now) {
			live = append(live, b)
		}
	}
	return live, true
}

func (c *cache) put(aor string, bs []lsp.Binding, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[aor] = cached{bs: bs, until: until}
}

// lookup returns aor's bindings, from the cache when fresh. A positive
// entry lives CacheTTL but never past its first binding's expiry; a
// negative one NegativeTTL.
func (p *Proxy) lookup(ctx context.Context, aor string) ([]lsp.Binding, error) {
	now := time.Now()
	if bs, ok := p.cache.get(aor, now); ok && (len(bs) > 0 || p.cfg.NegativeTTL > 0) {
		p.stats.cacheHits.Add(1)
		return bs, nil
	}
	p.stats.lookups.Add(1)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.LookupTimeout)
	defer cancel()
	bs, err := p.cfg.Location.Lookup(ctx, aor)
	if err != nil {
		return nil, err
	}
	ttl := p.cfg.CacheTTL
	if len(bs) == 0 {
		ttl = p.cfg.NegativeTTL
	}
	if ttl > 0 {
		until := now.Add(ttl)
		for _, b := range bs {
			if b.Expires.Before(until) {
				until = b.Expires
			}
		}
		p.cache.put(aor, bs, until)
	}
	return bs, nil
}

// drop forgets the cached lookup of req's AOR (a branch to it failed: the
// bindings may have changed).
func (c *cache) drop(req *sip.Request) {
	aor, err := lsp.Canonical(aorOf(req.Recipient))
	if err != nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, aor)
	c.mu.Unlock()
}
