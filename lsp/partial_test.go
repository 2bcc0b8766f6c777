package lsp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// TestPartialViews: in an overlay where some members keep partial views
// (half the id space each), every node places every key on the same
// replicas once converged, through its view or a routed lookup, and
// bindings published at a partial node are found from full and partial
// nodes alike, and the other way round.
func TestPartialViews(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	const n, partialFrom = 20, 14
	c := &cluster{ca: ca, ovTweak: func(i int, cfg *overlay.Config) {
		if i >= partialFrom {
			cfg.View, cfg.RegionBits = overlay.ViewPartial, 1
		}
	}}
	t.Cleanup(func() {
		for i := range c.svcs {
			c.svcs[i].Close()
			c.ovs[i].Close()
		}
	})
	creds := map[int]*Credential{0: cred, partialFrom: cred}
	for i := 0; i < n; i++ {
		c.add(t, creds[i])
	}
	ctx := context.Background()
	waitFor(t, 20*time.Second, "views to converge", func() bool {
		for i, ov := range c.ovs {
			want := n
			if i >= partialFrom {
				want = 0
				for _, o := range c.ovs {
					if inRegion(ov, o) {
						want++
					}
				}
			}
			if got := len(ov.Members()); got != want {
				return false
			}
		}
		return true
	})
	full, partial := c.ovs[0], c.ovs[partialFrom]
	if len(partial.Members()) >= n {
		t.Fatalf("a partial view holds all %d members", n)
	}
	routed := 0
	for k := 0; k < 40; k++ {
		aor := fmt.Sprintf("sip:user%d@biloxi.example", k)
		want := full.Closest(Key(aor), 3)
		for _, i := range []int{partialFrom, n - 1} {
			ov := c.ovs[i]
			if !ov.Covers(Key(aor)) {
				routed++
			}
			if err := ov.Route(ctx, Key(aor)); err != nil {
				t.Fatalf("node %d: route to %s: %v", i, aor, err)
			}
			if got := ov.Closest(Key(aor), 3); !slices.Equal(got, want) {
				t.Fatalf("node %d places %s on %v, the full view on %v", i, aor, got, want)
			}
		}
		from, to := c.svcs[partialFrom], []*Service{c.svcs[1], c.svcs[n-1]}
		if k%2 == 1 {
			from, to = c.svcs[0], []*Service{c.svcs[partialFrom+1], c.svcs[n-2]}
		}
		if err := from.Publish(ctx, aor, binding(fmt.Sprintf("sip:u%d@192.0.2.%d", k, k+1), time.Hour)); err != nil {
			t.Fatalf("publish %s: %v", aor, err)
		}
		for _, s := range to {
			bs, err := s.Lookup(ctx, aor)
			if err != nil || len(bs) != 1 {
				t.Fatalf("lookup %s: %+v, %v", aor, bs, err)
			}
		}
	}
	if routed == 0 {
		t.Fatal("no key was routed: the partial views covered everything")
	}
	t.Logf("%d of 80 placements by a partial view were routed; the partial view holds %d of %d members", routed, len(partial.Members()), n)
}

// inRegion: o is in the region of ov's partial view.
func inRegion(ov, o *overlay.Overlay) bool {
	bits, prefix := ov.Region()
	h := sha256.Sum256([]byte(o.ID()))
	return binary.BigEndian.Uint64(h[:8])>>(64-bits) == prefix
}
