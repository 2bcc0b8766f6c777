package lsp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/overlay"
)

// Service is a node's location service: replica store, coordinator of
// writes and reads, and server of both LSP stream protocols.
type Service struct {
	cfg      Config
	ov       *overlay.Overlay
	self     overlay.PeerID
	store    *store
	verifier *Verifier
	rpc      *rpc
	// watchRPC carries WATCHes (watch.go) on streams and slots of their
	// own, so long waits never hold what other requests need.
	watchRPC *rpc
	fetches  *fetchBatcher // the replica FETCHes of lookups (batch.go)
	watching watchLimit    // the WATCHes this replica serves
	watches  watchHub      // this node's watches of AORs, one per AOR
	clk      clock
	// holder: this node's holder proof for its credential (holder.go),
	// sent with what it writes to replicas, renewed before it expires.
	holder atomic.Pointer[holderProof]

	storeProto, clientProto overlay.Protocol

	// ctx ends on Close; every goroutine of the service is started by
	// spawn (or handleStream), counted in wg, and ends with ctx.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex
	serving map[overlay.Stream]struct{} // reset on Close

	regq      chan *regReq  // registrations waiting for a batch
	regSlots  chan struct{} // batches in flight
	vetq      chan *entry   // entries taken unchecked, for vetLoop (holder.go)
	bgChecked atomic.Int64  // entries vetLoop checked

	regBatches, regRequests atomic.Int64
	regDropped              atomic.Int64 // queued registrations whose caller left first

	limit *limiter // per remote peer, on both protocols
	// distrust: replicas caught serving forgeries, skipped for a while
	distrust distrustSet
	hints    hints // failed stores to retry
	// domains caches Domains' scan of the store for domainsTTL.
	domains atomic.Pointer[domainsScan]
	// ops: the latency of Publish, Lookup, Remove and Register (observe;
	// exported by RegisterMetrics).
	ops *prometheus.HistogramVec
}

// persisted is the datastore the replica store writes through to: none for
// an overlay whose own datastore is in memory (see store.ds).
func persisted(ov *overlay.Overlay) ds.Datastore {
	if !ov.Persistent() {
		return nil
	}
	return ov.Datastore()
}

// New starts the location service on cfg.Overlay: it loads the persisted
// replica store, registers the protocol handlers and starts the rebalancer.
func New(ctx context.Context, cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:  cfg,
		ov:   cfg.Overlay,
		self: cfg.Overlay.ID(),
		store: newStore(persisted(cfg.Overlay), quota{RecordEntries: cfg.MaxBindings, RecordBytes: cfg.MaxRecordBytes,
			SignerEntries: cfg.MaxDomainBindings, SignerBytes: cfg.MaxDomainBytes, Retain: cfg.MaxTTL}),
		verifier:    NewVerifier(cfg.TrustAnchors, cfg.MaxClockSkew, cfg.MaxTTL),
		rpc:         newRPC(cfg.Overlay, cfg.MaxMessage, cfg.RequestTimeout),
		watchRPC:    newRPC(cfg.Overlay, cfg.MaxMessage, cfg.RequestTimeout).forWatches(watchPerPeer),
		storeProto:  cfg.Overlay.Protocol("store", "1.0.0"),
		clientProto: cfg.Overlay.Protocol("client", "1.0.0"),
		serving:     map[overlay.Stream]struct{}{},
		regq:        make(chan *regReq, regQueue),
		limit:       newLimiter(cfg.PeerRate, cfg.PeerBurst),
		regSlots:    make(chan struct{}, regPipeline),
		vetq:        make(chan *entry, vetQueue),
		ops:         newOps(),
	}
	s.fetches = newFetchBatcher(s)
	s.store.check = func(e *entry, chain [][]byte) bool {
		_, err := s.verifier.verify(e, chain)
		return err == nil
	}
	if cfg.Credential != nil {
		if _, err := s.holderProof(); err != nil {
			return nil, err
		}
	}
	n, err := s.store.load(ctx, time.Now())
	if err != nil {
		return nil, fmt.Errorf("lsp: load store: %w", err)
	}
	if n > 0 {
		cfg.Logger.Info("replica store loaded", "records", n)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ov.SetStreamHandler(s.storeProto, func(st overlay.Stream) {
		s.handleStream(st, s.handleReplica)
	})
	s.ov.HandleClients(s.clientProto, func(st overlay.Stream) {
		s.handleStream(st, s.handleClient)
	})
	s.spawn(s.maintain)
	if cfg.BackgroundChecks > 0 {
		s.spawn(s.vetLoop)
	}
	if cfg.Credential != nil {
		s.spawn(s.batchLoop)
	}
	return s, nil
}

// Close stops the handlers and every goroutine of the service, and waits
// for them; it does not close the overlay.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.ov.RemoveStreamHandler(s.storeProto)
		s.ov.RemoveStreamHandler(s.clientProto)
		s.mu.Lock()
		s.cancel() // under mu: no spawn after it
		for st := range s.serving {
			st.Reset()
		}
		s.mu.Unlock()
		s.rpc.close()
		s.watchRPC.close()
		s.wg.Wait()
	})
	return nil
}

// spawn runs fn in a goroutine that Close waits for. Once the service is
// closing it runs nothing and returns false.
func (s *Service) spawn(fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// Holds reports how many live bindings of aor (canonical) this node's
// replica store holds, without asking any other node.
func (s *Service) Holds(aor string) int {
	n := 0
	name := sealerFor(s.cfg.PrivateRecords, aor).nameOf(aor)
	for _, e := range s.store.get(name, time.Now(), map[[32]byte][][]byte{}) {
		if !e.Removed {
			n++
		}
	}
	return n
}

// --- replica placement, shared by reads, writes and maintenance ---

// quorum returns the effective replica count and write quorum given how many
// live members the overlay has.
func (s *Service) quorum() (r, w int) {
	var n int
	if bits, _ := s.ov.Region(); bits > 0 {
		n = s.ov.Size() // a partial view holds its region alone
	} else {
		n = s.ov.MemberCount()
	}
	r = min(s.cfg.Replicas, n)
	return r, max(1, min(s.cfg.WriteQuorum, r))
}

// closest returns the R replicas of aor: the closest live members, less
// the ones this node distrusts (which the next closest replace).
func (s *Service) closest(aor string) []overlay.PeerID {
	r, _ := s.quorum()
	return s.trusted(s.ov.Closest(Key(aor), r+s.distrust.count()), r)
}

// trusted keeps the first n of ps that this node does not distrust (ps
// itself, on the hot path, when it distrusts no one).
func (s *Service) trusted(ps []overlay.PeerID, n int) []overlay.PeerID {
	if s.distrust.count() == 0 {
		return ps[:min(n, len(ps))]
	}
	out := ps[:0:0]
	for _, p := range ps {
		if len(out) < n && !s.distrust.has(p) {
			out = append(out, p)
		}
	}
	return out
}

// iterative finds the n peers closest to aor's key with kad-dht's
// iterative lookup, recording its route in tr (nil: not traced).
func (s *Service) iterative(ctx context.Context, aor string, n int, tr *tracer) ([]overlay.PeerID, error) {
	if tr == nil {
		return s.ov.ClosestIterative(ctx, Key(aor), n)
	}
	ps, qs, hops, err := s.ov.ClosestTraced(ctx, Key(aor), n)
	tr.route(qs, hops)
	return ps, err
}

// call sends m to replica p over the store protocol and returns its reply;
// a reply with an error status comes back with that error. This node's own
// replica answers in process. A peer that cannot be dialled is suspected.
func (s *Service) call(ctx context.Context, p overlay.PeerID, m *message) (*message, error) {
	if p == s.self {
		reply := s.handleReplica(ctx, p, m)
		if reply.Status != statusOK {
			return reply, fmt.Errorf("%w: %s", errOfStatus(reply.Status), reply.Error)
		}
		return reply, nil
	}
	reply, err := s.rpc.call(ctx, p, s.storeProto, m)
	if errors.Is(err, errDial) {
		s.ov.Suspect(p)
	}
	return reply, err
}
