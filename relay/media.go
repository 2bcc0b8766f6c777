package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MediaConfig configures the RTP relay.
type MediaConfig struct {
	// IP the relay's ports are bound to and announced in SDP. Required.
	IP string
	// MinPort..MaxPort is the port range (pairs: even RTP, odd RTCP).
	// Default 40000-40999.
	MinPort, MaxPort int
	// MaxSessions bounds concurrent sessions. Default, and at most, what
	// the port range holds: two port pairs a session (250 for the default
	// range).
	MaxSessions int
	// MaxPerPeer bounds the sessions one overlay member holds through the
	// control protocol (ServeControl). Default a quarter of MaxSessions,
	// at least 1.
	MaxPerPeer int
	// Allow lists networks media may be sent to, and latched from,
	// although the peer policy denies them (Restricted): the same list as
	// the TURN server's Config.Allow (the testnet allows loopback).
	Allow []*net.IPNet
	// AllowSelf lets media go to this host's own addresses (its
	// interfaces', IP) where Allow or the default policy admits them: a
	// testnet on loopback. Off (the default), an SDP never points the
	// relay at the node's own services.
	AllowSelf bool
	// Idle ends a session with no packets for this long. Default 60s.
	Idle time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Media relays RTP/RTCP between the two parties of calls whose SDP a proxy
// rewrote to point at it (SPEERMINT's integrated model).
//
// Every session has an owner: this node's proxy (Offer, Answer, End) or
// the overlay member that opened it over the control protocol. Sessions
// are kept by owner and call ID, so an owner reaches only its own: no one
// ends or redirects another's call. Media goes only where the peer policy
// lets the TURN server relay (Restricted, Allow).
type Media struct {
	cfg      MediaConfig
	ip       net.IP
	self     *selfAddrs // nil with AllowSelf
	log      *slog.Logger
	mu       sync.Mutex
	byID     map[sessionKey]*Session
	perOwner map[string]int // sessions by remote owner
	wg       sync.WaitGroup
	done     chan struct{}
	once     sync.Once

	forwarded atomic.Int64
	dropped   atomic.Int64
}

// NewMedia starts a media relay (sessions are created by Offer).
func NewMedia(cfg MediaConfig) (*Media, error) {
	ip := net.ParseIP(cfg.IP)
	if ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("%w: media relay IP %q must be a specific address", ErrConfig, cfg.IP)
	}
	if cfg.MinPort == 0 && cfg.MaxPort == 0 {
		cfg.MinPort, cfg.MaxPort = 40000, 40999
	}
	if cfg.MinPort < 1024 || cfg.MaxPort > 65535 || cfg.MaxPort-cfg.MinPort < 3 {
		return nil, fmt.Errorf("%w: media port range %d-%d", ErrConfig, cfg.MinPort, cfg.MaxPort)
	}
	cfg.MinPort += cfg.MinPort % 2
	capacity := (cfg.MaxPort - cfg.MinPort + 1) / 4 // two even/odd pairs a session
	if capacity < 1 {
		return nil, fmt.Errorf("%w: media port range %d-%d holds no session (four ports each)", ErrConfig, cfg.MinPort, cfg.MaxPort)
	}
	if cfg.MaxSessions <= 0 || cfg.MaxSessions > capacity {
		cfg.MaxSessions = capacity
	}
	if cfg.MaxPerPeer <= 0 {
		cfg.MaxPerPeer = max(1, cfg.MaxSessions/4)
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Media{cfg: cfg, ip: ip, log: cfg.Logger.With("component", "media"), byID: map[sessionKey]*Session{},
		perOwner: map[string]int{}, done: make(chan struct{})}
	if !cfg.AllowSelf {
		m.self = newSelfAddrs(ip)
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.reap() }()
	return m, nil
}

// sessionKey: a session's owner ("" for this node's proxy, else the
// overlay member's peer ID) and call ID.
type sessionKey struct{ owner, id string }

// Session is one call's relay: leg 0 faces the caller, leg 1 the callee.
type Session struct {
	m    *Media
	key  sessionKey
	legs [2]*leg
	last atomic.Int64 // unix ns of the last packet
	once sync.Once
}

// leg is the relay's pair of sockets facing one party: the party sends
// to them, and receives from them what the other party sent.
type leg struct {
	conns [2]*net.UDPConn                // RTP, RTCP
	peer  [2]atomic.Pointer[net.UDPAddr] // where this party receives (latched or from SDP)
	latch [2]atomic.Bool                 // peer was learnt from a packet
	want  atomic.Pointer[net.IP]         // the party's address from its SDP
	// unheard counts the packets sent on each socket to the address the
	// party's SDP names, before a packet of the party's latched that
	// socket: at most unheardBudget, for the leg's life (a later answer
	// naming another address gets no more). An SDP is anyone's word: the
	// relay would otherwise stream a call's media at a victim that never
	// asked for it; a party that waits for media before it sends (an
	// echo, a recorder) gets enough to start.
	unheard [2]atomic.Int32
}

// unheardBudget bounds what a leg's socket sends to a party before the
// party's own packets latched it: a third of a second of 20 ms audio. An
// INVITE naming a victim's address gets it at most that many packets per
// stream and socket (2.7 KB of PCMU).
const unheardBudget = 16

// spend takes one of socket c's unheardBudget packets; false when none is
// left (the count stops there: it never wraps).
func (l *leg) spend(c int) bool {
	for {
		n := l.unheard[c].Load()
		if n >= unheardBudget {
			return false
		}
		if l.unheard[c].CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// heardAt: the party's own packets latched its socket c from ip (a
// recvonly party's RTCP from the address its RTP goes to is its consent).
func (l *leg) heardAt(c int, ip net.IP) bool {
	p := l.peer[c].Load()
	return l.latch[c].Load() && p != nil && p.IP.Equal(ip)
}

// Addr returns the RTP address (ip, port) a leg listens on.
func (l *leg) port() int { return l.conns[0].LocalAddr().(*net.UDPAddr).Port }

// Errors of the media relay.
var (
	// ErrNoPorts: the sessions hold the whole port range (or MaxSessions).
	ErrNoPorts = errors.New("relay: media port range exhausted")
	// ErrQuota: an overlay member holds MaxPerPeer sessions.
	ErrQuota = errors.New("relay: media session quota of this peer reached")
	// ErrTarget: the peer policy refuses a party's media address.
	ErrTarget = errors.New("relay: media address refused by the peer policy")
	// ErrNoSession: no session of this owner for the call.
	ErrNoSession = errors.New("relay: no media session")
)

// Session returns this node's (the local proxy's) session of id, creating
// it (both legs bound) if new.
func (m *Media) Session(id string) (*Session, error) { return m.open(sessionKey{id: id}) }

func (m *Media) open(k sessionKey) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.byID[k]; s != nil {
		return s, nil
	}
	if len(m.byID) >= m.cfg.MaxSessions {
		return nil, fmt.Errorf("%w: %d sessions hold ports %d-%d", ErrNoPorts, len(m.byID), m.cfg.MinPort, m.cfg.MaxPort)
	}
	if k.owner != "" && m.perOwner[k.owner] >= m.cfg.MaxPerPeer {
		return nil, fmt.Errorf("%w (%d sessions)", ErrQuota, m.cfg.MaxPerPeer)
	}
	s := &Session{m: m, key: k}
	for i := range s.legs {
		l, err := m.bindLocked()
		if err != nil {
			for _, l := range s.legs[:i] {
				l.close()
			}
			return nil, err
		}
		s.legs[i] = l
	}
	s.last.Store(time.Now().UnixNano())
	m.byID[k] = s
	if k.owner != "" {
		m.perOwner[k.owner]++
	}
	for i := range s.legs {
		for c := range s.legs[i].conns {
			m.wg.Add(1)
			go func() { defer m.wg.Done(); s.pump(i, c) }()
		}
	}
	return s, nil
}

// bindLocked binds an even/odd port pair from the range, from a random
// one on: a leg latches the first packet that reaches it (a NAT'd party's
// real address is unknown), so its port must not be guessable from the
// last one (allocated in order, a sender spraying the next ports took a
// fresh call's media: "RTP bleed").
func (m *Media) bindLocked() (*leg, error) {
	span := (m.cfg.MaxPort - m.cfg.MinPort + 1) / 2
	start := rand.IntN(max(span, 1))
	for tries := 0; tries < span; tries++ {
		p := m.cfg.MinPort + 2*((start+tries)%span)
		rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: m.ip, Port: p})
		if err != nil {
			continue
		}
		rtcp, err := net.ListenUDP("udp", &net.UDPAddr{IP: m.ip, Port: p + 1})
		if err != nil {
			rtp.Close()
			continue
		}
		setBuffers(rtp)
		setBuffers(rtcp)
		return &leg{conns: [2]*net.UDPConn{rtp, rtcp}}, nil
	}
	return nil, fmt.Errorf("%w: no free port pair in %d-%d", ErrNoPorts, m.cfg.MinPort, m.cfg.MaxPort)
}

func (l *leg) close() {
	for _, c := range l.conns {
		c.Close()
	}
}

// Port is the RTP port of leg i (0: the caller's side, 1: the callee's).
func (s *Session) Port(i int) int { return s.legs[i].port() }

// IP is the address the relay announces.
func (s *Session) IP() string { return s.m.ip.String() }

// SetParty records where party i receives RTP according to its SDP (RTCP
// one port above). Until a packet from the party latches its real address
// (symmetric RTP, RFC 4961), media for it goes there, if the peer policy
// allows; a NAT'd party's private address gets nothing until it latches.
// An address the policy refuses otherwise is an error, and changes nothing.
func (s *Session) SetParty(i int, ip net.IP, port int) error {
	send, err := s.m.target(ip, false)
	if err != nil {
		return err
	}
	s.setParty(i, ip, port, send)
	return nil
}

func (s *Session) setParty(i int, ip net.IP, port int, send bool) {
	l := s.legs[i]
	l.want.Store(&ip)
	for c := 0; c < 2; c++ {
		if !l.latch[c].Load() {
			if send {
				l.peer[c].Store(&net.UDPAddr{IP: ip, Port: port + c})
			} else {
				l.peer[c].Store(nil)
			}
		}
	}
}

// permitted: the peer policy lets media go to ip (the TURN server's).
func (m *Media) permitted(ip net.IP) bool {
	return permitted(m.cfg.Allow, ip) && (m.self == nil || !m.self.has(ip))
}

// target decides what the relay does with a party's SDP address: send to
// it (send), or, for a NAT'd party's private address when not strict,
// only to where the party's packets come from once they latch. strict
// (sessions of overlay members) refuses every address the policy does.
func (m *Media) target(ip net.IP, strict bool) (send bool, err error) {
	switch {
	case m.permitted(ip):
		return true, nil
	case !strict && behindNAT(ip):
		return false, nil
	}
	return false, fmt.Errorf("%w: %s", ErrTarget, ip)
}

// pump forwards what party i sends on socket c to the other party, from the
// other leg's socket (so each party sees the relay as its peer); to a
// socket of the party's its own packets have not latched, nor its other
// socket from that address, at most unheardBudget packets. The first
// packet latches the party's address; packets from elsewhere are dropped
// (a session carries only its own call's media).
func (s *Session) pump(i, c int) {
	in, other := s.legs[i], s.legs[1-i]
	buf := make([]byte, 1500)
	for {
		n, src, err := in.conns[c].ReadFromUDP(buf)
		if err != nil {
			return
		}
		if !in.latch[c].Load() {
			if want := in.want.Load(); want == nil || !src.IP.Equal(*want) && !behindNAT(*want) || !s.m.permitted(src.IP) {
				s.m.dropped.Add(1)
				continue // not the party the SDP named, or where the policy sends nothing
			}
			in.peer[c].Store(src)
			in.latch[c].Store(true)
		} else if p := in.peer[c].Load(); !p.IP.Equal(src.IP) || p.Port != src.Port {
			s.m.dropped.Add(1)
			continue
		}
		s.last.Store(time.Now().UnixNano())
		dst := other.peer[c].Load()
		if dst == nil || !other.latch[c].Load() && !other.heardAt(1-c, dst.IP) && !other.spend(c) {
			s.m.dropped.Add(1)
			continue
		}
		if _, err := other.conns[c].WriteToUDP(buf[:n], dst); err == nil {
			s.m.forwarded.Add(1)
		}
	}
}

// behindNAT: a party whose SDP names a private (RFC 1918, ULA) or CGNAT
// address is latched from wherever its media comes (its NAT's public
// address), where the policy allows.
func behindNAT(ip net.IP) bool {
	if v4 := ip.To4(); v4 != nil && v4[0] == 100 && v4[1]&0xc0 == 64 {
		return true
	}
	return ip.IsPrivate()
}

// Endpoint is what the relay announces in the overlay (MediaEndpoint).
func (m *Media) Endpoint() string { return MediaEndpoint(m.ip, m.cfg.MinPort, m.cfg.MaxPort) }

// Has reports whether this node's proxy has a session of id.
func (m *Media) Has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[sessionKey{id: id}] != nil
}

// End closes this node's proxy's session of id (BYE, CANCEL, failure); its
// ports are free for reuse. Ending an unknown session does nothing.
func (m *Media) End(id string) { m.end(sessionKey{id: id}) }

// end closes the session of k and reports whether there was one.
func (m *Media) end(k sessionKey) bool {
	m.mu.Lock()
	s := m.byID[k]
	if s != nil {
		delete(m.byID, k)
		if k.owner != "" {
			if m.perOwner[k.owner]--; m.perOwner[k.owner] <= 0 {
				delete(m.perOwner, k.owner)
			}
		}
	}
	m.mu.Unlock()
	if s != nil {
		s.close()
	}
	return s != nil
}

// offer opens (or updates) k's session with the caller's media address;
// a refused address opens nothing.
func (m *Media) offer(k sessionKey, ip net.IP, port int, strict bool) (string, int, error) {
	send, err := m.target(ip, strict)
	if err != nil {
		return "", 0, err
	}
	s, err := m.open(k)
	if err != nil {
		return "", 0, err
	}
	s.setParty(0, ip, port, send)
	return s.IP(), s.Port(1), nil
}

// answer records the callee's media address in k's session.
func (m *Media) answer(k sessionKey, ip net.IP, port int, strict bool) (string, int, error) {
	m.mu.Lock()
	s := m.byID[k]
	m.mu.Unlock()
	if s == nil {
		return "", 0, fmt.Errorf("%w for %q", ErrNoSession, k.id)
	}
	send, err := m.target(ip, strict)
	if err != nil {
		return "", 0, err
	}
	s.setParty(1, ip, port, send)
	return s.IP(), s.Port(0), nil
}

func (s *Session) close() {
	s.once.Do(func() {
		for _, l := range s.legs {
			l.close()
		}
	})
}

// Sessions counts live sessions; Forwarded and Dropped count packets.
func (m *Media) Sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byID)
}

func (m *Media) Forwarded() int64 { return m.forwarded.Load() }
func (m *Media) Dropped() int64   { return m.dropped.Load() }

// reap ends sessions idle for longer than Idle.
func (m *Media) reap() {
	t := time.NewTicker(max(m.cfg.Idle/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case now := <-t.C:
			var idle []sessionKey
			m.mu.Lock()
			for k, s := range m.byID {
				if now.Sub(time.Unix(0, s.last.Load())) > m.cfg.Idle {
					idle = append(idle, k)
				}
			}
			m.mu.Unlock()
			for _, k := range idle {
				m.log.Debug("media session idle", "id", k.id, "owner", k.owner)
				m.end(k)
			}
		}
	}
}

// Close ends every session and the reaper.
func (m *Media) Close() error {
	m.once.Do(func() {
		close(m.done)
		m.mu.Lock()
		ss := m.byID
		m.byID = map[sessionKey]*Session{}
		clear(m.perOwner)
		m.mu.Unlock()
		for _, s := range ss {
			s.close()
		}
		m.wg.Wait()
	})
	return nil
}
