package sipnet

import (
	"bytes"
	"crypto/rand"
	"hash/maphash"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Stateless answering over UDP. A sipgo server transaction of a
// non-INVITE request outlives its final response by Timer J (64*T1, 32 s)
// over UDP, to absorb retransmissions: at thousands of REGISTERs a second
// that is over a hundred thousand transactions, each a graph of headers,
// timers and goroutine state the collector walks again and again (the
// register bench measured the heap growing to 850 MB). A method handled
// statelessly is taken off the UDP socket before sipgo parses it; its final
// response is sent at once and only its bytes are kept, for Timer J, in a
// cache the collector does not scan, to answer a retransmission (a
// byte-identical datagram from the same address, RFC 3261 §17.1.2.2) as
// the transaction would have. Over TCP and TLS (no retransmissions, Timer J
// is 0) the same handler runs inside sipgo's transaction.
const (
	replayWindow = 32       // seconds a final response answers retransmissions (Timer J)
	replayBudget = 64 << 20 // bytes of responses kept; beyond, the oldest go early
	// statelessMaxDatagram: bigger requests go to sipgo's transactions
	// (it bounds what the requests in hand hold: 8192 × 8 KB).
	statelessMaxDatagram = 8 << 10
)

// StatelessLimit is how many requests taken statelessly over UDP a stack
// holds at once (being answered, or waiting to be); beyond, datagrams are
// dropped (the UA retransmits). A shed hook's threshold (ShedStateless)
// must be below it to ever be reached.
const StatelessLimit = 8192

// StatelessHandler answers a request with its final response, or nil to
// send nothing. It must not keep req. admitted is true when the request
// came over UDP and its method's shed hook (ShedStateless) let it in on
// the reader: the hook is then the request's admission, and a handler
// that bounds its load the same way need not (and should not) refuse it
// again after it was parsed. Over TCP and TLS, and for a method without a
// hook, admitted is false.
type StatelessHandler func(req *sip.Request, admitted bool) *sip.Response

// stateless is a Stack's state for the methods answered statelessly.
type stateless struct {
	handlers    map[string]StatelessHandler // by method; written before Serve only
	shed        map[string]shedHook         // ShedStateless's, likewise
	shedNew     map[string]shedHook         // ShedNew's, likewise
	passed      *recentKeys                 // requests ShedNew's hooks let in (shednew.go)
	refused     *recentKeys                 // and those they refused
	tagKey      [32]byte                    // keys mintTag
	parser      *sip.Parser
	seed        maphash.Seed
	slots       chan struct{}
	idle        chan answerJob // unbuffered: taken only by a worker waiting for one (workers.go)
	replay      *replayCache
	bufs        sync.Pool // *[]byte: a UDP reader's copy of a cached response, or its 503 (shed.go)
	dropped     atomic.Int64
	replayed    atomic.Int64
	oversize    atomic.Int64
	shedded     atomic.Int64
	shedAcks    atomic.Int64
	workers     atomic.Int64 // workers started (workers.go)
	idleWorkers atomic.Int64 // workers waiting for a request
	backlogState
}

func newStateless() *stateless {
	st := &stateless{
		handlers: map[string]StatelessHandler{},
		shed:     map[string]shedHook{},
		shedNew:  map[string]shedHook{},
		passed:   newRecentKeys(),
		refused:  newRecentKeys(),
		parser:   sip.NewParser(),
		seed:     maphash.MakeSeed(),
		slots:    make(chan struct{}, StatelessLimit),
		idle:     make(chan answerJob),
		replay:   newReplayCache(replayWindow, replayBudget, time.Now()),
	}
	_, _ = rand.Read(st.tagKey[:]) // never fails (crypto/rand)
	return st
}

// key identifies a datagram from an address: a retransmission is the
// same bytes from the same place. The seed is the stack's own, so nobody
// outside can make two requests collide.
func (st *stateless) key(from *net.UDPAddr, data []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(st.seed)
	h.Write(from.IP.To16())
	h.WriteByte(byte(from.Port >> 8))
	h.WriteByte(byte(from.Port))
	h.Write(data)
	return h.Sum64()
}

// HandleStateless registers h for requests of method (e.g. REGISTER):
// over UDP without a server transaction (see stateless above), over TCP
// and TLS within one. It replaces a Handle of the same method. Before
// Serve, like Handle.
func (s *Stack) HandleStateless(method sip.RequestMethod, h StatelessHandler) {
	s.mustNotServe()
	s.stateless.handlers[string(method)] = h
	s.srv.OnRequest(method, s.tracked(func(req *sip.Request, tx sip.ServerTransaction) {
		if res := h(req, false); res != nil {
			_ = tx.Respond(res)
		}
	}))
}

// StatelessCounts are what happened to the requests taken statelessly
// over UDP, since the stack started.
type StatelessCounts struct {
	Replayed int64 // retransmissions answered from the cache
	Dropped  int64 // datagrams dropped because StatelessLimit requests were in hand
	Oversize int64 // responses not sent for their size
	Shed     int64 // requests answered 503 on the reader (ShedStateless, ShedNew)
	ShedAcks int64 // ACKs of ShedNew's 503s absorbed on the reader
}

// StatelessStats reports StatelessCounts.
func (s *Stack) StatelessStats() StatelessCounts {
	st := s.stateless
	return StatelessCounts{Replayed: st.replayed.Load(), Dropped: st.dropped.Load(), Oversize: st.oversize.Load(), Shed: st.shedded.Load(), ShedAcks: st.shedAcks.Load()}
}

// readFilter is sipgo's hook on every datagram and stream read: a request
// of a stateless method on the UDP listener is taken here (sipgo then
// skips it); everything else goes on to sipgo unchanged. It runs on the
// UDP readers' goroutines (udpReaders of them, at once) and never blocks
// or fails (an error would stop sipgo's reader). Two readers may hold a
// request and its retransmission at once: only the one whose claim
// succeeds answers it.
func (s *Stack) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	st := s.stateless
	if len(st.handlers) == 0 && len(st.shedNew) == 0 || p.Transport != "UDP" || p.LocalAddr != s.udp.LocalAddr() {
		return data, nil
	}
	method, _, ok := bytes.Cut(data[:min(len(data), 24)], []byte(" "))
	from, isUDP := p.RemoteAddr.(*net.UDPAddr)
	if !ok || !isUDP {
		return data, nil
	}
	h := st.handlers[string(method)]
	if h == nil {
		if s.shedNewRaw(string(method), data, from) {
			return nil, nil
		}
		return data, nil
	}
	if len(data) > statelessMaxDatagram {
		return data, nil
	}
	key := st.key(from, data)
	if s.replayed(key, from) || s.shedRaw(string(method), key, data, from) || !s.enter() {
		return nil, nil
	}
	select {
	case st.slots <- struct{}{}:
	default:
		s.handlers.Done()
		st.dropped.Add(1)
		return nil, nil
	}
	if !st.replay.claim(key) { // another reader took a copy meanwhile
		<-st.slots
		s.handlers.Done()
		return nil, nil
	}
	_, hooked := st.shed[string(method)] // shedRaw let it in
	s.dispatch(answerJob{h: h, admitted: hooked, key: key, data: bytes.Clone(data), from: from})
	return nil, nil
}

// replayed reports whether the request with key is one already seen:
// answered (the kept response is sent again) or being answered (that
// answer will do for both).
func (s *Stack) replayed(key uint64, from *net.UDPAddr) bool {
	st := s.stateless
	buf := st.buffer()
	defer st.bufs.Put(buf)
	var state replayState
	var port int
	*buf, port, state = st.replay.lookup(key, time.Now(), (*buf)[:0])
	if state == replayDone {
		st.replayed.Add(1)
		_, _ = s.udp.WriteTo(*buf, &net.UDPAddr{IP: from.IP, Port: port, Zone: from.Zone})
	}
	return state != replayNew
}

// buffer returns a reader's scratch buffer; Put it back in st.bufs.
func (st *stateless) buffer() *[]byte {
	if b, ok := st.bufs.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// answer parses j's datagram, runs its handler (admitted: a shed hook let
// it in) and sends the response (RFC 3261 §18.2.2, RFC 3581: to the
// source IP, at the source port with rport, else at the Via's), keeping
// its bytes for the retransmissions.
// A response more than three times the request (and over 1300 bytes) is
// not sent: over UDP it would make us an amplifier for a spoofed source
// (sipgo's transactions refused anything over 1300 bytes).
func (s *Stack) answer(j answerJob) {
	h, admitted, key, data, from := j.h, j.admitted, j.key, j.data, j.from
	st := s.stateless
	defer s.handlers.Done()
	defer func() { <-st.slots }()
	msg, err := st.parser.ParseSIP(data)
	req, isReq := msg.(*sip.Request)
	if err != nil || !isReq {
		st.replay.forget(key)
		s.log.Debug("unparsable datagram dropped", "from", from, "err", err)
		return
	}
	req.SetTransport("UDP")
	req.SetSource(from.String())
	to := responsePort(req, from.Port)
	res := h(req, admitted)
	if res == nil {
		st.replay.forget(key)
		return
	}
	var buf bytes.Buffer
	res.StringWrite(&buf)
	if buf.Len() > max(1300, 3*len(data)) {
		st.replay.forget(key)
		st.oversize.Add(1)
		// Debug, not Warn: a sender can cause this at will (StatelessStats
		// counts it).
		s.log.Debug("response too large for UDP not sent", "to", from, "bytes", buf.Len(), "request", len(data))
		return
	}
	// Kept before it is sent: a copy arriving just after the answer
	// (crossing it) must find it, not a request still pending.
	st.replay.done(key, buf.Bytes(), to, time.Now())
	if _, err := s.udp.WriteTo(buf.Bytes(), &net.UDPAddr{IP: from.IP, Port: to, Zone: from.Zone}); err != nil {
		st.replay.forget(key)
		s.log.Debug("stateless response", "to", from, "err", err)
	}
}

// responsePort is where a response to req goes at its source IP: the
// source port if the top Via asks for rport (RFC 3581), else the Via's
// sent-by port (RFC 3261 §18.2.2; 5060 by default).
func responsePort(req *sip.Request, source int) int {
	via := req.Via()
	if via == nil {
		return source
	}
	if _, ok := via.Params.Get("rport"); ok {
		return source
	}
	if via.Port > 0 {
		return via.Port
	}
	return 5060
}

// replayState is what the cache knows of a request.
type replayState int

const (
	replayNew     replayState = iota // never seen, or forgotten
	replayPending                    // its handler runs
	replayDone                       // answered: the response's bytes are kept
)

// replayChunk is the unit the cache holds responses in: a response is
// never split, so none bigger is kept.
const replayChunk = 64 << 10

// replayCache keeps final responses by request key for window seconds,
// in one bucket per second. Responses are appended into chunks of
// replayChunk bytes, at most budget/replayChunk of them allocated at once
// (in use or free), so the memory held is bounded by the budget however
// the sizes vary; the index holds no pointers, so the collector scans
// none of it. Requests being answered are kept apart (they are bounded by
// StatelessLimit) and never evicted. Safe for concurrent use.
type replayCache struct {
	mu        sync.Mutex
	window    uint32
	maxChunks int
	start     time.Time
	idx       map[uint64]replayLoc
	pend      map[uint64]struct{}
	buckets   []replayBucket // a ring: second g is buckets[g % len]
	newest    uint32         // the newest bucket's second
	held      int            // chunks allocated, in buckets or free
	free      [][]byte
}

// replayLoc places a response: its bucket's second, its chunk there and
// its bytes in it, and the port it was sent to (the source's IP, the
// port RFC 3261 §18.2.2 names).
type replayLoc struct {
	sec, off, n uint32
	chunk, port uint16
}

type replayBucket struct {
	sec    uint32
	chunks [][]byte
	keys   []uint64 // the keys placed here (an index entry moved on since is skipped)
}

func newReplayCache(window uint32, budget int, start time.Time) *replayCache {
	return &replayCache{window: window, maxChunks: max(budget/replayChunk, 1), start: start,
		idx: map[uint64]replayLoc{}, pend: map[uint64]struct{}{}, buckets: make([]replayBucket, window+1)}
}

// advance moves to now's second, dropping the buckets older than the
// window, and returns the newest bucket. Locked.
func (c *replayCache) advance(now time.Time) *replayBucket {
	sec := uint32(max(now.Sub(c.start), 0) / time.Second)
	if sec > c.newest {
		for g := max(c.newest+1, sec-min(sec, uint32(len(c.buckets)))); g <= sec; g++ {
			c.drop(&c.buckets[g%uint32(len(c.buckets))])
			c.buckets[g%uint32(len(c.buckets))].sec = g
		}
		c.newest = sec
	}
	return &c.buckets[c.newest%uint32(len(c.buckets))]
}

// drop empties b, forgetting the keys still placed in it; its chunks go
// to the free list, of which a quarter of the most allowed is kept (the
// rest is left to the collector). Locked.
func (c *replayCache) drop(b *replayBucket) {
	for _, k := range b.keys {
		if l, ok := c.idx[k]; ok && l.sec == b.sec {
			delete(c.idx, k)
		}
	}
	for _, ch := range b.chunks {
		if len(c.free) < c.maxChunks/4 {
			c.free = append(c.free, ch[:0])
		} else {
			c.held--
		}
	}
	b.chunks, b.keys = b.chunks[:0], b.keys[:0]
}

// room returns b's chunk with n bytes free, taking a free one, a new one
// within the budget or, beyond it, the oldest bucket's but b's; nil when
// b alone holds them all. Locked.
func (c *replayCache) room(b *replayBucket, n int) []byte {
	if k := len(b.chunks); k > 0 && cap(b.chunks[k-1])-len(b.chunks[k-1]) >= n {
		return b.chunks[k-1]
	}
	for g := c.newest - min(c.newest, c.window); len(c.free) == 0 && c.held >= c.maxChunks && g < c.newest; g++ {
		c.drop(&c.buckets[g%uint32(len(c.buckets))])
	}
	var ch []byte
	switch {
	case len(c.free) > 0:
		ch, c.free = c.free[len(c.free)-1], c.free[:len(c.free)-1]
	case c.held < c.maxChunks:
		ch = make([]byte, 0, replayChunk)
		c.held++
	default:
		return nil
	}
	b.chunks = append(b.chunks, ch)
	return ch
}

// lookup reports key's state and, when answered, appends its response to
// dst and returns the port it went to.
func (c *replayCache) lookup(key uint64, now time.Time, dst []byte) ([]byte, int, replayState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(now)
	if _, ok := c.pend[key]; ok {
		return dst, 0, replayPending
	}
	l, ok := c.idx[key]
	if !ok {
		return dst, 0, replayNew
	}
	ch := c.buckets[l.sec%uint32(len(c.buckets))].chunks[l.chunk]
	return append(dst, ch[l.off:l.off+l.n]...), int(l.port), replayDone
}

// claim marks key as being answered, unless it is already, or was
// answered (another reader holds a copy of the request, or held one
// since lookup): false then.
func (c *replayCache) claim(key uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pend[key]; ok {
		return false
	}
	if _, ok := c.idx[key]; ok {
		return false
	}
	c.pend[key] = struct{}{}
	return true
}

// done keeps key's response (a copy), sent to port. Over the budget the
// oldest seconds go first; when the newest second's responses alone fill
// it, or res exceeds a chunk, the response is not kept (a retransmission
// is then answered anew).
func (c *replayCache) done(key uint64, res []byte, port int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pend, key)
	b := c.advance(now)
	if len(res) == 0 || len(res) > replayChunk {
		return
	}
	ch := c.room(b, len(res))
	if ch == nil {
		return
	}
	k := len(b.chunks) - 1
	c.idx[key] = replayLoc{sec: b.sec, chunk: uint16(k), off: uint32(len(ch)), n: uint32(len(res)), port: uint16(port)}
	b.chunks[k] = append(ch, res...)
	b.keys = append(b.keys, key)
}

// forget drops key (its request was not answered).
func (c *replayCache) forget(key uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pend, key)
	delete(c.idx, key)
}
