package sipnet

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Shedding new transactions on a UDP reader. A proxy's call costs it
// a dozen messages, each parsed on its own goroutine; past what the CPU
// can serve, those goroutines queue in front of the UDP readers too, the
// socket's receive buffer fills and the kernel drops datagrams: the ACKs,
// BYEs and responses of the calls in progress as much as new INVITEs. The
// call bench saw the proxy's socket drop tens of thousands of datagrams
// at 3 000 calls/s, and calls fail for an ACK lost. With ShedNew, a new
// request of the method is answered 503 on the reader, from its bytes,
// while the hook says busy; nothing else is: requests in a dialog and
// responses are what finishes the calls already taken. New is: no To tag,
// or a To tag without a Route (a dialog this proxy is in was
// record-routed, so its requests carry a Route; a To tag alone is no
// proof, and would let a flood of made-up ones past the shedding). A
// request whose To or Route the reader does not read (past
// maxRawHeaders lines, a quoted parameter in To) goes the usual way.
//
// Such a 503 is outside any transaction of sipgo's, so the ACK the client
// sends for it (RFC 3261 §17.1.1.3) would reach the handlers as an ACK of
// nothing. Its To tag (for a request without one) is minted from the
// Call-ID under the stack's secret key (mintTag), and an ACK carrying the
// tag its Call-ID mints is taken off the socket here (shedAck). A
// retransmission of a request the reader refused is refused again, with
// the same tag, busy or not (refused: the same request gets the same
// answer, RFC 3261 §8.2.7 — a UAC that sent it twice must not see a 503
// and then the call ring); a retransmission of a request the reader let
// in is never refused: it belongs to a transaction sipgo holds (passed).

// shedTagPrefix starts every tag mintTag makes, so an ACK is looked at
// only when its bytes hold it.
const shedTagPrefix = "ls503x"

// keysWindow is how long a request is known by its key (a request's
// retransmissions last Timer B, 64*T1 = 32 s, at most); keysLimit
// bounds the keys of one window (beyond, the older window goes early).
const (
	keysWindow = 32 * time.Second
	keysLimit  = 1 << 17
)

// backlogEvery is how often the kernel is asked for the socket's backlog.
const backlogEvery = time.Millisecond

// ShedNew gives requests of method that start a transaction of sipgo's
// (not HandleStateless's; INVITE in a proxy) a shed hook over UDP, asked
// of each new request (see above) that is not a retransmission of one
// the reader let in or refused: while busy returns d > 0, the request is
// answered 503 with Retry-After d (whole seconds, at least 1) on a UDP
// reader and counted in counts if it is set (or, when not in the form
// rawReject reads, dropped), and the ACK of that 503 is absorbed. Before
// Serve.
func (s *Stack) ShedNew(method sip.RequestMethod, busy func(ShedInfo) time.Duration, counts *StatusCounts) {
	s.mustNotServe()
	s.stateless.shedNew[string(method)] = shedHook{busy: busy, counts: counts}
}

// shedNewRaw is readFilter's for a method not answered statelessly: it
// reports whether data is done with (a new request answered 503, or
// dropped while busy when it is not in the form rawReject reads; an ACK
// of such a 503). Anything else is only noted (a request let in) and goes
// on to sipgo.
func (s *Stack) shedNewRaw(method string, data []byte, from *net.UDPAddr) bool {
	st := s.stateless
	if method == "ACK" {
		return s.shedAck(data)
	}
	hook, ok := st.shedNew[method]
	if !ok {
		return false
	}
	key := st.key(from, data)
	if st.passed.has(key) {
		return false
	}
	to, _, routed := rawHeaders(data)
	if to == nil {
		return false // not read here: the usual path
	}
	if _, tagged, ok := toTag(to); !ok || tagged && routed {
		return false // in a dialog (routed by a Route: a record-routed one), or a To not read here
	}
	d := time.Second
	if !st.refused.has(key) { // a retransmission of one refused is refused again
		if d = hook.busy(ShedInfo{Request: data, stack: s}); d <= 0 {
			st.passed.add(key, time.Now())
			return false
		}
		st.refused.add(key, time.Now())
	}
	s.refuse(hook, method, data, from, d)
	return true
}

// shedAck reports whether the ACK in data acknowledges a 503 of
// shedNewRaw's (its To tag is the one its Call-ID mints), and counts it.
func (s *Stack) shedAck(data []byte) bool {
	st := s.stateless
	if len(st.shedNew) == 0 || !bytes.Contains(data, []byte(shedTagPrefix)) {
		return false
	}
	to, callID, _ := rawHeaders(data)
	if to == nil || callID == nil {
		return false
	}
	tag, tagged, ok := toTag(to)
	if !ok || !tagged {
		return false
	}
	_, id, _ := bytes.Cut(callID, []byte(":"))
	var want [len(shedTagPrefix) + 16]byte
	if !bytes.Equal(tag, st.mintTag(want[:0], bytes.TrimSpace(id))) {
		return false
	}
	st.shedAcks.Add(1)
	return true
}

// rawHeaders finds the To and Call-ID lines (long or compact form; the
// first of each) in a request's header section, at most maxRawHeaders
// lines of it (nil for one not found), and reports whether a Route line
// is among those lines.
func rawHeaders(req []byte) (to, callID []byte, routed bool) {
	_, rest, _ := bytes.Cut(req, []byte("\n")) // the request line
	for n := 0; len(rest) > 0 && n < maxRawHeaders; n++ {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // the end of the header section
		}
		name, _, found := bytes.Cut(line, []byte(":"))
		if !found || len(name) == 0 || name[0] == ' ' || name[0] == '\t' {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		switch {
		case to == nil && headerIs(name, "to", "t"):
			to = line
		case callID == nil && headerIs(name, "call-id", "i"):
			callID = line
		case headerIs(name, "route", ""):
			routed = true
		}
	}
	return to, callID, routed
}

// mintTag appends the To tag of the stack's reader-made responses to a
// request of Call-ID id: shedTagPrefix and 16 hex digits of an HMAC-SHA256
// under the stack's own random key, so nobody outside can mint one for a
// Call-ID, whatever tags of other Call-IDs it has seen.
func (st *stateless) mintTag(dst, id []byte) []byte {
	m := hmac.New(sha256.New, st.tagKey[:])
	m.Write(id)
	var sum [sha256.Size]byte
	dst = append(dst, shedTagPrefix...)
	return hex.AppendEncode(dst, m.Sum(sum[:0])[:8])
}

// quickTag appends a To tag for a reader-made response no ACK follows:
// 16 hex digits of the Call-ID's hash under the stack's seed.
func (st *stateless) quickTag(dst, id []byte) []byte {
	var h maphash.Hash
	h.SetSeed(st.seed)
	h.Write(id)
	return strconv.AppendUint(dst, h.Sum64(), 16)
}

// backlog is ShedInfo.Backlog: the share of the UDP socket's receive
// buffer in use, asked of the kernel at most every backlogEvery.
func (s *Stack) backlog() float64 {
	st := s.stateless
	now := time.Now().UnixNano()
	if at := st.backlogAt.Load(); now-at < int64(backlogEvery) && at != 0 {
		return math.Float64frombits(st.backlogVal.Load())
	}
	st.backlogAt.Store(now)
	v := socketBacklog(s.udp)
	st.backlogVal.Store(math.Float64bits(v))
	return v
}

// recentKeys is a set of requests (by key: passed, those a reader let in,
// and refused, those it refused), each kept for
// keysWindow and up to twice that: two generations of keys, the older
// dropped when the newer is keysWindow old or holds keysLimit keys.
type recentKeys struct {
	mu       sync.Mutex
	cur, old map[uint64]struct{}
	since    time.Time
}

func newRecentKeys() *recentKeys {
	return &recentKeys{cur: map[uint64]struct{}{}, old: map[uint64]struct{}{}}
}

func (p *recentKeys) add(key uint64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.since.IsZero() {
		p.since = now
	}
	if now.Sub(p.since) >= keysWindow || len(p.cur) >= keysLimit {
		p.old, p.cur, p.since = p.cur, make(map[uint64]struct{}, len(p.cur)), now
	}
	p.cur[key] = struct{}{}
}

func (p *recentKeys) has(key uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, in := p.cur[key]
	if !in {
		_, in = p.old[key]
	}
	return in
}

// backlogState is what backlog keeps between asks.
type backlogState struct {
	backlogAt  atomic.Int64  // unix nanoseconds of the last ask
	backlogVal atomic.Uint64 // its answer, float64 bits
}
