package testnet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
)

// BenchmarkPrivate measures what private records (overlay.records) cost:
// two 6-node testnets (R=3, W=2) run side by side, one keeping records in
// clear and one private, and each gets the same LSNODE_BENCH_OPS (300)
// operations, interleaved one at a time: a Register and a Publish of a
// binding with an instance, a Path and a Received at a.example's node, and
// a Lookup of it from b.example's. One summary line with each p50 and p99
// and the private/clear ratio of the p50s.
func BenchmarkPrivate(b *testing.B) {
	n := envInt("LSNODE_BENCH_OPS", 300)
	type side struct {
		name                  string
		front, reader         *lsp.Service
		register, pub, lookup *stats
	}
	var sides []*side
	for _, mode := range []string{"clear", "private"} {
		nw := smallBenchNetWith(b, "bench-"+mode, func(c *node.Config) { c.Overlay.Records = mode })
		sides = append(sides, &side{name: mode, front: nw.Node(domainNodes(nw, "a.example")[0]).Location(),
			reader:   nw.Node(domainNodes(nw, "b.example")[0]).Location(),
			register: &stats{name: "register"}, pub: &stats{name: "publish"}, lookup: &stats{name: "lookup"}})
	}
	ctx := context.Background()
	timed := func(st *stats, fn func() error) {
		t0 := time.Now()
		if err := fn(); err != nil {
			st.errs++
			return
		}
		st.seq = append(st.seq, time.Since(t0))
	}
	for i := 0; i < n; i++ {
		for _, s := range sides {
			aor := fmt.Sprintf("sip:private%d@a.example", i)
			bd := lsp.Binding{Contact: fmt.Sprintf("sip:u%d@192.0.2.1:5060", i), Expires: time.Now().Add(10 * time.Minute),
				Instance: fmt.Sprintf("<urn:uuid:%d>", i), RegID: 1, Path: []string{"<sip:edge.a.example;lr>"},
				CallID: fmt.Sprintf("c%d", i), CSeq: 1, Received: "192.0.2.1:5060"}
			timed(s.register, func() error { _, err := s.front.Register(ctx, aor, bd); return err })
			bd.Contact, bd.Instance = fmt.Sprintf("sip:v%d@192.0.2.2:5060", i), ""
			timed(s.pub, func() error { return s.front.Publish(ctx, aor, bd) })
			timed(s.lookup, func() error {
				bs, err := s.reader.Lookup(ctx, aor)
				if err == nil && len(bs) != 2 {
					err = fmt.Errorf("%d bindings, want 2", len(bs))
				}
				return err
			})
		}
	}
	line := fmt.Sprintf("\nlsnode private records bench: two 6-node testnets R=3 W=2, %d of each, interleaved one at a time", n)
	clear, private := sides[0], sides[1]
	for _, k := range []struct {
		name string
		c, p *stats
	}{{"register", clear.register, private.register}, {"publish", clear.pub, private.pub}, {"lookup", clear.lookup, private.lookup}} {
		line += fmt.Sprintf(" | %s clear p50 %s p99 %s (%d errors), private p50 %s p99 %s (%d errors), %.2fx",
			k.name, ms(k.c.p(0.5)), ms(k.c.p(0.99)), k.c.errs, ms(k.p.p(0.5)), ms(k.p.p(0.99)), k.p.errs, float64(k.p.p(0.5))/float64(k.c.p(0.5)))
	}
	fmt.Println(line)
}
