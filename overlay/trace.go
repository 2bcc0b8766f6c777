package overlay

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// Query is one step of a traced iterative lookup: a peer asked for the
// peers closest to the key, who named it, and what it answered.
type Query struct {
	Peer peer.ID `json:"peer"`
	// From named Peer in its answer; empty when Peer came from this
	// node's own routing table.
	From peer.ID `json:"from,omitempty"`
	// Hop is 1 for a peer from the routing table, h+1 for one named by a
	// peer at hop h.
	Hop int `json:"hop"`
	// Sent is when the query went out, from the start of the lookup; Took
	// is how long its answer took (0 without one).
	Sent time.Duration `json:"sent_ns"`
	Took time.Duration `json:"took_ns"`
	// Closer is how many peers its answer named.
	Closer int    `json:"closer"`
	Err    string `json:"error,omitempty"`
	// Again: Peer was asked before in this lookup (kad-dht's follow-up
	// round asks the closest peers found once more).
	Again bool `json:"again,omitempty"`
}

// ClosestTraced is ClosestIterative recording its route: every peer the
// kad-dht lookup asked, in the order asked. It also returns the hop at
// which each returned peer was learned (0 for this node).
func (o *Overlay) ClosestTraced(ctx context.Context, key string, n int) ([]peer.ID, []Query, map[peer.ID]int, error) {
	qctx, stop := context.WithCancel(ctx)
	qctx, events := routing.RegisterForQueryEvents(qctx)
	// Read by the goroutine until events closes (after stop), then here.
	var queries []Query
	hop := map[peer.ID]int{o.ID(): 0} // peer → the hop it was learned at
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		at := map[peer.ID]int{}          // peer → its index in queries
		learned := map[peer.ID]peer.ID{} // peer → who named it first
		for ev := range events {
			switch ev.Type {
			case routing.SendingQuery:
				h, ok := hop[ev.ID]
				if !ok {
					h = 1 // from the routing table
					hop[ev.ID] = h
				}
				_, again := at[ev.ID]
				at[ev.ID] = len(queries)
				queries = append(queries, Query{Peer: ev.ID, From: learned[ev.ID], Hop: h, Sent: time.Since(start), Again: again})
			case routing.PeerResponse, routing.QueryError:
				i, ok := at[ev.ID]
				if !ok {
					break // a dial failure before the query was sent
				}
				q := &queries[i]
				q.Took = time.Since(start) - q.Sent
				q.Err = ev.Extra
				q.Closer = len(ev.Responses)
				for _, ai := range ev.Responses {
					if _, seen := hop[ai.ID]; !seen {
						hop[ai.ID] = q.Hop + 1
						learned[ai.ID] = ev.ID
					}
				}
			}
		}
	}()
	ps, err := o.ClosestIterative(qctx, key, n)
	stop()
	<-done
	return ps, queries, hop, err
}
