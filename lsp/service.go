package lsp

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/lsnode/lsnode/overlay"
)

// Config configures a node's location service. Zero values take the defaults
// given per field.
type Config struct {
	// Overlay the service places and finds replicas in. Required.
	Overlay *overlay.Overlay
	// Credential signs this node's writes; nil for an overlay-only node.
	Credential *Credential
	// TrustAnchors verify every write's certificate chain. Required.
	TrustAnchors *x509.CertPool
	// Replicas (R) per AOR. Default 3.
	Replicas int
	// WriteQuorum (W) acknowledgements a write waits for. Default R/2+1.
	// Reads ask R−W+1 replicas' answers, so reads see every acknowledged write.
	WriteQuorum int
	// MaxClockSkew: how far in the future a timestamp may lie. Default 30s.
	MaxClockSkew time.Duration
	// MaxTTL bounds expiry beyond a binding's timestamp. Default 7 days.
	MaxTTL time.Duration
	// MaxMessage bounds one protocol message. Default 1 MiB.
	MaxMessage int
	// RequestTimeout bounds one request to one replica. Default 5s.
	RequestTimeout time.Duration
	// RebalanceDelay: how long after a membership change records are pushed
	// to their new closest peers. Default 1s.
	RebalanceDelay time.Duration
	// RebalanceInterval: periodic re-placement check. Default 1 min.
	RebalanceInterval time.Duration
	// GCInterval: how often expired entries are dropped. Default 1 min.
	GCInterval time.Duration
	// MaxBindings and MaxRecordBytes are the record quota of one AOR on a
	// replica (RELOAD's max-count and max-size): entries (tombstones
	// included) and encoded bytes. Defaults 64 and 256 KiB.
	MaxBindings, MaxRecordBytes int
	// MaxDomainBindings and MaxDomainBytes are the quota of one signing
	// domain on a replica, over all its AORs (RELOAD's per-user quota: a
	// domain cannot fill a replica with bindings of made-up users).
	// Defaults 1,000,000 and 512 MiB.
	MaxDomainBindings, MaxDomainBytes int
	// PeerRate and PeerBurst bound the requests one remote peer may send
	// on the LSP protocols (a token bucket per peer); beyond them it gets
	// ErrRateLimited. Defaults 20000/s and 20000.
	PeerRate  float64
	PeerBurst int
	// Logger; default slog.Default(). Tagged with component=lsp.
	Logger *slog.Logger
	// Observe, when set, is told of every Publish, Lookup, Remove and
	// Register: the operation's name, how long it took and its error.
	Observe func(op string, d time.Duration, err error)

	// fault, in tests, makes this replica misbehave: a non-nil reply
	// replaces the honest one.
	fault func(from peer.ID, m *message) *message
}

func (c *Config) setDefaults() error {
	if c.Overlay == nil {
		return errors.New("lsp: config: no overlay")
	}
	if c.TrustAnchors == nil {
		return errors.New("lsp: config: no trust anchors")
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.WriteQuorum <= 0 {
		c.WriteQuorum = c.Replicas/2 + 1
	}
	if c.WriteQuorum > c.Replicas {
		return fmt.Errorf("lsp: config: write quorum %d above replicas %d", c.WriteQuorum, c.Replicas)
	}
	if c.MaxClockSkew <= 0 {
		c.MaxClockSkew = 30 * time.Second
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = 7 * 24 * time.Hour
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.RebalanceDelay <= 0 {
		c.RebalanceDelay = time.Second
	}
	if c.RebalanceInterval <= 0 {
		c.RebalanceInterval = time.Minute
	}
	if c.GCInterval <= 0 {
		c.GCInterval = time.Minute
	}
	if c.MaxBindings <= 0 {
		c.MaxBindings = 64
	}
	if c.MaxRecordBytes <= 0 {
		c.MaxRecordBytes = 256 << 10
	}
	if c.MaxDomainBindings <= 0 {
		c.MaxDomainBindings = 1_000_000
	}
	if c.MaxDomainBytes <= 0 {
		c.MaxDomainBytes = 512 << 20
	}
	if c.PeerRate <= 0 {
		c.PeerRate = 20000
	}
	if c.PeerBurst <= 0 {
		c.PeerBurst = 20000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "lsp")
	return nil
}

// Service is a node's location service: replica store, coordinator of
// writes and reads, and server of both LSP stream protocols.
type Service struct {
	cfg      Config
	ov       *overlay.Overlay
	self     peer.ID
	store    *store
	verifier *Verifier
	rpc      *rpc
	clk      clock

	storeProto, clientProto protocol.ID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu      sync.Mutex
	serving map[network.Stream]struct{} // reset on Close

	regq     chan *regReq  // registrations waiting for a batch
	regSlots chan struct{} // batches in flight

	regBatches, regRequests atomic.Int64

	limit *limiter // per remote peer, on both protocols
	// distrust: replicas caught serving forgeries, skipped for a while
	distrust distrustSet
	hints    hints // failed stores to retry
	// domains caches Domains' scan of the store for domainsTTL.
	domains atomic.Pointer[domainsScan]
}

type domainsScan struct {
	at  time.Time
	all []DomainCount
}

// domainsTTL: Domains scans the store (under its read lock) at most this
// often, however many dashboards ask.
const domainsTTL = 5 * time.Second

// New starts the location service on cfg.Overlay: it loads the persisted
// replica store, registers the protocol handlers and starts the rebalancer.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:  cfg,
		ov:   cfg.Overlay,
		self: cfg.Overlay.ID(),
		store: newStore(cfg.Overlay.Datastore(), quota{RecordEntries: cfg.MaxBindings, RecordBytes: cfg.MaxRecordBytes,
			SignerEntries: cfg.MaxDomainBindings, SignerBytes: cfg.MaxDomainBytes, Retain: cfg.MaxTTL}),
		verifier:    NewVerifier(cfg.TrustAnchors, cfg.MaxClockSkew, cfg.MaxTTL),
		rpc:         newRPC(cfg.Overlay.Host(), cfg.MaxMessage, cfg.RequestTimeout),
		storeProto:  cfg.Overlay.Protocol("store", "1.0.0"),
		clientProto: cfg.Overlay.Protocol("client", "1.0.0"),
		serving:     map[network.Stream]struct{}{},
		regq:        make(chan *regReq, regQueue),
		limit:       newLimiter(cfg.PeerRate, cfg.PeerBurst),
		regSlots:    make(chan struct{}, regPipeline),
	}
	n, err := s.store.load(ctx, time.Now())
	if err != nil {
		return nil, fmt.Errorf("lsp: load store: %w", err)
	}
	if n > 0 {
		cfg.Logger.Info("replica store loaded", "records", n)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h := cfg.Overlay.Host()
	h.SetStreamHandler(s.storeProto, func(st network.Stream) {
		s.handleStream(st, s.handleReplica)
	})
	cfg.Overlay.HandleClients(s.clientProto, func(st network.Stream) {
		s.handleStream(st, s.handleClient)
	})
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.maintain() }()
	if cfg.Credential != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.batchLoop() }()
	}
	return s, nil
}

// Close stops the handlers and every goroutine of the service; it does not
// close the overlay.
func (s *Service) Close() error {
	s.once.Do(func() {
		h := s.ov.Host()
		h.RemoveStreamHandler(s.storeProto)
		h.RemoveStreamHandler(s.clientProto)
		s.cancel()
		s.mu.Lock()
		for st := range s.serving {
			st.Reset()
		}
		s.mu.Unlock()
		s.rpc.close()
		s.wg.Wait()
	})
	return nil
}

// Holds reports how many live bindings of aor (canonical) this node's
// replica store holds, without asking any other node.
func (s *Service) Holds(aor string) int {
	n := 0
	for _, e := range s.store.get(aor, time.Now(), map[[32]byte][][]byte{}) {
		if !e.Removed {
			n++
		}
	}
	return n
}

func (s *Service) handleStream(st network.Stream, h func(context.Context, peer.ID, *message) *message) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.wg.Add(1)
	s.serving[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.serving, st)
		s.mu.Unlock()
		s.wg.Done()
	}()
	serve(s.ctx, st, s.cfg.MaxMessage, func(ctx context.Context, from peer.ID, m *message) *message {
		if !s.limit.allow(from) {
			return errorReply(ErrRateLimited)
		}
		return h(ctx, from, m)
	})
}

// --- public API ---

// observe reports an operation to Config.Observe.
func (s *Service) observe(op string, start time.Time, err *error) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(op, time.Since(start), *err)
	}
}

// StoreStats returns what this replica holds: AORs, entries (tombstones
// included) and their encoded bytes.
func (s *Service) StoreStats() (records, entries int, bytes int64) {
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	for _, u := range s.store.signers {
		entries += u.n
		bytes += int64(u.bytes)
	}
	return len(s.store.recs), entries, bytes
}

// DomainCount is what a replica holds of one domain: AORs with a live
// binding and live bindings.
type DomainCount struct {
	Domain   string `json:"domain"`
	AORs     int    `json:"aors"`
	Bindings int    `json:"bindings"`
}

// Domains returns what this replica holds per domain, most bindings first,
// at most n domains (n ≤ 0: all). It reads the whole store, at most once
// per domainsTTL (the result may be that old): for a dashboard, not a hot
// path.
func (s *Service) Domains(n int) []DomainCount {
	now := time.Now()
	sc := s.domains.Load()
	if sc == nil || now.Sub(sc.at) >= domainsTTL {
		sc = &domainsScan{at: now, all: s.scanDomains(now)}
		s.domains.Store(sc)
	}
	out := sc.all
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return slices.Clone(out)
}

// DomainUsage is what one domain's signers hold on this replica (the
// signer quota's accounting): entries, tombstones included, and bytes.
type DomainUsage struct {
	Domain  string
	Entries int
	Bytes   int64
}

// DomainUsage returns the n domains holding the most entries on this
// replica (n ≤ 0: all), and the sum over the others. Cheap: the store
// keeps these counts as it goes.
func (s *Service) DomainUsage(n int) (top []DomainUsage, rest DomainUsage) {
	s.store.mu.RLock()
	for d, u := range s.store.signers {
		top = append(top, DomainUsage{Domain: d, Entries: u.n, Bytes: int64(u.bytes)})
	}
	s.store.mu.RUnlock()
	slices.SortFunc(top, func(a, b DomainUsage) int {
		if a.Entries != b.Entries {
			return b.Entries - a.Entries
		}
		return strings.Compare(a.Domain, b.Domain)
	})
	if n > 0 && len(top) > n {
		for _, u := range top[n:] {
			rest.Entries += u.Entries
			rest.Bytes += u.Bytes
		}
		top = top[:n]
	}
	return top, rest
}

func (s *Service) scanDomains(now time.Time) []DomainCount {
	by := map[string]*DomainCount{}
	s.store.mu.RLock()
	for aor, rec := range s.store.recs {
		live := 0
		for _, e := range rec.entries {
			if e.live(now) {
				live++
			}
		}
		if live == 0 {
			continue
		}
		d := Domain(aor)
		c := by[d]
		if c == nil {
			c = &DomainCount{Domain: d}
			by[d] = c
		}
		c.AORs++
		c.Bindings += live
	}
	s.store.mu.RUnlock()
	out := make([]DomainCount, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b DomainCount) int {
		if a.Bindings != b.Bindings {
			return b.Bindings - a.Bindings
		}
		return strings.Compare(a.Domain, b.Domain)
	})
	return out
}

// Publish implements LocationService.
func (s *Service) Publish(ctx context.Context, aor string, bindings ...Binding) (err error) {
	defer s.observe("publish", time.Now(), &err)
	es, err := prepare(s.cfg.Credential, &s.clk, aor, bindings)
	if err != nil {
		return err
	}
	s.verifier.signedHere(es)
	return s.put(ctx, es, chainsOf(s.cfg.Credential))
}

// Lookup implements LocationService.
func (s *Service) Lookup(ctx context.Context, aor string) (_ []Binding, err error) {
	defer s.observe("lookup", time.Now(), &err)
	canon, err := Canonical(aor)
	if err != nil {
		return nil, err
	}
	merged, chains, err := s.fetch(ctx, canon)
	if err != nil {
		return nil, err
	}
	return s.live(merged, chains), nil
}

// live returns the live bindings of a fetch's merge, each with its signer.
func (s *Service) live(merged map[string]*entry, chains map[[32]byte][][]byte) []Binding {
	return liveBindings(merged, func(e *entry) string {
		c, _ := s.verifier.chainFor(e.CertFP, chains[e.CertFP])
		return subjectName(c)
	}, time.Now())
}

// Remove implements LocationService.
func (s *Service) Remove(ctx context.Context, aor string, ids ...string) (err error) {
	defer s.observe("remove", time.Now(), &err)
	if s.cfg.Credential == nil {
		return ErrNoCredential
	}
	canon, err := Canonical(aor)
	if err != nil {
		return err
	}
	merged, _, err := s.fetch(ctx, canon)
	if err != nil {
		return err
	}
	current := make([]*entry, 0, len(merged))
	for _, e := range merged {
		current = append(current, e)
	}
	es, err := tombstones(s.cfg.Credential, &s.clk, canon, current, ids)
	if err != nil || len(es) == 0 {
		return err
	}
	s.verifier.signedHere(es)
	return s.put(ctx, es, chainsOf(s.cfg.Credential))
}

// --- coordinator ---

// quorum returns the effective replica count and write quorum given how many
// live members the overlay has.
func (s *Service) quorum() (r, w int) {
	r = min(s.cfg.Replicas, len(s.ov.Members()))
	return r, max(1, min(s.cfg.WriteQuorum, r))
}

// closest returns the R replicas of aor: the closest live members, less
// the ones this node distrusts (which the next closest replace).
func (s *Service) closest(aor string) []peer.ID {
	r, _ := s.quorum()
	return s.trusted(s.ov.Closest(Key(aor), r+s.distrust.count()), r)
}

// trusted keeps the first n of ps that this node does not distrust (ps
// itself, on the hot path, when it distrusts no one).
func (s *Service) trusted(ps []peer.ID, n int) []peer.ID {
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

type storeResult struct {
	p    peer.ID
	aors []string
	ans  answer
}

// put stores entries on the replicas of their AORs and returns after W acks
// per AOR, counted by vote: a replica's refusal is one vote, a lie (a
// refusal without proof) gets it distrusted and the next closest member
// takes its place. Stores still in flight finish in the background.
func (s *Service) put(ctx context.Context, es []*entry, chains map[[32]byte][][]byte) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	byAOR := map[string][]*entry{}
	for _, e := range es {
		byAOR[e.AOR] = append(byAOR[e.AOR], e)
	}
	r, w := s.quorum()
	votes := map[string]*tally{}
	for aor := range byAOR {
		votes[aor] = newTally(r, w)
	}
	results := make(chan storeResult, 16)
	inflight := 0
	send := func(targets map[peer.ID][]string) {
		for p, aors := range targets {
			var batch []*entry
			for _, a := range aors {
				batch = append(batch, byAOR[a]...)
				votes[a].sent(p)
			}
			inflight++
			s.wg.Add(1)
			go func(p peer.ID, aors []string, batch []*entry) {
				defer s.wg.Done()
				cctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
				defer cancel()
				ans := s.storeAnswer(cctx, p, batch, chains)
				if retryable(ans.claim) && s.ctx.Err() == nil {
					s.hints.add(p, batch, chains, time.Now())
				}
				results <- storeResult{p: p, aors: aors, ans: ans}
			}(p, aors, batch)
		}
	}
	plan := map[peer.ID][]string{}
	for aor := range byAOR {
		for _, p := range s.closest(aor) {
			plan[p] = append(plan[p], aor)
		}
	}
	send(plan)
	// The iterative fallback is for replicas that cannot be reached (left,
	// crashed, stale view). It is not for slow ones: under overload a DHT
	// walk per request only adds load.
	fellBack := false
	for {
		done := true
		for _, t := range votes {
			if t.done && t.err != nil {
				go drain(results, inflight)
				return t.err
			}
			done = done && t.done
		}
		if done {
			// Let the remaining stores finish without us.
			go drain(results, inflight)
			return nil
		}
		if inflight == 0 {
			extra := map[peer.ID][]string{}
			if !fellBack {
				fellBack = true
				for aor, t := range votes {
					if t.done || !t.unreachable {
						continue
					}
					ps, err := s.ov.ClosestIterative(ctx, Key(aor), s.cfg.Replicas*2)
					if err != nil {
						t.failure = err
						continue
					}
					need := w - t.acks
					for _, p := range ps {
						if need > 0 && !t.tried[p] {
							extra[p] = append(extra[p], aor)
							need--
						}
					}
				}
			}
			if len(extra) == 0 {
				for _, t := range votes {
					if !t.done {
						return t.fail()
					}
				}
			}
			send(extra)
			continue
		}
		select {
		case res := <-results:
			inflight--
			extra := map[peer.ID][]string{}
			for _, a := range res.aors {
				if _, sub, ok := s.vote(votes[a], res.p, a, byAOR[a], res.ans.about(a)); ok {
					extra[sub] = append(extra[sub], a)
				}
			}
			send(extra)
		case <-ctx.Done():
			go drain(results, inflight)
			return ctx.Err()
		}
	}
}

func drain(ch <-chan storeResult, n int) {
	for ; n > 0; n-- {
		<-ch
	}
}

// storeTo stores entries on p (locally when p is this node), in messages
// that fit the size limit.
func (s *Service) storeTo(ctx context.Context, p peer.ID, es []*entry, chains map[[32]byte][][]byte) error {
	return s.storeAnswer(ctx, p, es, chains).claim
}

// storeAnswer is storeTo returning p's answer: its refusal and the proof it
// sent with it.
func (s *Service) storeAnswer(ctx context.Context, p peer.ID, es []*entry, chains map[[32]byte][][]byte) answer {
	if p == s.self {
		reply := s.handleStore(ctx, p, &message{Type: msgStore, Entries: es, Certs: flatten(chains)})
		if reply.Status != statusOK {
			return answer{claim: fmt.Errorf("%w: %s", errOfStatus(reply.Status), reply.Error), remote: true,
				proof: reply.Entries, certs: reply.Certs}
		}
		return answer{}
	}
	for len(es) > 0 {
		n := min(len(es), 512)
		batch := es[:n]
		es = es[n:]
		need := map[[32]byte][][]byte{}
		for _, e := range batch {
			need[e.CertFP] = chains[e.CertFP]
		}
		reply, err := s.rpc.call(ctx, p, s.storeProto, &message{Type: msgStore, Entries: batch, Certs: flatten(need)})
		if err != nil {
			if errors.Is(err, errDial) {
				s.ov.Suspect(p)
			}
			a := answer{claim: err}
			if reply != nil {
				a.remote, a.proof, a.certs = true, reply.Entries, reply.Certs
			}
			return a
		}
	}
	return answer{}
}

// about returns the answer as it concerns aor: the proof entries of aor.
func (a answer) about(aor string) answer {
	out := a
	out.proof = nil
	for _, e := range a.proof {
		if e.AOR == aor {
			out.proof = append(out.proof, e)
		}
	}
	return out
}

// handleStore is the replica side of STORE: verify everything, merge it
// all or nothing. A write over the record quota is answered with the
// record (the proof the writer checks).
func (s *Service) handleStore(ctx context.Context, from peer.ID, m *message) *message {
	n, err := s.applyVerified(ctx, m.Entries, m.Certs)
	if err != nil {
		s.cfg.Logger.Info("store refused", "from", from, "err", err)
		reply := errorReply(err)
		var qe *quotaError
		if errors.As(err, &qe) && len(qe.proof) > 0 {
			chains := map[[32]byte][][]byte{}
			for _, e := range qe.proof {
				chains[e.CertFP] = s.store.chain(e.CertFP)
			}
			reply.Entries, reply.Certs = qe.proof, flatten(chains)
		}
		return reply
	}
	return &message{Type: msgReply, Count: uint64(n)}
}

// applyVerified verifies every entry (all or nothing) and merges them into
// the local store.
func (s *Service) applyVerified(ctx context.Context, es []*entry, certs [][]byte) (int, error) {
	chains, err := s.verifyAll(es, certs)
	if err != nil {
		return 0, err
	}
	return s.store.apply(ctx, es, chains, s.closest)
}

// verifyAll verifies every entry (all or nothing) and returns the verified
// chains by fingerprint.
func (s *Service) verifyAll(es []*entry, certs [][]byte) (map[[32]byte][][]byte, error) {
	chains := map[[32]byte][][]byte{}
	for _, e := range es {
		c, err := s.verifier.verify(e, certs)
		if err != nil {
			return nil, err
		}
		chains[e.CertFP] = c.ders
	}
	return chains, nil
}

type fetchResult struct {
	p      peer.ID
	es     []*entry
	chains map[[32]byte][][]byte
	err    error
	forged error // the first entry that failed verification as a forgery
	took   time.Duration
}

// Reads wait for every replica asked, but once R−W+1 answers are in, a
// straggler gets at most twice the time those took (and at least
// minStraggle): a liar that answers fast with stale data is outvoted by the
// honest replica's newer entries, and a slow or silent one costs little.
const minStraggle = 50 * time.Millisecond

// fetch asks aor's R replicas in parallel and needs R−W+1 answers (falling
// back to an iterative lookup when too few answer); it waits for the rest
// within a straggler bound (minStraggle), asks the next R members before it
// answers "nothing", verifies and merges every answer,
// distrusts a replica that served a forgery, and repairs replicas that
// answered with less than the merge.
func (s *Service) fetch(ctx context.Context, aor string) (map[string]*entry, map[[32]byte][][]byte, error) {
	return s.fetchTraced(ctx, aor, nil, nil)
}

// fetchTraced is fetch recording what it does in tr (nil: nothing) and
// counting in rounds (nil: not counted) the rounds it took: each round of
// replicas asked and each iterative lookup is one.
func (s *Service) fetchTraced(ctx context.Context, aor string, tr *tracer, rounds *int) (map[string]*entry, map[[32]byte][][]byte, error) {
	round := func() {
		if rounds != nil {
			*rounds++
		}
	}
	if s.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	r, w := s.quorum()
	need := max(1, r-w+1)
	tr.quorum(r, need)
	results := make(chan fetchResult, r+4)
	tried := map[peer.ID]bool{}
	inflight := 0
	ask := func(ps []peer.ID, name string) {
		counted := false
		for _, p := range ps {
			if tried[p] {
				continue
			}
			if !counted {
				counted = true
				round()
			}
			tried[p] = true
			inflight++
			tr.asked(p, s.self, name)
			// Every answer, this node's own included, is sent from a
			// goroutine: a round may ask more peers than results buffers
			// (the iterative one asks 2R), and this loop is its reader.
			s.wg.Add(1)
			go func(p peer.ID) {
				defer s.wg.Done()
				start := time.Now()
				var res fetchResult
				if p == s.self {
					res = s.fetchLocal(aor)
				} else {
					cctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
					res = s.fetchFrom(cctx, p, aor)
					cancel()
				}
				res.took = time.Since(start)
				results <- res
			}(p)
		}
	}
	if tr.iterative() {
		round()
		ps, err := s.iterative(ctx, aor, r, tr)
		if err != nil {
			return nil, nil, err
		}
		ask(s.trusted(ps, r), "iterative")
	} else {
		ask(s.closest(aor), "closest")
	}
	start := time.Now()
	var straggle <-chan time.Time
	merged := map[string]*entry{}
	chains := map[[32]byte][][]byte{}
	var answers []fetchResult
	var lastErr error
	fellBack, unreachable := false, false // see put
	// An empty answer is only trusted from every replica asked: a write
	// acknowledged while some replicas were down may sit on one replica
	// and a substitute until re-replication, and the two fastest answers
	// could both be from replicas that missed it (lsnode chaos found 1 such
	// "not found" in 290 under kill -9).
	widened, rechecked := false, false
wait:
	for {
		if inflight == 0 {
			// Nothing found: under churn a write may sit on substitutes
			// (the next closest) that this node's view does not count
			// among the R, so ask the next R members before saying "none".
			if len(merged) == 0 && !widened {
				widened = true
				ask(s.trusted(s.ov.Closest(Key(aor), 2*r+s.distrust.count()), 2*r), "widened")
				if inflight > 0 {
					continue
				}
			}
			// Still nothing: the members this node suspects (a dial to
			// them failed a moment ago) are left out of Closest for
			// FailAfter, yet a replica killed and restarted is back long
			// before that, holding what it held. Ask the nearest of them
			// before saying "none" (lsnode chaos saw 2 in 1398 lookups
			// answer "none" while the holders were suspected).
			if len(merged) == 0 && !rechecked {
				rechecked = true
				ask(s.trusted(s.ov.Suspected(Key(aor), r+s.distrust.count()), r), "suspected")
				if inflight > 0 {
					continue
				}
			}
			if len(answers) >= need || fellBack || !unreachable {
				break
			}
			fellBack = true
			round()
			ps, err := s.iterative(ctx, aor, s.cfg.Replicas*2, tr)
			if err != nil {
				lastErr = err
				break
			}
			ask(s.trusted(ps, len(ps)), "iterative")
			if inflight == 0 {
				break
			}
		}
		if straggle == nil && len(answers) >= need && len(merged) > 0 {
			t := time.NewTimer(min(max(minStraggle, 2*time.Since(start)), s.cfg.RequestTimeout))
			defer t.Stop()
			straggle = t.C
		}
		select {
		case res := <-results:
			inflight--
			tr.answered(res)
			if res.forged != nil {
				s.distrust.add(res.p, res.forged, s.cfg.Logger)
			}
			if res.err != nil {
				lastErr = res.err
				unreachable = unreachable || errors.Is(res.err, errDial)
				continue
			}
			answers = append(answers, res)
			merge(merged, res.es)
			for fp, c := range res.chains {
				chains[fp] = c
			}
		case <-straggle:
			break wait
		case <-ctx.Done():
			go drainFetch(results, inflight)
			return nil, nil, ctx.Err()
		}
	}
	go drainFetch(results, inflight)
	if len(answers) == 0 {
		return nil, nil, fmt.Errorf("%w: no replica of %q answered: %v", ErrUnavailable, aor, lastErr)
	}
	s.repair(answers, merged, chains, tr)
	return merged, chains, nil
}

// iterative finds the n peers closest to aor's key with kad-dht's
// iterative lookup, recording its route in tr.
func (s *Service) iterative(ctx context.Context, aor string, n int, tr *tracer) ([]peer.ID, error) {
	if tr == nil {
		return s.ov.ClosestIterative(ctx, Key(aor), n)
	}
	ps, qs, hops, err := s.ov.ClosestTraced(ctx, Key(aor), n)
	tr.route(qs, hops)
	return ps, err
}

func drainFetch(ch <-chan fetchResult, n int) {
	for ; n > 0; n-- {
		<-ch
	}
}

// fetchLocal reads aor from this node's own store, verifying entries like a
// remote answer (cheap: chains and roots are cached), so a corrupted or
// tampered local store cannot hand out what a signature does not cover.
func (s *Service) fetchLocal(aor string) fetchResult {
	held := map[[32]byte][][]byte{}
	res := fetchResult{p: s.self, chains: map[[32]byte][][]byte{}}
	for _, e := range s.store.get(aor, time.Now(), held) {
		c, err := s.verifier.verify(e, held[e.CertFP])
		if err != nil {
			s.cfg.Logger.Warn("local store holds an entry that fails verification", "aor", aor, "err", err)
			continue
		}
		res.es = append(res.es, e)
		res.chains[e.CertFP] = c.ders
	}
	return res
}

// fetchFrom asks p for aor and keeps only the entries that verify.
func (s *Service) fetchFrom(ctx context.Context, p peer.ID, aor string) fetchResult {
	reply, err := s.rpc.call(ctx, p, s.storeProto, &message{Type: msgFetch, AORs: []string{aor}})
	if err != nil {
		if errors.Is(err, errDial) {
			s.ov.Suspect(p)
		}
		return fetchResult{p: p, err: err}
	}
	res := fetchResult{p: p, chains: map[[32]byte][][]byte{}}
	for _, e := range reply.Entries {
		if e.AOR != aor {
			continue
		}
		c, err := s.verifier.verify(e, reply.Certs)
		if err != nil {
			if errors.Is(err, errForged) && res.forged == nil {
				res.forged = err
			}
			s.cfg.Logger.Debug("replica answered with an entry that fails verification", "peer", p, "aor", aor, "err", err)
			continue
		}
		res.es = append(res.es, e)
		res.chains[e.CertFP] = c.ders
	}
	return res
}

// repair pushes the merged winners to replicas whose answer lacked them.
func (s *Service) repair(answers []fetchResult, merged map[string]*entry, chains map[[32]byte][][]byte, tr *tracer) {
	now := time.Now()
	for _, a := range answers {
		have := map[[32]byte]bool{}
		for _, e := range a.es {
			have[e.leaf] = true
		}
		var missing []*entry
		for _, e := range merged {
			if !have[e.leaf] && e.B.Expires.After(now) {
				missing = append(missing, e)
			}
		}
		if len(missing) == 0 {
			continue
		}
		tr.repaired(a.p)
		s.wg.Add(1)
		go func(p peer.ID) {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
			defer cancel()
			if err := s.storeTo(ctx, p, missing, chains); err != nil {
				s.cfg.Logger.Debug("read repair failed", "peer", p, "err", err)
			}
		}(a.p)
	}
}

// --- protocol handlers ---

func (s *Service) handleReplica(ctx context.Context, from peer.ID, m *message) *message {
	if s.cfg.fault != nil {
		if r := s.cfg.fault(from, m); r != nil {
			return r
		}
	}
	switch m.Type {
	case msgStore:
		return s.handleStore(ctx, from, m)
	case msgRegister:
		return s.handleRegister(ctx, m)
	case msgFetch:
		reply := &message{Type: msgReply}
		chains := map[[32]byte][][]byte{}
		now := time.Now()
		for _, aor := range m.AORs {
			canon, err := Canonical(aor)
			if err != nil || canon != aor {
				return errorReply(fmt.Errorf("%w: AOR %q is not canonical", ErrMalformed, aor))
			}
			reply.Entries = append(reply.Entries, s.store.get(aor, now, chains)...)
		}
		reply.Certs = flatten(chains)
		return reply
	}
	return errorReply(fmt.Errorf("%w: message type %d on the replica protocol", ErrMalformed, m.Type))
}

func (s *Service) handleClient(ctx context.Context, from peer.ID, m *message) *message {
	switch m.Type {
	case msgPut:
		if len(m.Entries) == 0 {
			return errorReply(fmt.Errorf("%w: PUT without entries", ErrMalformed))
		}
		// A PUT is written to R replicas per AOR: one token per AOR (the
		// request's own paid for the first).
		aors := map[string]bool{}
		for _, e := range m.Entries {
			aors[e.AOR] = true
		}
		if len(aors) > maxGetAORs {
			return errorReply(fmt.Errorf("%w: %d AORs in one PUT (at most %d)", ErrTooLarge, len(aors), maxGetAORs))
		}
		if !s.limit.allowN(from, len(aors)-1) {
			return errorReply(ErrRateLimited)
		}
		chains, err := s.verifyAll(m.Entries, m.Certs)
		if err != nil {
			return errorReply(err)
		}
		if err := s.put(ctx, m.Entries, chains); err != nil {
			return errorReply(err)
		}
		return &message{Type: msgReply, Count: uint64(len(m.Entries))}
	case msgGet:
		// Each AOR is a read of R replicas, maybe more rounds: it is
		// charged to the peer as it is done, one token per round (the
		// request's own token paid for the first AOR's first round), and
		// a GET holds at most maxGetAORs.
		if len(m.AORs) > maxGetAORs {
			return errorReply(fmt.Errorf("%w: %d AORs in one GET (at most %d)", ErrTooLarge, len(m.AORs), maxGetAORs))
		}
		reply := &message{Type: msgReply}
		chains := map[[32]byte][][]byte{}
		for i, aor := range m.AORs {
			canon, err := Canonical(aor)
			if err != nil {
				return errorReply(err)
			}
			if i > 0 && !s.limit.allowN(from, 1) {
				return errorReply(ErrRateLimited)
			}
			rounds := 0
			merged, cs, err := s.fetchTraced(ctx, canon, nil, &rounds)
			s.limit.charge(from, rounds-1)
			if err != nil {
				return errorReply(err)
			}
			for _, e := range merged {
				reply.Entries = append(reply.Entries, e)
				chains[e.CertFP] = cs[e.CertFP]
			}
		}
		reply.Certs = flatten(chains)
		return reply
	case msgInfo:
		// The size in Count; "key value" facts about this node in AORs
		// (older clients read only Count).
		reply := &message{Type: msgReply, Count: uint64(s.ov.Size()),
			AORs: []string{"reachability " + strings.ToLower(s.ov.Reachability().String())}}
		for _, a := range s.ov.RelayedAddrs() {
			if len(reply.AORs) < maxAORs {
				reply.AORs = append(reply.AORs, "relayed "+a.String())
			}
		}
		return reply
	case msgRelays:
		reply := &message{Type: msgReply}
		for id, svcs := range s.ov.Services() {
			for _, sv := range svcs {
				if (strings.HasPrefix(sv, "turn:") || strings.HasPrefix(sv, "turns:")) && len(reply.AORs) < maxAORs {
					reply.AORs = append(reply.AORs, id.String()+" "+sv)
				}
			}
		}
		slices.Sort(reply.AORs)
		return reply
	}
	return errorReply(fmt.Errorf("%w: message type %d on the client protocol", ErrMalformed, m.Type))
}

// --- maintenance: re-replication and GC ---

func (s *Service) maintain() {
	changes, unsub := s.ov.Changes()
	defer unsub()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	tick := time.NewTicker(s.cfg.RebalanceInterval)
	defer tick.Stop()
	gc := time.NewTicker(s.cfg.GCInterval)
	defer gc.Stop()
	handoff := time.NewTicker(max(s.cfg.RebalanceDelay, time.Second))
	defer handoff.Stop()
	for {
		select {
		case <-s.ctx.Done():
			debounce.Stop()
			return
		case <-changes:
			debounce.Reset(s.cfg.RebalanceDelay)
		case <-debounce.C:
			s.rebalance(s.ctx)
		case <-tick.C:
			s.rebalance(s.ctx)
		case <-handoff.C:
			if s.hints.len() > 0 {
				s.retryHints(s.ctx)
			}
		case <-gc.C:
			if n, err := s.store.gc(s.ctx, time.Now()); err != nil {
				s.cfg.Logger.Warn("gc", "err", err)
			} else if n > 0 {
				s.cfg.Logger.Debug("gc dropped expired entries", "n", n)
			}
		}
	}
}

// rebalance pushes records to peers that joined their closest set since they
// were placed (a join, or a replica that left or crashed being replaced).
func (s *Service) rebalance(ctx context.Context) {
	work := s.store.replan(s.self, time.Now(), s.closest)
	if len(work) == 0 {
		return
	}
	perPeer := map[peer.ID][]*entry{}
	for _, w := range work {
		for _, p := range w.targets {
			perPeer[p] = append(perPeer[p], w.entries...)
		}
	}
	failed := map[peer.ID]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p, es := range perPeer {
		chains := map[[32]byte][][]byte{}
		for _, e := range es {
			if _, ok := chains[e.CertFP]; !ok {
				chains[e.CertFP] = s.store.chain(e.CertFP)
			}
		}
		wg.Add(1)
		go func(p peer.ID, es []*entry) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 4*s.cfg.RequestTimeout)
			defer cancel()
			if err := s.storeTo(cctx, p, es, chains); err != nil {
				mu.Lock()
				failed[p] = true
				mu.Unlock()
				s.cfg.Logger.Debug("re-replication failed", "peer", p, "err", err)
			}
		}(p, es)
	}
	wg.Wait()
	pushed := 0
	for _, w := range work {
		set := make([]peer.ID, 0, len(w.set))
		for _, p := range w.set {
			if !failed[p] {
				set = append(set, p)
			}
		}
		s.store.setPlaced(w.aor, set)
		pushed += len(w.targets)
	}
	s.cfg.Logger.Debug("rebalanced", "records", len(work), "pushes", pushed, "failed", len(failed))
}
