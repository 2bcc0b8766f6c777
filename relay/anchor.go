package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lsnode/lsnode/overlay"
)

// Anchor is what a proxy needs from a media relay, in this process or on
// another node of the overlay.
type Anchor interface {
	// Offer records where the caller receives media (from its SDP) and
	// returns where the callee must send: the relay's address for the offer.
	Offer(ctx context.Context, callID string, ip net.IP, port int) (string, int, error)
	// Answer records where the callee receives media and returns where the
	// caller must send: the relay's address for the answer.
	Answer(ctx context.Context, callID string, ip net.IP, port int) (string, int, error)
	// Has reports whether the call is anchored here.
	Has(callID string) bool
	// End releases the call's session.
	End(callID string)
}

var _ Anchor = (*Media)(nil)

// Offer implements Anchor for this node's proxy: a NAT'd caller's private
// address is latched, never sent to; another address the peer policy
// refuses is an error (ErrTarget) and opens no session.
func (m *Media) Offer(_ context.Context, callID string, ip net.IP, port int) (string, int, error) {
	return m.offer(sessionKey{id: callID}, ip, port, false)
}

// Answer implements Anchor for this node's proxy.
func (m *Media) Answer(_ context.Context, callID string, ip net.IP, port int) (string, int, error) {
	return m.answer(sessionKey{id: callID}, ip, port, false)
}

// MediaService is what a node with a media relay announces in the overlay.
const MediaService = "rtp-relay"

// MediaEndpoint is what a media relay announces besides MediaService: the
// address and port range its sessions use, "rtp-relay:IP:LOW-HIGH" (IPv6
// in brackets). A proxy seeing an offer already at one does not anchor it
// again (AtRelay).
func MediaEndpoint(ip net.IP, lo, hi int) string {
	return fmt.Sprintf("%s:%s", MediaService, net.JoinHostPort(ip.String(), fmt.Sprintf("%d-%d", lo, hi)))
}

// ParseMediaEndpoint reads a MediaEndpoint; ok is false for any other
// service string.
func ParseMediaEndpoint(s string) (ip net.IP, lo, hi int, ok bool) {
	rest, found := strings.CutPrefix(s, MediaService+":")
	if !found {
		return nil, 0, 0, false
	}
	host, ports, err := net.SplitHostPort(rest)
	if err != nil {
		return nil, 0, 0, false
	}
	if ip = net.ParseIP(host); ip == nil {
		return nil, 0, 0, false
	}
	if _, err := fmt.Sscanf(ports, "%d-%d", &lo, &hi); err != nil || lo < 1 || hi > 65535 || lo > hi ||
		ports != fmt.Sprintf("%d-%d", lo, hi) {
		return nil, 0, 0, false
	}
	return ip, lo, hi, true
}

// AtRelay reports whether ip:port lies in a media relay endpoint that one
// of services (an overlay's announced services by member) announces.
func AtRelay(services map[overlay.PeerID][]string, ip net.IP, port int) bool {
	for _, svcs := range services {
		if slices.ContainsFunc(svcs, func(s string) bool { return InEndpoint(s, ip, port) }) {
			return true
		}
	}
	return false
}

// InEndpoint reports whether service s is a MediaEndpoint holding ip:port.
func InEndpoint(s string, ip net.IP, port int) bool {
	rip, lo, hi, ok := ParseMediaEndpoint(s)
	return ok && rip.Equal(ip) && port >= lo && port <= hi
}

// Control protocol: one request and one reply per stream, varint-framed
// protobuf: request {1: op (1 offer, 2 answer, 3 end), 2: call-id, 3: ip,
// 4: port}; reply {1: ip, 2: port, 3: error}.
const (
	opOffer = iota + 1
	opAnswer
	opEnd
	maxControlFrame = 1024
)

// ServeControl lets overlay members anchor calls on m over proto; it
// returns a function that stops serving. Each member owns the sessions it
// opens (by call ID, apart from everyone else's): it may only answer,
// update or end those, holds at most MaxPerPeer, and its media addresses
// must pass the peer policy (Restricted, Allow) outright: a refused one
// gets an error reply and opens nothing.
func ServeControl(ov *overlay.Overlay, proto overlay.Protocol, m *Media) func() {
	ov.SetStreamHandler(proto, func(s overlay.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := overlay.ReadFrame(bufio.NewReader(s), maxControlFrame)
		if err != nil {
			s.Reset()
			return
		}
		from := s.Conn().RemotePeer()
		op, callID, ip, port, err := decodeControl(b)
		reply := func(ip string, port int, err error) {
			var out []byte
			if err != nil {
				out = protowire.AppendTag(out, 3, protowire.BytesType)
				out = protowire.AppendString(out, err.Error())
			} else {
				out = protowire.AppendTag(out, 1, protowire.BytesType)
				out = protowire.AppendString(out, ip)
				out = protowire.AppendTag(out, 2, protowire.VarintType)
				out = protowire.AppendVarint(out, uint64(port))
			}
			_ = overlay.WriteFrame(s, out)
		}
		if err != nil {
			reply("", 0, err)
			return
		}
		k := sessionKey{owner: from.String(), id: callID}
		switch op {
		case opOffer:
			rip, rport, err := m.offer(k, ip, port, true)
			if err != nil {
				m.log.Info("media offer refused", "peer", from, "call", callID, "err", err)
			}
			reply(rip, rport, err)
		case opAnswer:
			rip, rport, err := m.answer(k, ip, port, true)
			if err != nil {
				m.log.Info("media answer refused", "peer", from, "call", callID, "err", err)
			}
			reply(rip, rport, err)
		case opEnd:
			if !m.end(k) {
				reply("", 0, fmt.Errorf("%w for %q", ErrNoSession, callID))
				return
			}
			reply("", 0, nil)
		}
	})
	return func() { ov.RemoveStreamHandler(proto) }
}

func decodeControl(b []byte) (op int, callID string, ip net.IP, port int, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, "", nil, 0, errors.New("relay: malformed control request")
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, "", nil, 0, errors.New("relay: malformed control request")
			}
			b = b[n:]
			switch num {
			case 1:
				op = int(v)
			case 4:
				port = int(v)
			}
		case typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, "", nil, 0, errors.New("relay: malformed control request")
			}
			b = b[n:]
			switch num {
			case 2:
				callID = string(v)
			case 3:
				ip = net.ParseIP(string(v))
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, "", nil, 0, errors.New("relay: malformed control request")
			}
			b = b[n:]
		}
	}
	switch {
	case op < opOffer || op > opEnd:
		return 0, "", nil, 0, fmt.Errorf("relay: control op %d", op)
	case callID == "" || len(callID) > 256:
		return 0, "", nil, 0, errors.New("relay: control request without a call id")
	case op != opEnd && (ip == nil || port <= 0 || port > 65535):
		return 0, "", nil, 0, errors.New("relay: control request without a media address")
	}
	return op, callID, ip, port, nil
}

// maxRemoteCalls bounds the calls a Remote remembers.
const maxRemoteCalls = 100000

// Remote anchors calls on media relays other overlay members announce
// (the proxy's choice when its node has no relay of its own).
type Remote struct {
	ov    *overlay.Overlay
	proto overlay.Protocol

	mu    sync.Mutex
	calls map[string]overlay.PeerID // anchored call → relay node
}

// NewRemote returns an Anchor over proto on ov's members.
func NewRemote(ov *overlay.Overlay, proto overlay.Protocol) *Remote {
	return &Remote{ov: ov, proto: proto, calls: map[string]overlay.PeerID{}}
}

// ErrNoRelay: no member of the overlay announces a media relay.
var ErrNoRelay = errors.New("relay: no media relay in the overlay")

func (r *Remote) pick() (overlay.PeerID, error) {
	var cands []overlay.PeerID
	for id, svcs := range r.ov.Services() {
		for _, s := range svcs {
			if isMedia(s) {
				cands = append(cands, id)
			}
		}
	}
	if len(cands) == 0 {
		return "", ErrNoRelay
	}
	return cands[rand.IntN(len(cands))], nil
}

func (r *Remote) call(ctx context.Context, p overlay.PeerID, op int, callID string, ip net.IP, port int) (string, int, error) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(op))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, callID)
	if ip != nil {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, ip.String())
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(port))
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := r.ov.NewStream(ctx, p, r.proto)
	if err != nil {
		return "", 0, fmt.Errorf("relay: %s: %w", p, err)
	}
	defer s.Close()
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	if err := overlay.WriteFrame(s, b); err != nil {
		s.Reset()
		return "", 0, err
	}
	reply, err := overlay.ReadFrame(bufio.NewReader(s), maxControlFrame)
	if err != nil {
		s.Reset()
		return "", 0, err
	}
	var rip, rerr string
	var rport int
	for len(reply) > 0 {
		num, typ, n := protowire.ConsumeTag(reply)
		if n < 0 {
			return "", 0, errors.New("relay: malformed control reply")
		}
		reply = reply[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(reply)
			if n < 0 {
				return "", 0, errors.New("relay: malformed control reply")
			}
			reply = reply[n:]
			if num == 2 {
				rport = int(v)
			}
			continue
		}
		v, n := protowire.ConsumeBytes(reply)
		if n < 0 {
			return "", 0, errors.New("relay: malformed control reply")
		}
		reply = reply[n:]
		switch num {
		case 1:
			rip = string(v)
		case 3:
			rerr = string(v)
		}
	}
	if rerr != "" {
		for _, e := range []error{ErrTarget, ErrQuota, ErrNoPorts, ErrNoSession} {
			if rest, ok := strings.CutPrefix(rerr, e.Error()); ok {
				return "", 0, fmt.Errorf("%w%s", e, rest)
			}
		}
		return "", 0, errors.New(rerr)
	}
	if op != opEnd && (net.ParseIP(rip) == nil || rport <= 0 || rport > 65535) {
		return "", 0, errors.New("relay: control reply without an address")
	}
	return rip, rport, nil
}

// Offer implements Anchor on a relay picked among those announced.
func (r *Remote) Offer(ctx context.Context, callID string, ip net.IP, port int) (string, int, error) {
	// A call's other streams (StreamKey) go to the relay of its first:
	// one SDP body names one relay address.
	r.mu.Lock()
	var p overlay.PeerID
	ok := false
	if i := strings.LastIndexByte(callID, '#'); i > 0 {
		p, ok = r.calls[callID[:i]]
	}
	r.mu.Unlock()
	if !ok {
		var err error
		if p, err = r.pick(); err != nil {
			return "", 0, err
		}
	}
	rip, rport, err := r.call(ctx, p, opOffer, callID, ip, port)
	if err != nil {
		return "", 0, err
	}
	r.mu.Lock()
	if len(r.calls) >= maxRemoteCalls {
		clear(r.calls) // bounded: the relays reap what is forgotten here when it goes idle
	}
	r.calls[callID] = p
	r.mu.Unlock()
	return rip, rport, nil
}

// Answer implements Anchor on the relay the call was offered to.
func (r *Remote) Answer(ctx context.Context, callID string, ip net.IP, port int) (string, int, error) {
	r.mu.Lock()
	p, ok := r.calls[callID]
	r.mu.Unlock()
	if !ok {
		return "", 0, fmt.Errorf("relay: call %q not anchored", callID)
	}
	return r.call(ctx, p, opAnswer, callID, ip, port)
}

// Has implements Anchor.
func (r *Remote) Has(callID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.calls[callID]
	return ok
}

// End implements Anchor (best effort: an unreachable relay reaps the
// session when it goes idle).
func (r *Remote) End(callID string) {
	r.mu.Lock()
	p, ok := r.calls[callID]
	delete(r.calls, callID)
	r.mu.Unlock()
	if ok {
		_, _, _ = r.call(context.Background(), p, opEnd, callID, nil, 0)
	}
}

// isMedia reports whether a service string announces a media relay.
func isMedia(s string) bool { return strings.EqualFold(s, MediaService) }
