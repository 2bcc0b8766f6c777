package relay

import (
	"errors"
	"fmt"
	"log/slog"
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
	// MaxSessions bounds concurrent sessions. Default 1000.
	MaxSessions int
	// Idle ends a session with no packets for this long. Default 60s.
	Idle time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Media relays RTP/RTCP between the two parties of calls whose SDP a proxy
// rewrote to point at it (SPEERMINT's integrated model).
type Media struct {
	cfg  MediaConfig
	ip   net.IP
	log  *slog.Logger
	mu   sync.Mutex
	byID map[string]*Session
	next int // next port to try
	wg   sync.WaitGroup
	done chan struct{}
	once sync.Once

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
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Media{cfg: cfg, ip: ip, log: cfg.Logger.With("component", "media"), byID: map[string]*Session{},
		next: cfg.MinPort, done: make(chan struct{})}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.reap() }()
	return m, nil
}

// Session is one call's relay: leg 0 faces the caller, leg 1 the callee.
type Session struct {
	m    *Media
	id   string
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
}

// Addr returns the RTP address (ip, port) a leg listens on.
func (l *leg) port() int { return l.conns[0].LocalAddr().(*net.UDPAddr).Port }

// ErrNoPorts: the port range or the session quota is exhausted.
var ErrNoPorts = errors.New("relay: no media ports free")

// Session returns the session of id, creating it (both legs bound) if new.
func (m *Media) Session(id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.byID[id]; s != nil {
		return s, nil
	}
	if len(m.byID) >= m.cfg.MaxSessions {
		return nil, ErrNoPorts
	}
	s := &Session{m: m, id: id}
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
	m.byID[id] = s
	for i := range s.legs {
		for c := range s.legs[i].conns {
			m.wg.Add(1)
			go func() { defer m.wg.Done(); s.pump(i, c) }()
		}
	}
	return s, nil
}

// bindLocked binds an even/odd port pair from the range.
func (m *Media) bindLocked() (*leg, error) {
	span := (m.cfg.MaxPort - m.cfg.MinPort + 1) / 2
	for tries := 0; tries < span; tries++ {
		p := m.next
		m.next += 2
		if m.next+1 > m.cfg.MaxPort {
			m.next = m.cfg.MinPort
		}
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
	return nil, ErrNoPorts
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
// (symmetric RTP, RFC 4961), media for it goes there.
func (s *Session) SetParty(i int, ip net.IP, port int) {
	l := s.legs[i]
	l.want.Store(&ip)
	for c := 0; c < 2; c++ {
		if !l.latch[c].Load() {
			l.peer[c].Store(&net.UDPAddr{IP: ip, Port: port + c})
		}
	}
}

// pump forwards what party i sends on socket c to the other party, from the
// other leg's socket (so each party sees the relay as its peer). The first
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
			if want := in.want.Load(); want == nil || !src.IP.Equal(*want) && !behindNAT(*want) {
				s.m.dropped.Add(1)
				continue // not the party the SDP named
			}
			in.peer[c].Store(src)
			in.latch[c].Store(true)
		} else if p := in.peer[c].Load(); !p.IP.Equal(src.IP) || p.Port != src.Port {
			s.m.dropped.Add(1)
			continue
		}
		s.last.Store(time.Now().UnixNano())
		dst := other.peer[c].Load()
		if dst == nil {
			s.m.dropped.Add(1)
			continue
		}
		if _, err := other.conns[c].WriteToUDP(buf[:n], dst); err == nil {
			s.m.forwarded.Add(1)
		}
	}
}

// behindNAT: a party whose SDP names a private address is latched from
// wherever its media comes (its NAT's public address).
func behindNAT(ip net.IP) bool { return ip.IsPrivate() || Restricted(ip) && !ip.IsLoopback() }

// Endpoint is what the relay announces in the overlay (MediaEndpoint).
func (m *Media) Endpoint() string { return MediaEndpoint(m.ip, m.cfg.MinPort, m.cfg.MaxPort) }

// Has reports whether a session of id exists.
func (m *Media) Has(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[id] != nil
}

// End closes the session of id (BYE, CANCEL, failure); its ports are free
// for reuse. Ending an unknown session does nothing.
func (m *Media) End(id string) {
	m.mu.Lock()
	s := m.byID[id]
	delete(m.byID, id)
	m.mu.Unlock()
	if s != nil {
		s.close()
	}
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
			var idle []string
			m.mu.Lock()
			for id, s := range m.byID {
				if now.Sub(time.Unix(0, s.last.Load())) > m.cfg.Idle {
					idle = append(idle, id)
				}
			}
			m.mu.Unlock()
			for _, id := range idle {
				m.log.Debug("media session idle", "id", id)
				m.End(id)
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
		m.byID = map[string]*Session{}
		m.mu.Unlock()
		for _, s := range ss {
			s.close()
		}
		m.wg.Wait()
	})
	return nil
}
