package sim

import (
	"testing"
	"time"
)

// TestSmallConverges: 200 members with churn and 1% loss: every change
// reaches the observers and lookups come back right.
func TestSmallConverges(t *testing.T) {
	r, err := Run(Config{N: 200, Seed: 1, Warmup: 10 * time.Second, Duration: 30 * time.Second,
		Median: 10 * time.Minute, Loss: 0.01, Observers: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Joins+r.Failures == 0 {
		t.Fatal("no churn happened")
	}
	if r.Unreached > 0 {
		t.Fatalf("%d changes never reached 99%% of the views", r.Unreached)
	}
	// A member that joined a moment ago is on probation (not yet in
	// anyone's replica sets): the simulator is deterministic, so this
	// fraction is the protocol's, not the machine's.
	if r.Right*100 < 95*r.LookupsDone {
		t.Fatalf("%d of %d lookups never found the true replica set", r.LookupsDone-r.Right, r.LookupsDone)
	}
}
