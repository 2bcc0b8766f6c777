package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
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
	asOf  time.Time // when the lookup began, or the change was told
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

// put keeps aor's bindings bs as of asOf; an entry of a later asOf (a
// change told while the lookup ran) stays.
func (c *cache) put(aor string, bs []lsp.Binding, until, asOf time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[aor]; ok && e.asOf.After(asOf) {
		return
	}
	if len(c.entries) >= c.max {
		clear(c.entries)
	}
	c.entries[aor] = cached{bs: bs, until: until, asOf: asOf}
}

// lookup returns aor's bindings, from the cache when fresh. A positive
// entry lives CacheTTL but never past its first binding's expiry; a
// negative one NegativeTTL.
func (p *Proxy) lookup(ctx context.Context, aor string) ([]lsp.Binding, error) {
	now := time.Now()
	if bs, ok := p.cache.get(aor, now); ok && (len(bs) > 0 || p.cfg.NegativeTTL > 0) {
		p.stats.cacheHits.Add(1)
		if len(bs) > 0 {
			p.followChanges(aor)
		}
		return bs, nil
	}
	p.stats.lookups.Add(1)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.LookupTimeout)
	defer cancel()
	bs, err := p.cfg.Location.Lookup(ctx, aor)
	if err != nil {
		return nil, err
	}
	p.keep(aor, bs, now)
	if len(bs) > 0 { // an AOR with no binding is not followed: anyone can ask for any
		p.followChanges(aor)
	}
	return bs, nil
}

// keep caches aor's bindings bs, read at now.
func (p *Proxy) keep(aor string, bs []lsp.Binding, now time.Time) {
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
		p.cache.put(aor, bs, until, now)
	}
}

// maxFollowed bounds the AORs a proxy follows at once (each holds a
// WATCH at each of the AOR's replicas; a replica serves 128 of one peer):
// the first looked up while fewer are followed; the others' cache is
// TTL-bound alone.
const maxFollowed = 64

// follows are the AORs the proxy follows: while an AOR is looked up at
// least once a CacheTTL, a watch of the location service (lsp.Watcher)
// puts each change of its bindings in the cache as it happens, so a
// cached lookup is exact (to the change's delivery, a few ms) instead of
// up to CacheTTL old. The TTL still bounds an entry if the watch fails.
type follows struct {
	mu sync.Mutex
	m  map[string]*followed
}

type followed struct {
	cancel context.CancelFunc
	idle   *time.Timer // ends the watch a CacheTTL after the AOR's last lookup
}

// followChanges follows aor's changes, or keeps following them a
// CacheTTL longer.
func (p *Proxy) followChanges(aor string) {
	w, ok := p.cfg.Location.(lsp.Watcher)
	if !ok || p.cfg.CacheTTL <= 0 {
		return
	}
	f := &p.follow
	f.mu.Lock()
	defer f.mu.Unlock()
	if x := f.m[aor]; x != nil {
		x.idle.Reset(p.cfg.CacheTTL)
		return
	}
	if len(f.m) >= maxFollowed {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	ch, err := w.Watch(ctx, aor)
	if err != nil {
		cancel()
		return
	}
	x := &followed{cancel: cancel, idle: time.AfterFunc(p.cfg.CacheTTL, cancel)}
	if f.m == nil {
		f.m = map[string]*followed{}
	}
	f.m[aor] = x
	started := p.spawn(func() {
		for bs := range ch {
			p.keep(aor, bs, time.Now())
			p.stats.pushed.Add(1)
		}
		x.idle.Stop()
		f.mu.Lock()
		if f.m[aor] == x {
			delete(f.m, aor)
		}
		f.mu.Unlock()
	})
	if !started {
		cancel()
		delete(f.m, aor)
	}
}

// drop forgets the cached lookup of req's AOR (a branch to it failed: the
// bindings may have changed).
func (c *cache) drop(req *sip.Request) {
	aor, err := lsp.Canonical(sipnet.AOROf(req.Recipient))
	if err != nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, aor)
	c.mu.Unlock()
}
