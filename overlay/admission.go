package overlay

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Admission exchange (federation overlays): the initiator sends its member
// certificate chain; the responder answers status 0 and its own chain, or
// status 1 and the reason it refused. Both sides verify what they receive.
const (
	admitOK      = 0
	admitRefused = 1
	// refusalTTL: a refused peer is not asked again for this long.
	refusalTTL = time.Minute
	// maxAdmitted bounds the admission table (entries leave on disconnect).
	maxAdmitted  = 1 << 16
	admitTimeout = 5 * time.Second
)

type admitCall struct {
	done chan struct{}
	err  error
}

// admission gates every overlay protocol of a federation overlay on a
// verified member certificate.
type admission struct {
	o     *Overlay
	fed   *Federation
	proto protocol.ID
	msg   []byte // our chain, encoded

	mu       sync.Mutex
	until    map[peer.ID]time.Time // admitted until the certificate expires
	refused  map[peer.ID]refusal
	inflight map[peer.ID]*admitCall
}

type refusal struct {
	err   error
	until time.Time
}

func newAdmission(o *Overlay, fed *Federation) *admission {
	return &admission{o: o, fed: fed, proto: o.Protocol("admit", "1.0.0"), msg: encodeChain(fed.Chain),
		until: map[peer.ID]time.Time{}, refused: map[peer.ID]refusal{}, inflight: map[peer.ID]*admitCall{}}
}

func (a *admission) admitted(p peer.ID) bool {
	if p == a.o.host.ID() {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Now().Before(a.until[p])
}

// refusedNow reports whether p was refused within refusalTTL.
func (a *admission) refusedNow(p peer.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.refused[p]
	return ok && time.Now().Before(r.until)
}

func (a *admission) accept(p peer.ID, until time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.until) >= maxAdmitted {
		clear(a.until) // re-admitted on next use; bounded memory under churn
	}
	a.until[p] = until
	delete(a.refused, p)
}

// refuse records that p holds no valid member certificate and drops it
// from the membership view.
func (a *admission) refuse(p peer.ID, err error) {
	a.deny(p, err)
	a.o.members.forget(p)
	a.o.cfg.Logger.Info("refused a peer", "peer", p, "err", err)
}

// deny records that p refused us: asking again within refusalTTL returns
// its reason at once.
func (a *admission) deny(p peer.ID, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.refused) >= maxAdmitted {
		clear(a.refused)
	}
	a.refused[p] = refusal{err: err, until: time.Now().Add(refusalTTL)}
	delete(a.until, p)
}

// admit runs the exchange with p unless p is already admitted (or refused
// recently); concurrent callers share one exchange.
func (a *admission) admit(ctx context.Context, p peer.ID) error {
	if a.admitted(p) {
		return nil
	}
	a.mu.Lock()
	if r, ok := a.refused[p]; ok && time.Now().Before(r.until) {
		a.mu.Unlock()
		return r.err
	}
	c := a.inflight[p]
	if c == nil {
		c = &admitCall{done: make(chan struct{})}
		a.inflight[p] = c
		a.mu.Unlock()
		go func() {
			actx, cancel := context.WithTimeout(a.o.ctx, admitTimeout)
			c.err = a.exchange(actx, p)
			cancel()
			a.mu.Lock()
			delete(a.inflight, p)
			a.mu.Unlock()
			close(c.done)
		}()
	} else {
		a.mu.Unlock()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *admission) exchange(ctx context.Context, p peer.ID) error {
	s, err := a.o.host.NewStream(ctx, p, a.proto)
	if err != nil {
		if a.o.host.Network().Connectedness(p) == network.Connected {
			// Connected, yet it does not speak our admission protocol: not
			// a member of this federation.
			err = fmt.Errorf("%w: peer %s does not take part in federation admission: %v", ErrMembership, p, err)
			a.refuse(p, err)
			_ = a.o.host.Network().ClosePeer(p)
		}
		return err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := WriteFrame(s, a.msg); err != nil {
		s.Reset()
		return err
	}
	br := bufio.NewReader(s)
	b, err := ReadFrame(br, maxChain*maxChainBytes+16)
	if err != nil {
		s.Reset()
		return fmt.Errorf("overlay: admission with %s: %w", p, err)
	}
	if len(b) == 0 {
		return fmt.Errorf("overlay: admission with %s: empty reply", p)
	}
	if b[0] == admitRefused {
		err := fmt.Errorf("%w: peer %s refused this node: %s", ErrMembership, p, clip(b[1:], 300))
		a.deny(p, err)
		return err
	}
	chain, err := decodeChain(b[1:])
	var leaf *x509.Certificate
	if err == nil {
		leaf, err = a.fed.Verify(chain, p, a.o.cfg.Name, time.Now())
	}
	// The last word tells the peer whether we took it, and why not.
	if err == nil {
		if err = WriteFrame(s, []byte{admitOK}); err != nil {
			s.Reset()
			return err
		}
		a.accept(p, leaf.NotAfter)
		return nil
	}
	_ = WriteFrame(s, append([]byte{admitRefused}, err.Error()...))
	_ = s.CloseWrite()
	a.refuse(p, err)
	a.closeSoon(p)
	return err
}

func (a *admission) handle(s network.Stream) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	_ = s.SetDeadline(time.Now().Add(admitTimeout))
	b, err := ReadFrame(bufio.NewReader(s), maxChain*maxChainBytes)
	if err != nil {
		s.Reset()
		return
	}
	chain, err := decodeChain(b)
	var leaf *x509.Certificate
	if err == nil {
		leaf, err = a.fed.Verify(chain, p, a.o.cfg.Name, time.Now())
	}
	if err != nil {
		_ = WriteFrame(s, append([]byte{admitRefused}, err.Error()...))
		_ = s.CloseWrite()
		a.refuse(p, err)
		a.closeSoon(p)
		return
	}
	if err := WriteFrame(s, append([]byte{admitOK}, a.msg...)); err != nil {
		s.Reset()
		return
	}
	// Admitted once the initiator has accepted us too.
	last, err := ReadFrame(bufio.NewReader(s), 4096)
	switch {
	case err != nil || len(last) == 0:
		s.Reset()
	case last[0] == admitOK:
		a.accept(p, leaf.NotAfter)
	default:
		a.deny(p, fmt.Errorf("%w: peer %s refused this node: %s", ErrMembership, p, clip(last[1:], 300)))
	}
}

// closeSoon disconnects p after its refusal had time to reach it.
func (a *admission) closeSoon(p peer.ID) {
	go func() {
		t := time.NewTimer(200 * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-a.o.ctx.Done():
		}
		_ = a.o.host.Network().ClosePeer(p)
	}()
}

// wrap serves h only to admitted peers; an unknown peer is asked for its
// certificate first (it may have opened this stream before our exchange
// with it finished).
func (a *admission) wrap(h network.StreamHandler) network.StreamHandler {
	return func(s network.Stream) {
		p := s.Conn().RemotePeer()
		if !a.admitted(p) {
			ctx, cancel := context.WithTimeout(a.o.ctx, admitTimeout)
			err := a.admit(ctx, p)
			cancel()
			if err != nil {
				s.Reset()
				return
			}
		}
		h(s)
	}
}

// disconnected forgets p's admission when its last connection closes, so
// the table stays bounded by the connected peers.
func (a *admission) disconnected(p peer.ID) {
	if a.o.host.Network().Connectedness(p) == network.Connected {
		return
	}
	a.mu.Lock()
	delete(a.until, p)
	a.mu.Unlock()
}

// gatedHost is the host every overlay protocol sees: handlers serve only
// admitted peers and streams open only to admitted peers.
type gatedHost struct {
	host.Host
	a *admission
}

func (g gatedHost) SetStreamHandler(pid protocol.ID, h network.StreamHandler) {
	g.Host.SetStreamHandler(pid, g.a.wrap(h))
}

func (g gatedHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, h network.StreamHandler) {
	g.Host.SetStreamHandlerMatch(pid, m, g.a.wrap(h))
}

func (g gatedHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := g.a.admit(ctx, p); err != nil {
		return nil, err
	}
	return g.Host.NewStream(ctx, p, pids...)
}

func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
