package overlay

import (
	"testing"
	"time"
)

// TestRouteBudget: a burst of routeBurst lookups, then routeRate a second.
func TestRouteBudget(t *testing.T) {
	r := newRoutes(time.Minute)
	now := time.Unix(1_800_000_000, 0)
	n := 0
	for r.budget(now) {
		n++
	}
	if n != routeBurst {
		t.Fatalf("a burst of %d lookups, want %d", n, routeBurst)
	}
	n = 0
	for r.budget(now.Add(100 * time.Millisecond)) {
		n++
	}
	if n != routeRate/10 {
		t.Fatalf("%d lookups 100 ms later, want %d", n, routeRate/10)
	}
}
