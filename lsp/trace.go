package lsp

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Trace is one lookup as it happened: the replicas asked, in which round,
// over how many overlay hops, how long each took and what each returned.
// The dashboard draws it.
type Trace struct {
	AOR string `json:"aor"`
	// Key is the overlay key of the AOR (hex of its SHA-256 keyspace
	// position), Self the node that ran the lookup.
	Key  string         `json:"key"`
	Self overlay.PeerID `json:"self"`
	// Replicas (R) in effect and the answers the read waits for before
	// its straggler timer starts (R−W+1).
	Replicas int `json:"replicas"`
	Need     int `json:"need"`
	// Iterative: the replicas were found by kad-dht's iterative lookup
	// (Route), as a node with a stale membership view would, not read from
	// the view (one hop).
	Iterative bool            `json:"iterative"`
	Route     []overlay.Query `json:"route,omitempty"`
	Asked     []TraceReply    `json:"asked"`
	// Bindings is the lookup's result: the merge of the answers.
	Bindings []Binding     `json:"bindings"`
	Took     time.Duration `json:"took_ns"`
	Err      string        `json:"error,omitempty"`
}

// TraceReply is one replica asked during a lookup.
type TraceReply struct {
	Peer overlay.PeerID `json:"peer"`
	// Round: "closest" (the R closest in the view), "widened" (the next R,
	// asked when none held anything), "suspected" (members this node
	// suspects, asked when still none held anything), "iterative" (found
	// by the kad-dht lookup).
	Round string `json:"round"`
	// Hops to reach it: 0 for this node, 1 for a peer in the view,
	// more for one found through the iterative route.
	Hops int `json:"hops"`
	// CommonPrefix: bits its keyspace position shares with the AOR's key.
	CommonPrefix int           `json:"common_prefix"`
	Sent         time.Duration `json:"sent_ns"`
	Took         time.Duration `json:"took_ns"`
	// Status: "answered", "failed" or "not awaited" (the read finished
	// before its answer came).
	Status string `json:"status"`
	// Live are the contacts of the live bindings it returned, Removed the
	// tombstones, Stale the entries a newer one from another replica
	// replaced in the merge, Missing the merged winners it lacked.
	Live    []string `json:"live,omitempty"`
	Removed int      `json:"removed,omitempty"`
	Stale   int      `json:"stale,omitempty"`
	Missing int      `json:"missing,omitempty"`
	// Repaired: the read pushed what it missed back to it.
	Repaired bool   `json:"repaired,omitempty"`
	Forged   string `json:"forged,omitempty"`
	Err      string `json:"error,omitempty"`
}

// Trace looks aor up like Lookup and records how. With iterative, the
// replicas are found by kad-dht's iterative lookup instead of the view.
// A failed lookup still returns its trace, with Err set.
func (s *Service) Trace(ctx context.Context, aor string, iterative bool) (*Trace, error) {
	canon, k, err := recordOf(s.cfg.PrivateRecords, aor)
	if err != nil {
		return nil, err
	}
	name := k.nameOf(canon)
	key := overlay.KeyPosition(Key(name))
	tr := &tracer{start: time.Now(), key: key, k: k, at: map[overlay.PeerID]int{}, t: &Trace{
		AOR: canon, Key: hex.EncodeToString(key), Self: s.self, Iterative: iterative, Asked: []TraceReply{}, Bindings: []Binding{},
	}}
	merged, chains, err := s.fetchTraced(ctx, name, tr, nil)
	if err != nil {
		tr.t.Err = err.Error()
	} else {
		tr.t.Bindings = s.live(s.opened(k, merged, chains), chains)
		tr.settle(merged)
	}
	tr.t.Took = time.Since(tr.start)
	for i := range tr.t.Asked {
		if tr.t.Asked[i].Status == "" {
			tr.t.Asked[i].Status = "not awaited"
		}
	}
	return tr.t, nil
}

// tracer records a fetch; a nil tracer records nothing.
type tracer struct {
	start time.Time
	key   []byte // the AOR key's keyspace position
	t     *Trace
	k     *sealer                // opens a private record's bindings (nil: in clear)
	at    map[overlay.PeerID]int // index in t.Asked
	hops  map[overlay.PeerID]int // from the iterative route
	// answers by peer, to compare with the merge
	answers map[overlay.PeerID][]*entry
}

func (tr *tracer) iterative() bool { return tr != nil && tr.t.Iterative }

func (tr *tracer) quorum(r, need int) {
	if tr != nil {
		tr.t.Replicas, tr.t.Need = r, need
	}
}

// route records the iterative lookup that found the replicas.
func (tr *tracer) route(qs []overlay.Query, hops map[overlay.PeerID]int) {
	if tr == nil {
		return
	}
	tr.t.Route = append(tr.t.Route, qs...)
	if tr.hops == nil {
		tr.hops = map[overlay.PeerID]int{}
	}
	for p, h := range hops {
		if _, ok := tr.hops[p]; !ok {
			tr.hops[p] = h
		}
	}
}

func (tr *tracer) asked(p, self overlay.PeerID, round string) {
	if tr == nil {
		return
	}
	hops := 1
	if h, ok := tr.hops[p]; ok && round == "iterative" {
		hops = h
	}
	if p == self {
		hops = 0
	}
	tr.at[p] = len(tr.t.Asked)
	tr.t.Asked = append(tr.t.Asked, TraceReply{Peer: p, Round: round, Hops: hops,
		CommonPrefix: overlay.CommonPrefix(tr.key, p), Sent: time.Since(tr.start)})
}

func (tr *tracer) answered(res fetchResult) {
	if tr == nil {
		return
	}
	i, ok := tr.at[res.p]
	if !ok {
		return
	}
	a := &tr.t.Asked[i]
	a.Took = res.took
	if res.forged != nil {
		a.Forged = res.forged.Error()
	}
	if res.err != nil {
		a.Status, a.Err = "failed", res.err.Error()
		return
	}
	a.Status = "answered"
	now := time.Now()
	for _, e := range res.es {
		switch {
		case e.Removed:
			a.Removed++
		case e.B.Expires.After(now):
			contact := e.B.Contact
			if o, err := tr.k.open(e); err == nil {
				contact = o.B.Contact
			}
			a.Live = append(a.Live, contact)
		}
	}
	if tr.answers == nil {
		tr.answers = map[overlay.PeerID][]*entry{}
	}
	tr.answers[res.p] = res.es
}

func (tr *tracer) repaired(p overlay.PeerID) {
	if tr == nil {
		return
	}
	if i, ok := tr.at[p]; ok {
		tr.t.Asked[i].Repaired = true
	}
}

// settle compares each answer with the merge.
func (tr *tracer) settle(merged map[string]*entry) {
	now := time.Now()
	for p, es := range tr.answers {
		a := &tr.t.Asked[tr.at[p]]
		have := map[[32]byte]bool{}
		for _, e := range es {
			have[e.leaf] = true
			if w := merged[e.B.ID()]; w != nil && w.leaf != e.leaf {
				a.Stale++
			}
		}
		for _, e := range merged {
			if !have[e.leaf] && e.B.Expires.After(now) {
				a.Missing++
			}
		}
	}
}
