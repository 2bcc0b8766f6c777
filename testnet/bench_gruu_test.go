package testnet_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/registrar"
	"github.com/lsnode/lsnode/testnet"
)

var benchTempGRUU = regexp.MustCompile(`temp-gruu="([^"]+);gr"`)

// BenchmarkGRUU measures what GRUUs cost on a 6-node testnet (R=3, W=2):
// a stateless registrar over one node's location service answers
// LSNODE_BENCH_OPS (300) first REGISTERs of each kind, one at a time:
// without an instance (one round trip), of an instance (a read before
// the write and one after, GRUUs on or not asked for) and of an instance
// with Supported: gruu (also the temporary GRUU's write); then another
// node looks up the AORs and the temporary GRUUs. One summary line.
func BenchmarkGRUU(b *testing.B) {
	n := envInt("LSNODE_BENCH_OPS", 300)
	nw := smallBenchNet(b, "bench-gruu")
	front := nw.Node(domainNodes(nw, "a.example")[0]).Location()
	reader := nw.Node(domainNodes(nw, "b.example")[0]).Location()
	r, err := registrar.New(registrar.Config{Domain: "a.example", Mode: registrar.Stateless, Location: front,
		GRUUSecret: []byte("bench gruu secret 0123456789abcdef"), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	plain, inst, gruu := &stats{name: "REGISTER"}, &stats{name: "REGISTER, instance"}, &stats{name: "REGISTER, gruu"}
	var aors, temps []string
	for i := 0; i < 3*n; i++ {
		st, extra, instance := plain, "", ""
		if i%3 > 0 {
			st, instance = inst, fmt.Sprintf(";+sip.instance=\"<urn:uuid:%d>\"", i)
		}
		if i%3 == 2 {
			st, extra = gruu, "Supported: gruu\r\n"
		}
		aor := fmt.Sprintf("sip:gruu%d@a.example", i)
		raw := fmt.Sprintf("REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK%d\r\n"+
			"To: <%s>\r\nFrom: <%s>;tag=1\r\nCall-ID: g%d\r\nCSeq: 1 REGISTER\r\n"+
			"Contact: <sip:u%d@127.0.0.1:5099>%s\r\nExpires: 600\r\n%sContent-Length: 0\r\n\r\n",
			i, aor, aor, i, i, instance, extra)
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		res := r.Handle(context.Background(), m.(*sip.Request), "127.0.0.1:5099")
		if res.StatusCode != 200 {
			st.errs++
			continue
		}
		st.seq = append(st.seq, time.Since(t0))
		if i%3 == 2 {
			if mt := benchTempGRUU.FindStringSubmatch(res.String()); mt != nil {
				aors, temps = append(aors, aor), append(temps, mt[1])
			} else {
				st.errs++
			}
		}
	}
	lookAOR, lookTemp := &stats{name: "lookup AOR"}, &stats{name: "lookup temp GRUU"}
	for i := range aors {
		for _, c := range []struct {
			st  *stats
			aor string
		}{{lookAOR, aors[i]}, {lookTemp, temps[i]}} {
			t0 := time.Now()
			bs, err := reader.Lookup(context.Background(), c.aor)
			if err != nil || len(bs) != 1 {
				c.st.errs++
				continue
			}
			c.st.seq = append(c.st.seq, time.Since(t0))
		}
	}
	fmt.Printf("\nlsnode gruu bench: 6 nodes R=3 W=2, %d each, one at a time | REGISTER p50 %s p99 %s (%d errors) | of an instance p50 %s p99 %s (%d errors) | with Supported: gruu p50 %s p99 %s (%d errors) | "+
		"lookup from b.example: AOR p50 %s p99 %s (%d errors), temporary GRUU p50 %s p99 %s (%d errors)\n",
		n, ms(plain.p(0.5)), ms(plain.p(0.99)), plain.errs, ms(inst.p(0.5)), ms(inst.p(0.99)), inst.errs, ms(gruu.p(0.5)), ms(gruu.p(0.99)), gruu.errs,
		ms(lookAOR.p(0.5)), ms(lookAOR.p(0.99)), lookAOR.errs, ms(lookTemp.p(0.5)), ms(lookTemp.p(0.99)), lookTemp.errs)
}

// smallBenchNet starts a 6-node testnet (two domains of two nodes, R=3,
// W=2) for a benchmark, closed when it ends, its routing tables filled.
func smallBenchNet(b *testing.B, overlay string) *testnet.Network {
	return smallBenchNetWith(b, overlay, nil)
}

// smallBenchNetWith is smallBenchNet with tweak (nil: none) applied to
// every node's config.
func smallBenchNetWith(b *testing.B, overlay string, tweak func(c *node.Config)) *testnet.Network {
	spec := testnet.Spec{Dir: b.TempDir(), Nodes: 6, PerDomain: 2, Overlay: overlay}
	if _, err := testnet.Init(spec); err != nil {
		b.Fatal(err)
	}
	nw, err := testnet.Start(context.Background(), spec.Dir, testnet.RunOptions{Logger: quiet(), Tweak: func(c *node.Config) {
		fastGossip(c)
		if tweak != nil {
			tweak(c)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nw.Close() })
	waitDHTRefresh(nw, 6)
	return nw
}
