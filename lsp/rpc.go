package lsp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// streamIdle is how long a server keeps an idle request stream open.
const streamIdle = 2 * time.Minute

// rpc sends request frames over pooled streams: a stream carries one request
// at a time and goes back to the pool after its reply, so requests to a peer
// reuse streams instead of negotiating a new one each time.
type rpc struct {
	streams overlay.Streams
	maxMsg  int
	timeout time.Duration

	mu       sync.Mutex
	idle     map[poolKey][]*pooled
	busy     map[*pooled]struct{} // carrying a request: reset by close
	closed   bool
	inflight map[overlay.PeerID]chan struct{} // bounds requests in flight per peer
	perPeer  int                              // that bound (maxInflightPerPeer)
	// abortOnCancel: a cancelled call ends at once, not at its deadline
	// (the watches' rpc: a WATCH waits up to watchPoll). Others keep
	// their deadline alone, without a callback per request.
	abortOnCancel bool
	// frames holds request buffers (*[]byte) for reuse: a request is
	// written whole before its call returns, and the stream copies it.
	frames sync.Pool
}

// keptFrame: a stream's reply buffer is kept for the next reply up to
// this size, and so is a pooled frame buffer.
const keptFrame = 16 << 10

// takeFrame takes a frame buffer from pool (frames is one per rpc; the
// server's streams share their service's): a request being written, a
// reply or request being read.
func takeFrame(pool *sync.Pool) *[]byte {
	if buf, _ := pool.Get().(*[]byte); buf != nil {
		return buf
	}
	return new([]byte)
}

// putFrame gives buf back to pool once b, the frame built or read in it,
// is no longer used: with b's storage when b outgrew it within keptFrame.
func putFrame(pool *sync.Pool, buf *[]byte, b []byte) {
	if cap(b) > cap(*buf) && cap(b) <= keptFrame {
		*buf = b[:0]
	}
	pool.Put(buf)
}

// maxInflightPerPeer bounds the requests in flight to one peer. Beyond it a
// request waits (within its deadline): back-pressure instead of streams
// piling up until the resource manager refuses them or yamux tears the
// connection down.
const maxInflightPerPeer = 256

type poolKey struct {
	p     overlay.PeerID
	proto overlay.Protocol
}

type pooled struct {
	s overlay.Stream
	r *bufio.Reader
}

const maxIdlePerPeer = 32

func newRPC(streams overlay.Streams, maxMsg int, timeout time.Duration) *rpc {
	return &rpc{streams: streams, maxMsg: maxMsg, timeout: timeout, idle: map[poolKey][]*pooled{},
		busy: map[*pooled]struct{}{}, inflight: map[overlay.PeerID]chan struct{}{}, perPeer: maxInflightPerPeer}
}

// forWatches bounds its requests in flight per peer to n, and ends a
// cancelled one at once.
func (c *rpc) forWatches(n int) *rpc {
	c.perPeer, c.abortOnCancel = n, true
	return c
}

// errDial marks a failure to reach the peer at all.
var errDial = errors.New("lsp: cannot reach peer")

// call sends req to p and returns the decoded reply. A reply carrying an
// error status is returned as an error wrapping the matching sentinel.
func (c *rpc) call(ctx context.Context, p overlay.PeerID, proto overlay.Protocol, req *message) (*message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	buf := takeFrame(&c.frames)
	b := req.frameIn(*buf)
	defer putFrame(&c.frames, buf, b)
	if n, _ := binary.Uvarint(b); n > uint64(c.maxMsg) {
		return nil, fmt.Errorf("%w: request of %d bytes", ErrTooLarge, n)
	}
	c.mu.Lock()
	sem := c.inflight[p]
	if sem == nil {
		sem = make(chan struct{}, c.perPeer)
		c.inflight[p] = sem
	}
	c.mu.Unlock()
	select {
	case sem <- struct{}{}:
		defer func() { <-sem }()
	case <-ctx.Done():
		return nil, fmt.Errorf("lsp: %s: %d requests in flight: %w", p, c.perPeer, ctx.Err())
	}
	for attempt := 0; ; attempt++ {
		ps, reused, err := c.get(ctx, p, proto)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return nil, err
			}
			if ctx.Err() != nil { // slow, not unreachable: our deadline ran out
				return nil, fmt.Errorf("lsp: %s: open stream: %w", p, ctx.Err())
			}
			if c.streams.Connected(p) {
				// Connected, so reachable: a refused stream (resource limits
				// under load) must not get the peer suspected and its records
				// looked for on peers that do not hold them.
				return nil, fmt.Errorf("lsp: %s: open stream: %v", p, err)
			}
			return nil, fmt.Errorf("%w %s: %v", errDial, p, err)
		}
		reply, err := c.roundTrip(ctx, ps, b)
		if err != nil {
			c.drop(ps)
			if reused && attempt == 0 && ctx.Err() == nil {
				continue // the pooled stream went stale: once more on a fresh one
			}
			return nil, fmt.Errorf("lsp: %s: %w", p, err)
		}
		c.put(poolKey{p, proto}, ps)
		if reply.Type != msgReply {
			return nil, fmt.Errorf("%w: reply of type %d", ErrMalformed, reply.Type)
		}
		if reply.Status != statusOK {
			return reply, fmt.Errorf("%w: %s: %s", errOfStatus(reply.Status), p, reply.Error)
		}
		return reply, nil
	}
}

func (c *rpc) roundTrip(ctx context.Context, ps *pooled, req []byte) (*message, error) {
	dl, _ := ctx.Deadline()
	_ = ps.s.SetDeadline(dl)
	stop := func() bool { return true }
	if c.abortOnCancel {
		stop = context.AfterFunc(ctx, func() { _ = ps.s.SetDeadline(time.Now()) })
	}
	if _, err := ps.s.Write(req); err != nil {
		stop()
		return nil, err
	}
	buf := takeFrame(&c.frames) // decodeMessage copies what it keeps
	b, err := overlay.ReadFrameInto(ps.r, c.maxMsg, *buf)
	defer putFrame(&c.frames, buf, b)
	if !stop() {
		// Cancelled meanwhile: the stream's deadline may have passed, so
		// it is not put back in the pool.
		return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if err != nil {
		return nil, err
	}
	_ = ps.s.SetDeadline(time.Time{})
	return decodeMessage(b)
}

// get returns a stream to p for one request, pooled (reused) or new, and
// counts it busy until put or drop.
func (c *rpc) get(ctx context.Context, p overlay.PeerID, proto overlay.Protocol) (*pooled, bool, error) {
	k := poolKey{p, proto}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	if l := c.idle[k]; len(l) > 0 {
		ps := l[len(l)-1]
		c.idle[k] = l[:len(l)-1]
		c.busy[ps] = struct{}{}
		c.mu.Unlock()
		return ps, true, nil
	}
	c.mu.Unlock()
	// A NAT'd peer may be reachable only through a circuit relay until
	// hole punching upgrades the connection: requests are small enough
	// for a relay's limited connection, which the overlay's streams use.
	s, err := c.streams.NewStream(ctx, p, proto)
	if err != nil {
		return nil, false, err
	}
	ps := &pooled{s: s, r: bufio.NewReader(s)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		s.Reset()
		return nil, false, ErrClosed
	}
	c.busy[ps] = struct{}{}
	return ps, false, nil
}

// put returns a stream that carried its request to the pool.
func (c *rpc) put(k poolKey, ps *pooled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.busy, ps)
	switch {
	case c.closed:
		ps.s.Reset()
	case len(c.idle[k]) >= maxIdlePerPeer:
		ps.s.Close()
	default:
		c.idle[k] = append(c.idle[k], ps)
	}
}

// drop resets a stream that failed.
func (c *rpc) drop(ps *pooled) {
	c.mu.Lock()
	delete(c.busy, ps)
	c.mu.Unlock()
	ps.s.Reset()
}

// close resets every stream, pooled or carrying a request (whose call
// fails at once instead of running out its deadline); later calls get
// ErrClosed.
func (c *rpc) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, l := range c.idle {
		for _, ps := range l {
			ps.s.Reset()
		}
		delete(c.idle, k)
	}
	for ps := range c.busy {
		ps.s.Reset()
		delete(c.busy, ps)
	}
}

// serve runs a request loop on one stream: each request frame gets exactly
// one reply frame; a frame that does not decode gets an error reply and ends
// the stream.
func serve(ctx context.Context, s overlay.Stream, maxMsg int, frames *sync.Pool, handle func(context.Context, overlay.PeerID, *message) *message) {
	var out []byte // the replies' buffer, reused (the stream copies what it writes)
	defer s.Close()
	r := bufio.NewReader(s)
	from := s.Conn().RemotePeer()
	for ctx.Err() == nil {
		_ = s.SetReadDeadline(time.Now().Add(streamIdle))
		// A request is read into a pooled buffer once it starts to
		// arrive: an idle stream holds none (decodeMessage copies what it
		// keeps, so the buffer goes back as soon as it returns).
		if _, err := r.Peek(1); err != nil {
			return
		}
		buf := takeFrame(frames)
		b, err := overlay.ReadFrameInto(r, maxMsg, *buf)
		if err != nil {
			putFrame(frames, buf, nil)
			if errors.Is(err, overlay.ErrFrameTooLarge) {
				_ = overlay.WriteFrame(s, errorReply(fmt.Errorf("%w: %v", ErrTooLarge, err)).encode())
			}
			return
		}
		req, err := decodeMessage(b)
		putFrame(frames, buf, b)
		var reply *message
		if err != nil {
			reply = errorReply(err)
		} else if req.Type == msgWatch {
			reply = handle(context.WithValue(ctx, streamKey{}, s), from, req)
		} else {
			reply = handle(ctx, from, req)
		}
		_ = s.SetWriteDeadline(time.Now().Add(30 * time.Second))
		out = reply.frameIn(out)
		if _, err := s.Write(out); err != nil {
			s.Reset()
			return
		}
		if cap(out) > keptFrame {
			out = nil // a big reply's buffer is not held for the stream's life
		}
	}
}

func errorReply(err error) *message {
	text := err.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
	}
	return &message{Type: msgReply, Status: statusOf(err), Error: text}
}
