package sipnet

import (
	"bytes"
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
	replayWindow   = 32       // seconds a final response answers retransmissions (Timer J)
	replayBudget   = 64 << 20 // bytes of responses kept; beyond, the oldest go early
	statelessLimit = 8192     // requests being answered at once; beyond, datagrams are dropped (the UA retransmits)
)

// StatelessHandler answers a request with its final response, or nil to
// send nothing. It must not keep req.
type StatelessHandler func(req *sip.Request) *sip.Response

// stateless is a Stack's state for the methods answered statelessly.
type stateless struct {
	handlers map[string]StatelessHandler // by method; written before Serve only
	parser   *sip.Parser
	seed     maphash.Seed
	slots    chan struct{}
	replay   *replayCache
	scratch  []byte // the UDP reader's copy of a cached response
	dropped  atomic.Int64
	replayed atomic.Int64
}

func newStateless() *stateless {
	return &stateless{
		handlers: map[string]StatelessHandler{},
		parser:   sip.NewParser(),
		seed:     maphash.MakeSeed(),
		slots:    make(chan struct{}, statelessLimit),
		replay:   newReplayCache(replayWindow, replayBudget, time.Now()),
	}
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
		if res := h(req); res != nil {
			_ = tx.Respond(res)
		}
	}))
}

// StatelessStats reports the retransmissions answered from the cache and
// the datagrams dropped because statelessLimit requests were in hand.
func (s *Stack) StatelessStats() (replayed, dropped int64) {
	return s.stateless.replayed.Load(), s.stateless.dropped.Load()
}

// readFilter is sipgo's hook on every datagram and stream read: a request
// of a stateless method on the UDP listener is taken here (sipgo then
// skips it); everything else goes on to sipgo unchanged. It runs on the
// UDP reader's goroutine and never blocks or fails (an error would stop
// sipgo's reader).
func (s *Stack) readFilter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	st := s.stateless
	if len(st.handlers) == 0 || p.Transport != "UDP" || p.LocalAddr != s.udp.LocalAddr() {
		return data, nil
	}
	method, _, ok := bytes.Cut(data[:min(len(data), 24)], []byte(" "))
	h := st.handlers[string(method)]
	from, isUDP := p.RemoteAddr.(*net.UDPAddr)
	if !ok || h == nil || !isUDP {
		return data, nil
	}
	key := st.key(from, data)
	now := time.Now()
	var state replayState
	if st.scratch, state = st.replay.lookup(key, now, st.scratch[:0]); state == replayDone {
		st.replayed.Add(1)
		_, _ = s.udp.WriteTo(st.scratch, from)
		return nil, nil
	} else if state == replayPending {
		return nil, nil // being answered: the answer will do for both
	}
	if !s.enter() {
		return nil, nil
	}
	select {
	case st.slots <- struct{}{}:
	default:
		s.handlers.Done()
		st.dropped.Add(1)
		return nil, nil
	}
	st.replay.pending(key, now)
	go s.answer(h, key, bytes.Clone(data), from)
	return nil, nil
}

// answer parses one datagram, runs its handler and sends the response to
// the address the request came from (as sipgo's transactions do, RFC 3581),
// keeping its bytes for the retransmissions.
func (s *Stack) answer(h StatelessHandler, key uint64, data []byte, from *net.UDPAddr) {
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
	res := h(req)
	if res == nil {
		st.replay.forget(key)
		return
	}
	var buf bytes.Buffer
	res.StringWrite(&buf)
	if _, err := s.udp.WriteTo(buf.Bytes(), from); err != nil {
		s.log.Debug("stateless response", "to", from, "err", err)
	}
	st.replay.done(key, buf.Bytes(), time.Now())
}

// replayState is what the cache knows of a request.
type replayState int

const (
	replayNew     replayState = iota // never seen, or forgotten
	replayPending                    // its handler runs
	replayDone                       // answered: the response's bytes are kept
)

// replayCache keeps final responses by request key for window seconds,
// in one bucket per second: a bucket's responses are appended to one byte
// slice and the index holds no pointers, so the collector scans none of
// it however many responses it holds. Safe for concurrent use.
type replayCache struct {
	mu      sync.Mutex
	window  uint32
	budget  int
	start   time.Time
	idx     map[uint64]replayLoc
	buckets []replayBucket // a ring: second g is buckets[g % len]
	newest  uint32         // the newest bucket's second
	bytes   int
}

// replayLoc places a response: its bucket's second and its bytes there;
// n == 0 is a request being answered.
type replayLoc struct{ sec, off, n uint32 }

type replayBucket struct {
	sec  uint32
	data []byte
	keys []uint64 // the keys placed here (an index entry moved on since is skipped)
}

func newReplayCache(window uint32, budget int, start time.Time) *replayCache {
	c := &replayCache{window: window, budget: budget, start: start, idx: map[uint64]replayLoc{},
		buckets: make([]replayBucket, window+1)}
	return c
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

// fit drops the oldest buckets but the newest until need more bytes fit
// in the budget, and reports whether they do. Locked.
func (c *replayCache) fit(need int) bool {
	for g := c.newest - min(c.newest, c.window); c.bytes+need > c.budget && g < c.newest; g++ {
		c.drop(&c.buckets[g%uint32(len(c.buckets))])
	}
	return c.bytes+need <= c.budget
}

// drop empties b, forgetting the keys still placed in it. Locked.
func (c *replayCache) drop(b *replayBucket) {
	for _, k := range b.keys {
		if l, ok := c.idx[k]; ok && l.sec == b.sec {
			delete(c.idx, k)
		}
	}
	c.bytes -= len(b.data)
	b.data, b.keys = b.data[:0], b.keys[:0]
}

// lookup reports key's state and, when answered, appends its response to
// dst.
func (c *replayCache) lookup(key uint64, now time.Time, dst []byte) ([]byte, replayState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance(now)
	l, ok := c.idx[key]
	switch {
	case !ok:
		return dst, replayNew
	case l.n == 0:
		return dst, replayPending
	}
	return append(dst, c.buckets[l.sec%uint32(len(c.buckets))].data[l.off:l.off+l.n]...), replayDone
}

// pending marks key as being answered.
func (c *replayCache) pending(key uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.advance(now)
	c.idx[key] = replayLoc{sec: b.sec}
	b.keys = append(b.keys, key)
}

// done keeps key's response (a copy), dropping the oldest responses to
// keep within the budget; when the newest second's alone fill it, the
// response is not kept (a retransmission is then answered anew).
func (c *replayCache) done(key uint64, res []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.advance(now)
	if len(res) == 0 || len(res) > c.budget || !c.fit(len(res)) {
		delete(c.idx, key)
		return
	}
	c.idx[key] = replayLoc{sec: b.sec, off: uint32(len(b.data)), n: uint32(len(res))}
	b.data = append(b.data, res...)
	b.keys = append(b.keys, key)
	c.bytes += len(res)
}

// forget drops key (its request was not answered).
func (c *replayCache) forget(key uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.idx, key)
}

// len is the number of requests the cache knows.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idx)
}
