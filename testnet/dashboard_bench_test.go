package testnet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/testnet"
)

// BenchmarkDashboard: what the dashboard costs on a 12-node testnet, side
// by side with the plain lookup it draws: a Lookup, a traced lookup
// (Trace), a traced lookup through the HTTP endpoint (JSON included), an
// iterative traced lookup, and the state endpoint. One summary line.
//
//	go test -run '^$' -bench BenchmarkDashboard -benchtime 1x ./testnet/
func BenchmarkDashboard(b *testing.B) {
	nw := startNet(b, testnet.Spec{Nodes: 12, PerDomain: 2}, testnet.RunOptions{})
	ctx := context.Background()
	if err := nw.WaitConverged(ctx, 20*time.Second); err != nil {
		b.Fatal(err)
	}
	src := nw.Node(domainNodes(nw, "b.example")[0])
	aor := "sip:alice@b.example"
	if err := src.Location().Publish(ctx, aor, lsp.Binding{Contact: "sip:alice@192.0.2.7", Expires: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	rd := nw.Node(domainNodes(nw, "a.example")[0])
	base := "http://" + rd.AdminAddr() + "/dashboard/api/"
	get := func(u string) {
		res, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("%s: %d", u, res.StatusCode)
		}
	}
	const n = 2000
	ops := []struct {
		name string
		n    int
		f    func()
	}{
		{"lookup", n, func() {
			if _, err := rd.Location().Lookup(ctx, aor); err != nil {
				b.Fatal(err)
			}
		}},
		{"trace", n, func() {
			if tr, err := rd.Location().Trace(ctx, aor, false); err != nil || tr.Err != "" {
				b.Fatal(err, tr.Err)
			}
		}},
		{"http-trace", n, func() { get(base + "lookup?aor=" + url.QueryEscape(aor)) }},
		{"iterative", 200, func() { get(base + "lookup?iterative=1&aor=" + url.QueryEscape(aor)) }},
		{"state", n, func() { get(base + "state") }},
	}
	per := map[string]time.Duration{}
	for _, op := range ops {
		op.f() // warm
		start := time.Now()
		for range op.n {
			op.f()
		}
		per[op.name] = time.Since(start) / time.Duration(op.n)
		b.ReportMetric(float64(per[op.name].Microseconds()), op.name+"-µs/op")
	}
	fmt.Printf("dashboard (12 nodes, loopback): lookup %v, traced %v (%.2fx), over HTTP %v, iterative %v, state %v\n",
		per["lookup"], per["trace"], float64(per["trace"])/float64(per["lookup"]), per["http-trace"], per["iterative"], per["state"])
}
