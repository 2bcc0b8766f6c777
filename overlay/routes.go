package overlay

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A partial view (Config.View "partial") places the keys of its own
// region from the membership view, one hop, and the others by kad-dht's
// iterative lookup, whose answers a route cache keeps for a while:
// O(log N) hops for the first request to a key, then one.

// View values.
const (
	ViewFull    = "full"
	ViewPartial = "partial"
)

// regionMembers: an automatic region holds about this many members.
const regionMembers = 64

// maxRegionBits: a region is at least 1/64 of the id space (membership's
// bound: a union of anti-entropy buckets).
const maxRegionBits = 6

// minRegionLive: a region with fewer live members than this places no
// key from the view (the members nearest a key may lie outside it).
const minRegionLive = 8

// routes caches the peers nearest keys outside a partial view's region.
type routes struct {
	mu       sync.Mutex
	ttl      time.Duration
	byKey    map[string]route
	suspects map[peer.ID]time.Time // dials failed: left out until then
	// tokens and at: the lookup budget (routeRate a second, up to
	// routeBurst), so requests for random keys cannot make this node run
	// lookups without bound.
	tokens float64
	at     time.Time
}

// The lookup budget of a partial view's Route.
const (
	routeRate  = 500
	routeBurst = 1000
)

// budget takes one lookup from the budget, if any is left.
func (r *routes) budget(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.at.IsZero() {
		r.tokens = routeBurst
	}
	r.tokens = min(routeBurst, r.tokens+now.Sub(r.at).Seconds()*routeRate)
	r.at = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}

type route struct {
	peers []peer.ID
	until time.Time
}

// minRoute: a cached route with fewer live peers than this is looked up
// again (a replica set, and some to spare).
const minRoute = 4

// maxRoutes bounds the cache; when full, expired routes go first, then any.
const maxRoutes = 4096

func newRoutes(ttl time.Duration) *routes {
	return &routes{ttl: ttl, byKey: map[string]route{}, suspects: map[peer.ID]time.Time{}}
}

// get returns up to n cached peers nearest key, without the suspected
// ones; ok is false when none is cached.
func (r *routes) get(key string, n int) (ps []peer.ID, ok bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rt, ok := r.byKey[key]
	if !ok || now.After(rt.until) {
		return nil, false
	}
	for _, p := range rt.peers {
		if len(ps) < n && !now.Before(r.suspects[p]) {
			ps = append(ps, p)
		}
	}
	return ps, true
}

func (r *routes) put(key string, ps []peer.ID) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byKey) >= maxRoutes {
		for k, rt := range r.byKey {
			if now.After(rt.until) || len(r.byKey) >= maxRoutes {
				delete(r.byKey, k)
			}
		}
	}
	r.byKey[key] = route{peers: ps, until: now.Add(r.ttl)}
}

func (r *routes) suspected(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Now().Before(r.suspects[p])
}

func (r *routes) suspect(p peer.ID, d time.Duration) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.suspects) >= maxRoutes {
		for q, until := range r.suspects {
			if now.After(until) {
				delete(r.suspects, q)
			}
		}
	}
	if len(r.suspects) < maxRoutes {
		r.suspects[p] = now.Add(d)
	}
}

// Covers reports whether this node's view places key itself (Closest
// needs no Route): always for a full view; for a partial one, when key is
// in its region and the region holds enough live members.
func (o *Overlay) Covers(key string) bool { return o.members.covers(kb.ConvertKey(key)) }

// Region returns a partial view's region: the members whose Kademlia ID
// (the SHA-256 of the peer ID) starts with the bits bits of prefix; bits
// 0 for a full view.
func (o *Overlay) Region() (bits int, prefix uint64) {
	o.members.mu.Lock()
	defer o.members.mu.Unlock()
	return o.members.m.Region()
}

// Route makes Closest able to answer for key: nothing to do for a key the
// view covers or whose route is cached with minRoute peers not suspected;
// otherwise kad-dht's iterative lookup finds the peers nearest it, and
// they are cached for 3 × FailAfter.
func (o *Overlay) Route(ctx context.Context, key string) error {
	if o.Covers(key) {
		return nil
	}
	if ps, ok := o.routes.get(key, minRoute); ok && len(ps) == minRoute {
		return nil
	}
	if !o.routes.budget(time.Now()) {
		return fmt.Errorf("overlay: no route to %x: over the budget of %d lookups a second", kb.ConvertKey(key)[:8], routeRate)
	}
	ps, err := o.ClosestIterative(ctx, key, 20)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return fmt.Errorf("overlay: no route to %x: no peer answered", kb.ConvertKey(key)[:8])
	}
	o.routes.put(key, ps)
	return nil
}

// joinRegion joins through the nearest member kad-dht finds in this
// node's region (a partial view's region is around its own id), if any.
func (o *Overlay) joinRegion(ctx context.Context) {
	ps, err := o.ClosestIterative(ctx, string(o.host.ID()), 4)
	if err != nil {
		o.cfg.Logger.Debug("partial view: no peers near this node", "err", err)
		return
	}
	for _, p := range ps {
		if _, in := o.members.aliveIn(p); p != o.host.ID() && in {
			if err := o.members.join(ctx, p, true); err == nil {
				return
			}
		}
	}
}

// regionFor is the number of region bits (0-6) at which a region of an
// overlay of about n members holds about regionMembers of them.
func regionFor(n int) int {
	if n < 2*regionMembers {
		return 0
	}
	return min(maxRegionBits, int(math.Floor(math.Log2(float64(n)/regionMembers))))
}
