package overlay

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// A sender that cannot open a stream holds back for one gossip period,
// then twice as long after each further failure up to 32 periods, and
// not at all once a stream opens.
func TestSenderHold(t *testing.T) {
	var h hold
	t0 := time.Unix(1000, 0)
	p := time.Second
	if h.on(t0) {
		t.Fatal("a new sender holds back")
	}
	now := t0
	want := []time.Duration{1, 2, 4, 8, 16, 32, 32}
	for i, w := range want {
		h.after(now, false, p)
		if !h.on(now.Add(w*p - time.Millisecond)) {
			t.Fatalf("failure %d: not held just before %v", i+1, w*p)
		}
		if h.on(now.Add(w * p)) {
			t.Fatalf("failure %d: still held at %v", i+1, w*p)
		}
		now = now.Add(w * p)
	}
	h.after(now, true, p)
	if h.on(now) {
		t.Fatal("held after a stream opened")
	}
	h.after(now, false, p)
	if !h.on(now.Add(p-time.Millisecond)) || h.on(now.Add(p)) {
		t.Fatal("after a success, a failure does not start again at one period")
	}
}

// A sender that failed to reach a crashed member drops the Haves sent
// to it during the hold without dialling for each, and still dials for a
// message the failure detector or a join depends on. The gossip period
// (so the hold's first step) is 5 s, far beyond what the test takes.
func TestHaveHeldAfterFailedOpen(t *testing.T) {
	os := startWith(t, 2, "ov-hold", func(_ int, c *Config) { c.GossipInterval = 5 * time.Second })
	waitMembers(t, os, 2)
	a, gone := os[0], os[1].ID()
	os[1].host.Close()
	waitUntil(t, 10*time.Second, "the crashed member disconnected", func() bool { return a.host.Network().Connectedness(gone) != network.Connected })
	// One failed open first: this Have's, or a probe's before it.
	a.members.enqueue(gone, []byte{4}) // a Have: type 4
	waitUntil(t, 30*time.Second, "a stream to it failed to open", func() bool { n, _ := a.members.sendFailuresTo(gone); return n > 0 })
	const haves = 5
	dials0, held0 := a.members.dials[4].Load(), a.members.held.Load()
	for range haves {
		a.members.enqueue(gone, []byte{4})
	}
	waitUntil(t, 10*time.Second, "the Haves held back", func() bool { return a.members.held.Load()-held0 >= haves })
	if d := a.members.dials[4].Load() - dials0; d != 0 {
		t.Fatalf("%d dials for %d Haves during the hold, want 0", d, haves)
	}
	// A snapshot (type 8, the answer to a join; never sent here unasked)
	// dials at once, hold or not.
	snaps0, t0 := a.members.dials[8].Load(), time.Now()
	a.members.enqueue(gone, []byte{8})
	waitUntil(t, 10*time.Second, "the snapshot dialled", func() bool { return a.members.dials[8].Load() > snaps0 })
	if time.Since(t0) >= 5*time.Second {
		t.Fatal("a snapshot waited for the hold to end")
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
