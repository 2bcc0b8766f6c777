package lsp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// next returns the next bindings a watch sends, as sorted contacts.
func next(t *testing.T, ch <-chan []Binding, within time.Duration) []string {
	t.Helper()
	select {
	case bs, ok := <-ch:
		if !ok {
			t.Fatal("watch ended")
		}
		var out []string
		for _, b := range bs {
			out = append(out, b.Contact)
		}
		slices.Sort(out)
		return out
	case <-time.After(within):
		t.Fatalf("no change within %v", within)
		return nil
	}
}

// TestWatch: a member that watches an AOR gets its bindings as they are,
// then every publish and removal of another member, and the watch ends
// with its context.
func TestWatch(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 6, []*Credential{biloxi}, ca)
	aor := "sip:bob@biloxi.example"
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := c.svcs[4].Watch(ctx, aor)
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, ch, 5*time.Second); len(got) != 0 {
		t.Fatalf("first: %v", got)
	}
	steps := []struct {
		do   func() error
		want []string
	}{
		{func() error { return c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.1", time.Hour)) }, []string{"sip:bob@192.0.2.1"}},
		{func() error { return c.svcs[0].Publish(ctx, aor, binding("sip:bob@192.0.2.2", time.Hour)) }, []string{"sip:bob@192.0.2.1", "sip:bob@192.0.2.2"}},
		{func() error { return c.svcs[0].Remove(ctx, aor, "sip:bob@192.0.2.1") }, []string{"sip:bob@192.0.2.2"}},
	}
	for i, st := range steps {
		t0 := time.Now()
		if err := st.do(); err != nil {
			t.Fatal(err)
		}
		// A change may come as two (the write reaches the replicas one
		// by one): the last within the bound must be the new state.
		got := next(t, ch, 5*time.Second)
		for !slices.Equal(got, st.want) {
			got = next(t, ch, 5*time.Second)
		}
		t.Logf("step %d reached the watcher in %v", i, time.Since(t0))
	}
	// A second watcher of the AOR shares the watch, and gets its state
	// at once.
	ctx2, cancel2 := context.WithCancel(context.Background())
	ch2, err := c.svcs[4].Watch(ctx2, aor)
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, ch2, time.Second); !slices.Equal(got, steps[len(steps)-1].want) {
		t.Fatalf("the second watcher's first: %v", got)
	}
	h := &c.svcs[4].watches
	h.mu.Lock()
	shared := len(h.m)
	h.mu.Unlock()
	if shared != 1 {
		t.Fatalf("%d watches for one AOR", shared)
	}
	cancel()
	for range ch { // closed once the watcher left
	}
	cancel2()
	for range ch2 {
	}
	waitFor(t, 2*time.Second, "the watch to end with its last watcher", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.m) == 0
	})
}

// TestWatchRequests: the replica side of WATCH answers at once with its
// version when the watcher's is another, holds the request until the
// record changes otherwise, and refuses a malformed one.
func TestWatchRequests(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 5, []*Credential{biloxi}, ca)
	aor := "sip:carol@biloxi.example"
	replica := c.svcs[0].closest(aor)[0]
	from := 1
	for i, s := range c.svcs {
		if s.self != replica && i != 0 {
			from = i
			break
		}
	}
	ctx := context.Background()
	reply, err := c.raw(from, replica, &message{Type: msgWatch, AORs: []string{aor}})
	if err != nil || reply.Count != 0 {
		t.Fatalf("no record yet: %+v, %v", reply, err)
	}
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:carol@192.0.2.3", time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The write returned after W replicas; this one may apply it a
	// moment later.
	waitFor(t, 5*time.Second, "the replica's version after a publish", func() bool {
		reply, err = c.raw(from, replica, &message{Type: msgWatch, AORs: []string{aor}})
		return err == nil && reply.Count > 0
	})
	v := reply.Count
	done := make(chan uint64, 1)
	go func() {
		r, err := c.raw(from, replica, &message{Type: msgWatch, AORs: []string{aor}, Count: v + 1})
		if err != nil {
			done <- 0
			return
		}
		done <- r.Count
	}()
	select {
	case got := <-done:
		t.Fatalf("answered %d before any change", got)
	case <-time.After(300 * time.Millisecond):
	}
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:carol@192.0.2.4", time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got == 0 || got == v {
		t.Fatalf("after a change: version %d (was %d)", got, v)
	}
	// A watcher that leaves frees its place at once: the replica's slot
	// and the record's channel.
	var rs *Service
	for _, x := range c.svcs {
		if x.self == replica {
			rs = x
		}
	}
	for i := 0; i < 5; i++ {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := c.svcs[from].watchRPC.call(cctx, replica, c.svcs[from].storeProto, &message{Type: msgWatch, AORs: []string{aor}, Count: got + 1})
		cancel()
		if err == nil {
			t.Fatal("a WATCH answered with no change")
		}
	}
	waitFor(t, 3*time.Second, "the replica to let the watchers that left go", func() bool {
		rs.watching.mu.Lock()
		n := rs.watching.total
		rs.watching.mu.Unlock()
		rs.store.mu.Lock()
		defer rs.store.mu.Unlock()
		return n == 0 && len(rs.store.changes) == 0 && len(rs.store.waiting) == 0
	})
	for _, m := range []*message{
		{Type: msgWatch},
		{Type: msgWatch, AORs: []string{aor, aor}},
		{Type: msgWatch, AORs: []string{"sip:Carol@Biloxi.example"}},
	} {
		if _, err := c.raw(from, replica, m); !errors.Is(err, ErrMalformed) {
			t.Errorf("WATCH %v: %v, want ErrMalformed", m.AORs, err)
		}
	}
}

func TestWatchLimit(t *testing.T) {
	var l watchLimit
	for i := 0; i < maxWatchesPerPeer; i++ {
		if !l.acquire("a") {
			t.Fatalf("watch %d of one peer refused", i)
		}
	}
	if l.acquire("a") {
		t.Fatal("one peer past its bound")
	}
	if !l.acquire("b") {
		t.Fatal("another peer refused")
	}
	l.release("a")
	if !l.acquire("a") {
		t.Fatal("a released slot not reused")
	}
	for p := 0; l.total < maxWatches; p++ {
		l.acquire(overlayPeer(p))
	}
	if l.acquire("c") {
		t.Fatal("past the total bound")
	}
}

func overlayPeer(i int) overlay.PeerID { return overlay.PeerID(fmt.Sprint("peer-", i)) }

// TestWatchLiar: a replica that answers every WATCH at once with a new
// version (a change that never was) costs its watcher at most a read each
// watchGap after a burst, not a read per answer: the watch is no
// amplifier.
func TestWatchLiar(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	var fetches, lies atomic.Int64
	var liar atomic.Int32
	liar.Store(-1)
	c := newClusterWith(t, 5, []*Credential{biloxi}, ca, func(i int, cfg *Config) {
		cfg.fault = func(_ overlay.PeerID, m *message) *message {
			switch {
			case m.Type == msgFetch:
				fetches.Add(1)
			case m.Type == msgWatch && int32(i) == liar.Load():
				return &message{Type: msgReply, Count: uint64(lies.Add(1))}
			}
			return nil
		}
	})
	aor := "sip:dave@biloxi.example"
	watcher := -1
	replicas := c.svcs[0].closest(aor)
	for i, s := range c.svcs {
		switch {
		case liar.Load() < 0 && slices.Contains(replicas, s.self):
			liar.Store(int32(i))
		case watcher < 0 && !slices.Contains(replicas, s.self):
			watcher = i
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A binding, so that a read asks the R replicas alone.
	if err := c.svcs[0].Publish(ctx, aor, binding("sip:dave@192.0.2.5", time.Hour)); err != nil {
		t.Fatal(err)
	}
	ch, err := c.svcs[watcher].Watch(ctx, aor)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 5*time.Second)
	fetches.Store(0)
	time.Sleep(time.Second)
	reads, told := fetches.Load()/int64(len(replicas)), lies.Load()
	// At most watchBurst reads, then one each watchGap (a read asks each
	// replica once).
	if limit := int64(watchBurst+time.Second/watchGap) + 5; reads > limit || reads == 0 {
		t.Fatalf("%d reads in 1 s after %d lies, want 1..%d", reads, told, limit)
	}
	t.Logf("%d reads in 1 s after %d lies", reads, told)
}
