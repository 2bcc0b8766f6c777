package lsp

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestTrace: a traced lookup names the replicas it asked and what each
// returned; one that holds a binding the others lack shows as the one the
// others are missing (and repaired from), a dead one as failed; the
// iterative mode records the kad-dht route it took.
func TestTrace(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	// A replica that fails fetches once broken[i] is set.
	var broken [8]atomic.Bool
	c := newClusterWith(t, 8, []*Credential{biloxi}, ca, func(i int, cfg *Config) {
		cfg.fault = func(_ peer.ID, m *message) *message {
			if m.Type == msgFetch && broken[i].Load() {
				return errorReply(fmt.Errorf("%w: disk on fire", ErrRemote))
			}
			return nil
		}
	})
	ctx := context.Background()
	aor := "sip:bob@biloxi.example"
	replicas, reader := c.publishEverywhere(t, aor, "sip:bob@192.0.2.1")
	if len(replicas) != 3 {
		t.Fatalf("replicas %v", replicas)
	}
	// One replica alone gets a second binding.
	extra := signed(t, biloxi, aor, binding("sip:bob@192.0.2.9", time.Hour))
	if err := c.svcs[0].storeTo(ctx, replicas[0], extra, chainsOf(biloxi)); err != nil {
		t.Fatal(err)
	}
	// What a replica holds per domain (the dashboard's registrations).
	for i, o := range c.ovs {
		if o.ID() == replicas[0] {
			if d := c.svcs[i].Domains(0); len(d) != 1 || d[0] != (DomainCount{Domain: "biloxi.example", AORs: 1, Bindings: 2}) {
				t.Fatalf("domains of the replica holding 2 bindings: %+v", d)
			}
			if top, rest := c.svcs[i].DomainUsage(1); len(top) != 1 || top[0].Domain != "biloxi.example" || top[0].Entries != 2 || top[0].Bytes <= 0 || rest.Entries != 0 {
				t.Fatalf("domain usage of the replica holding 2 bindings: %+v %+v", top, rest)
			}
		}
	}
	if d := c.svcs[reader].Domains(0); len(d) != 0 {
		t.Fatalf("domains of a node holding nothing: %+v", d)
	}
	tr, err := c.svcs[reader].Trace(ctx, "sip:Bob@Biloxi.example", false)
	if err != nil || tr.Err != "" {
		t.Fatalf("trace: %v %q", err, tr.Err)
	}
	if tr.AOR != aor || tr.Self != c.ovs[reader].ID() || tr.Replicas != 3 || tr.Need != 2 || len(tr.Route) != 0 {
		t.Fatalf("trace header %+v", tr)
	}
	if len(tr.Bindings) != 2 {
		t.Fatalf("trace bindings %+v", tr.Bindings)
	}
	asked := map[peer.ID]TraceReply{}
	for _, a := range tr.Asked {
		asked[a.Peer] = a
	}
	if len(tr.Asked) != 3 {
		t.Fatalf("asked %+v", tr.Asked)
	}
	for i, p := range replicas {
		a, ok := asked[p]
		if !ok || a.Round != "closest" || a.Hops != 1 {
			t.Fatalf("replica %d: %+v", i, a)
		}
		if a.Status == "not awaited" {
			continue // a straggler the read did not wait for
		}
		if a.Status != "answered" || a.Took <= 0 || !slices.Contains(a.Live, "sip:bob@192.0.2.1") {
			t.Fatalf("replica %d: %+v", i, a)
		}
		if i == 0 && (len(a.Live) != 2 || a.Missing != 0 || a.Repaired) {
			t.Fatalf("replica holding the extra binding: %+v", a)
		}
		if i > 0 && (len(a.Live) != 1 || a.Missing != 1 || !a.Repaired) {
			t.Fatalf("replica lacking the extra binding: %+v", a)
		}
	}

	// A replica that fails is shown failed, and the others still answer.
	for i, o := range c.ovs {
		if o.ID() == replicas[1] {
			broken[i].Store(true)
		}
	}
	tr, err = c.svcs[reader].Trace(ctx, aor, false)
	if err != nil || tr.Err != "" || len(tr.Bindings) != 2 {
		t.Fatalf("trace with a failing replica: %v %+v", err, tr)
	}
	failed := false
	for _, a := range tr.Asked {
		if a.Peer == replicas[1] {
			failed = a.Status == "failed" && a.Err != ""
		}
	}
	if !failed {
		t.Fatalf("failing replica not shown as failed: %+v", tr.Asked)
	}

	// Iterative: the replicas come from kad-dht's route.
	tr, err = c.svcs[reader].Trace(ctx, aor, true)
	if err != nil || tr.Err != "" || len(tr.Bindings) != 2 {
		t.Fatalf("iterative trace: %v %+v", err, tr)
	}
	if len(tr.Route) == 0 {
		t.Fatalf("iterative trace without a route: %+v", tr)
	}
	for _, q := range tr.Route {
		if q.Hop < 1 || (q.Hop > 1) != (q.From != "") {
			t.Fatalf("route query %+v", q)
		}
	}
	for _, a := range tr.Asked {
		if a.Round != "iterative" || (a.Peer != tr.Self && a.Hops < 1) {
			t.Fatalf("iteratively found replica %+v", a)
		}
	}

	if _, err := c.svcs[reader].Trace(ctx, "not an aor", false); err == nil {
		t.Fatal("trace of a malformed AOR succeeded")
	}
}

// TestLookupAsksSuspects: a reader that suspects every replica of an AOR
// (a dial to each failed a moment ago; they have come back since) finds
// nothing among the members it does not suspect, so it asks the suspects
// before answering "none", and finds the binding there.
func TestLookupAsksSuspects(t *testing.T) {
	ca := newTestCA(t)
	biloxi := ca.issue(t, []string{"biloxi.example"}, nil, false)
	c := newCluster(t, 7, []*Credential{biloxi}, ca)
	ctx := context.Background()
	aor := "sip:carol@biloxi.example"
	replicas, reader := c.publishEverywhere(t, aor, "sip:carol@192.0.2.3")
	for _, p := range replicas {
		c.ovs[reader].Suspect(p)
	}
	if got := c.svcs[reader].closest(aor); slices.ContainsFunc(got, func(p peer.ID) bool { return slices.Contains(replicas, p) }) {
		t.Fatalf("suspected replicas still among the closest: %v", got)
	}
	tr, err := c.svcs[reader].Trace(ctx, aor, false)
	if err != nil || tr.Err != "" || len(tr.Bindings) != 1 {
		t.Fatalf("lookup with every replica suspected: %v %+v", err, tr)
	}
	asked := 0
	for _, a := range tr.Asked {
		if a.Round == "suspected" {
			asked++
			if a.Status == "answered" && len(a.Live) != 1 {
				t.Fatalf("suspected replica answered %+v", a)
			}
		}
	}
	if asked != len(replicas) {
		t.Fatalf("%d suspects asked, want %d: %+v", asked, len(replicas), tr.Asked)
	}
}

// publishEverywhere publishes contact for aor from node 0 and waits until
// every replica holds it (Publish returns once W=2 do; a CI run traced
// before the third had it). It returns the replicas and a node that is
// none of them, so every answer it reads crosses the network.
func (c *cluster) publishEverywhere(t *testing.T, aor, contact string) (replicas []peer.ID, reader int) {
	t.Helper()
	if err := c.svcs[0].Publish(context.Background(), aor, binding(contact, time.Hour)); err != nil {
		t.Fatal(err)
	}
	replicas = c.svcs[0].closest(aor)
	reader = -1
	for i, o := range c.ovs {
		if !slices.Contains(replicas, o.ID()) {
			reader = i
			break
		}
	}
	waitFor(t, 5*time.Second, "every replica holds the binding", func() bool {
		for i, o := range c.ovs {
			if slices.Contains(replicas, o.ID()) && c.svcs[i].Holds(aor) != 1 {
				return false
			}
		}
		return true
	})
	return replicas, reader
}
