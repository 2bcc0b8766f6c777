package testnet_test

import "testing"

// TestHighestHeld: the rate search finds the highest rate that holds
// below the probes' best, trying the best first and bisecting after,
// in as many runs as bisection takes.
func TestHighestHeld(t *testing.T) {
	for best := -1; best < 21; best++ {
		for limit := -1; limit <= best; limit++ { // rates up to limit hold
			var tried []int
			got := highestHeld(best, func(i int) bool {
				tried = append(tried, i)
				return i <= limit
			})
			if got != limit {
				t.Fatalf("best %d, holding up to %d: found %d (tried %v)", best, limit, got, tried)
			}
			if best >= 0 && tried[0] != best {
				t.Fatalf("best %d: tried %v, want the best first", best, tried)
			}
			if limit == best && len(tried) != min(1, best+1) {
				t.Fatalf("best %d holds: tried %v, want it alone", best, tried)
			}
			if len(tried) > 6 {
				t.Fatalf("best %d, holding up to %d: %d runs (%v), want at most 6", best, limit, len(tried), tried)
			}
		}
	}
}
