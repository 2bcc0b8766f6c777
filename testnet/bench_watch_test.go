package testnet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
)

// BenchmarkWatch measures how fast a change of an AOR's bindings reaches
// a member that watches it (lsp.Watcher), on a 6-node testnet (R=3,
// W=2): a.example's node publishes and removes a binding of one AOR
// LSNODE_BENCH_OPS (200) times, one change each 50 ms (a watcher reads at
// most 50 times a second after a burst of 10: faster changes of one AOR
// are delivered together), and b.example's node watches it; the time
// from the write's start to the watcher's delivery. One summary line.
func BenchmarkWatch(b *testing.B) {
	n := envInt("LSNODE_BENCH_OPS", 200)
	nw := smallBenchNet(b, "bench-watch")
	writer := nw.Node(domainNodes(nw, "a.example")[0]).Location()
	watcher := nw.Node(domainNodes(nw, "b.example")[0]).Location()
	aor := "sip:watched@a.example"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := watcher.Watch(ctx, aor)
	if err != nil {
		b.Fatal(err)
	}
	<-ch // as it is
	st, writes := &stats{name: "change → watcher"}, &stats{name: "write"}
	for i := 0; i < n; i++ {
		time.Sleep(50 * time.Millisecond)
		want := i%2 == 0 // a binding after an add, none after a removal
		t0 := time.Now()
		if want {
			// One Contact throughout: its tombstone is replaced, and the
			// record does not grow to its quota.
			err = writer.Publish(ctx, aor, lsp.Binding{Contact: "sip:w@192.0.2.1", Expires: time.Now().Add(time.Hour)})
		} else {
			err = writer.Remove(ctx, aor)
		}
		if err != nil {
			st.errs++
			continue
		}
		writes.seq = append(writes.seq, time.Since(t0))
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case bs := <-ch:
				if (len(bs) > 0) == want {
					st.seq = append(st.seq, time.Since(t0))
					break wait
				}
			case <-timeout:
				st.errs++
				break wait
			}
		}
	}
	fmt.Printf("\nlsnode watch bench: 6 nodes R=3 W=2, %d changes 50 ms apart | write start → watcher p50 %s p99 %s max %s (%d not seen in 5 s) | the write alone (W=2) p50 %s p99 %s\n",
		n, ms(st.p(0.5)), ms(st.p(0.99)), ms(st.p(1)), st.errs, ms(writes.p(0.5)), ms(writes.p(0.99)))
}
