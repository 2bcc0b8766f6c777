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

// A sender that failed to reach a crashed member drops the Haves queued
// behind the failure without dialling for each, and still dials for a
// ping: the failure detector's messages are never held back.
func TestHaveHeldAfterFailedOpen(t *testing.T) {
	os := startN(t, 2, "ov-hold")
	waitMembers(t, os, 2)
	a, gone := os[0], os[1].ID()
	os[1].host.Close()
	waitUntil(t, 10*time.Second, func() bool { return a.host.Network().Connectedness(gone) != network.Connected })
	const haves = 5
	dials0, held0 := a.members.dials[4].Load(), a.members.held.Load()
	for range haves {
		a.members.enqueue(gone, []byte{4}) // a Have: type 4
	}
	waitUntil(t, 30*time.Second, func() bool {
		return a.members.dials[4].Load()-dials0+a.members.held.Load()-held0 >= haves
	})
	if d := a.members.dials[4].Load() - dials0; d != 1 {
		t.Fatalf("%d dials for %d Haves to a member that cannot be reached, want 1", d, haves)
	}
	pings0 := a.members.dials[1].Load()
	a.members.enqueue(gone, []byte{1}) // a ping: type 1
	waitUntil(t, 30*time.Second, func() bool { return a.members.dials[1].Load() > pings0 })
}

func waitUntil(t *testing.T, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not so within %v", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
