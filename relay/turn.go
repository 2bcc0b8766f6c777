// Package relay is lsnode's NAT-traversal side: a TURN server (RFC 8656, on
// pion/turn) with TURN REST ephemeral credentials and a peer policy that
// is safe by default. It runs beside the SIP roles of a node.
package relay

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v3"
)

// Config configures a TURN server. Zero values take the defaults per field.
type Config struct {
	// Addr (host:port) for the UDP and TCP listeners. Required.
	Addr string
	// RelayIP is the address relayed transports are allocated on and
	// announced with; default Addr's host (which must then be an IP).
	RelayIP string
	// TLSAddr, with TLS, also serves TURN over TLS (RFC 8656 §3.1).
	TLSAddr string
	TLS     *tls.Config
	// Realm of the long-term credentials. Required.
	Realm string
	// Secret signs TURN REST credentials: username "expiry:user",
	// password base64(HMAC-SHA1(secret, username)). At least 16 bytes.
	Secret []byte
	// Allow lists peer networks relaying may reach although the default
	// policy denies them (loopback, RFC 1918, link-local, CGNAT, multicast,
	// unspecified, ULA, cloud metadata): the testnet allows loopback.
	Allow []*net.IPNet
	// AllowSelf lets relaying reach this host's own addresses (its
	// interfaces', RelayIP, Addr's host) where Allow or the default policy
	// admits them: a testnet on loopback. Off (the default), a TURN user
	// never reaches the node's own services from the node's own address.
	AllowSelf bool
	// MaxAllocations bounds live allocations in total (default 1000) and
	// per user (default 10).
	MaxAllocations, MaxPerUser int
	// Logger; default slog.Default(). Tagged component=relay.
	Logger *slog.Logger
}

// Server is a running TURN server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	turn   *turn.Server
	udp    net.PacketConn
	tcp    net.Listener
	tls    net.Listener // nil without TLS
	allocs atomic.Int64

	// Per-user quota. pion does not tell an allocation's user to the
	// address generator, so a user's allocations are counted as the client
	// transport addresses that authenticated as the user within one
	// allocation lifetime (a live allocation refreshes, so re-authenticates,
	// well within it). pion asks the auth handler for the key before it
	// checks MESSAGE-INTEGRITY: only a request whose integrity verifies
	// (checked here on the request pion is handling, see capture) is
	// charged, so wrong passwords from any number of ports lock no one out.
	self *selfAddrs // nil with AllowSelf

	mu      sync.Mutex
	clients map[string]*client // "udp/ip:port" → user and last authentication
	perUser map[string]int

	capture capture

	denied       atomic.Int64
	badIntegrity atomic.Int64
}

// New validates cfg and starts serving TURN on UDP and TCP.
func New(cfg Config) (*Server, error) {
	if cfg.Realm == "" {
		return nil, fmt.Errorf("%w: no realm", ErrConfig)
	}
	if len(cfg.Secret) < 16 {
		return nil, fmt.Errorf("%w: secret shorter than 16 bytes", ErrConfig)
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", ErrConfig, cfg.Addr, err)
	}
	if cfg.RelayIP == "" {
		cfg.RelayIP = host
	}
	relayIP := net.ParseIP(cfg.RelayIP)
	if relayIP == nil || relayIP.IsUnspecified() {
		return nil, fmt.Errorf("%w: relay address %q must be a specific IP", ErrConfig, cfg.RelayIP)
	}
	if cfg.MaxAllocations <= 0 {
		cfg.MaxAllocations = 1000
	}
	if cfg.MaxPerUser <= 0 {
		cfg.MaxPerUser = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "relay"), perUser: map[string]int{}, clients: map[string]*client{},
		capture: capture{conns: map[string][]*frameConn{}}}
	if !cfg.AllowSelf {
		s.self = newSelfAddrs(relayIP, net.ParseIP(host))
	}
	if s.udp, err = net.ListenPacket("udp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("relay: listen udp %s: %w", cfg.Addr, err)
	}
	setBuffers(s.udp)
	if s.tcp, err = net.Listen("tcp", s.udp.LocalAddr().String()); err != nil {
		s.udp.Close()
		return nil, fmt.Errorf("relay: listen tcp %s: %w", cfg.Addr, err)
	}
	if cfg.TLSAddr != "" {
		if cfg.TLS == nil {
			s.udp.Close()
			s.tcp.Close()
			return nil, fmt.Errorf("%w: TURN over TLS without a certificate", ErrConfig)
		}
		if s.tls, err = tls.Listen("tcp", cfg.TLSAddr, cfg.TLS); err != nil {
			s.udp.Close()
			s.tcp.Close()
			return nil, fmt.Errorf("relay: listen tls %s: %w", cfg.TLSAddr, err)
		}
	}
	gen := &quotaGenerator{s: s, inner: &turn.RelayAddressGeneratorStatic{RelayAddress: relayIP, Address: relayIP.String()}}
	listeners := []turn.ListenerConfig{{Listener: &captureListener{Listener: s.tcp, c: &s.capture}, RelayAddressGenerator: gen,
		PermissionHandler: s.permit}}
	if s.tls != nil {
		listeners = append(listeners, turn.ListenerConfig{Listener: &captureListener{Listener: s.tls, c: &s.capture},
			RelayAddressGenerator: gen, PermissionHandler: s.permit})
	}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	s.turn, err = turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.auth,
		LoggerFactory: quiet,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: &capturePacketConn{PacketConn: s.udp, c: &s.capture}, RelayAddressGenerator: gen,
			PermissionHandler: s.permit}},
		ListenerConfigs: listeners,
	})
	if err != nil {
		s.udp.Close()
		s.tcp.Close()
		if s.tls != nil {
			s.tls.Close()
		}
		return nil, fmt.Errorf("relay: %w", err)
	}
	return s, nil
}

// Addr returns the bound address (the same for UDP and TCP).
func (s *Server) Addr() string { return s.udp.LocalAddr().String() }

// TLSAddr returns the TURN-over-TLS address, or "" without TLS.
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Addr().String()
}

// Close stops the server and releases every allocation.
func (s *Server) Close() error { return s.turn.Close() }

// Credentials issues TURN REST credentials for user, valid for ttl.
func (s *Server) Credentials(user string, ttl time.Duration) (username, password string) {
	username = strconv.FormatInt(time.Now().Add(ttl).Unix(), 10) + ":" + user
	return username, restPassword(s.cfg.Secret, username)
}

func restPassword(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// auth checks a TURN REST username: not expired, and the key derived
// from our secret. The user's quota is charged only when the request's
// MESSAGE-INTEGRITY verifies with that key: a request that fails it gets
// the key back, and pion refuses it (400) without anything charged.
func (s *Server) auth(username, realm string, src net.Addr) ([]byte, bool) {
	expiry, user, ok := strings.Cut(username, ":")
	if !ok || user == "" {
		return nil, false
	}
	t, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || time.Unix(t, 0).Before(time.Now()) {
		return nil, false
	}
	key := turn.GenerateAuthKey(username, realm, restPassword(s.cfg.Secret, username))
	switch s.capture.verify(src, key) {
	case integrityBad:
		s.badIntegrity.Add(1)
		return key, true // pion's own check refuses it
	case integrityUnknown:
		return nil, false // not the request pion is handling: charge nothing, grant nothing
	}
	if !s.admit(src.Network()+"/"+src.String(), user, time.Now()) {
		s.log.Info("allocation quota reached", "user", user, "max", s.cfg.MaxPerUser)
		return nil, false
	}
	return key, true
}

type client struct {
	user string
	last time.Time
}

// clientLifetime: how long a client address counts for its user after it
// last authenticated (TURN's default allocation lifetime).
const clientLifetime = 10 * time.Minute

// admit records that the client at key authenticated as user, unless that
// would give user more than MaxPerUser client addresses.
func (s *Server) admit(key, user string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[key]; c != nil && c.user == user {
		c.last = now
		return true
	}
	for k, c := range s.clients { // prune what aged out (bounded by the quota)
		if now.Sub(c.last) > clientLifetime {
			delete(s.clients, k)
			s.perUser[c.user]--
			if s.perUser[c.user] <= 0 {
				delete(s.perUser, c.user)
			}
		}
	}
	if s.perUser[user] >= s.cfg.MaxPerUser || len(s.clients) >= 4*s.cfg.MaxAllocations {
		return false
	}
	if old := s.clients[key]; old != nil { // the address changed user
		s.perUser[old.user]--
	}
	s.clients[key] = &client{user: user, last: now}
	s.perUser[user]++
	return true
}

// permit is the peer policy: addresses a relay must not reach unless the
// config allows them (an open relay into the operator's own networks), and
// never the host itself (unless AllowSelf).
func (s *Server) permit(_ net.Addr, peer net.IP) bool {
	if !permitted(s.cfg.Allow, peer) || s.self != nil && s.self.has(peer) {
		s.denied.Add(1)
		return false
	}
	return true
}

// permitted is the peer policy of TURN and media alike: ip is not
// Restricted, or allow holds it.
func permitted(allow []*net.IPNet, ip net.IP) bool {
	for _, n := range allow {
		if n.Contains(ip) {
			return true
		}
	}
	return !Restricted(ip)
}

// ParseNetworks reads an Allow list of CIDRs (config files).
func ParseNetworks(cidrs []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("%w: allow: %q is not a CIDR", ErrConfig, c)
		}
		out = append(out, n)
	}
	return out, nil
}

// Denied counts permissions refused by the peer policy.
func (s *Server) Denied() int64 { return s.denied.Load() }

// Allocations counts live allocations.
func (s *Server) Allocations() int64 { return s.allocs.Load() }

// Restricted reports whether the default policy denies relaying to ip:
// loopback, private (RFC 1918, ULA), link-local (cloud metadata
// 169.254.169.254 included), CGNAT (100.64/10), multicast, unspecified and
// broadcast addresses, and the other special-purpose blocks no public peer
// is on (IANA's registries: 0/8, 192.0.0/24, 198.18/15, 240/4, IPv6
// site-local, discard-only, IPv4-compatible and Teredo). An IPv6 address
// that carries an IPv4 one (NAT64 64:ff9b::/96, 6to4 2002::/16) is judged
// by that address; local-use NAT64 (64:ff9b:1::/48) is denied whole.
func Restricted(ip net.IP) bool {
	if ip == nil || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	if v4 := ip.To4(); v4 != nil {
		return v4[0] == 100 && v4[1]&0xc0 == 64 || v4.Equal(net.IPv4bcast) || v4[0] == 0 ||
			v4[0] == 192 && v4[1] == 0 && v4[2] == 0 || v4[0] == 198 && v4[1]&0xfe == 18 || v4[0] >= 240
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return true
	}
	for _, p := range deniedIPv6 {
		if p.Contains(a) {
			return true
		}
	}
	if v4, ok := embeddedIPv4(a); ok {
		return Restricted(v4.AsSlice())
	}
	return false
}

// IPv6 blocks no public peer is on (read only), and those that carry an
// IPv4 address.
var (
	deniedIPv6 = []netip.Prefix{
		netip.MustParsePrefix("fec0::/10"),      // site-local
		netip.MustParsePrefix("::/96"),          // IPv4-compatible (the IPv4-mapped ones are To4 above)
		netip.MustParsePrefix("100::/64"),       // discard-only
		netip.MustParsePrefix("2001::/32"),      // Teredo
		netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	}
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// quotaGenerator allocates relayed addresses up to MaxAllocations live ones.
type quotaGenerator struct {
	s     *Server
	inner turn.RelayAddressGenerator
}

func (g *quotaGenerator) Validate() error { return g.inner.Validate() }

func (g *quotaGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	if g.s.allocs.Add(1) > int64(g.s.cfg.MaxAllocations) {
		g.s.allocs.Add(-1)
		return nil, nil, errors.New("relay: allocation quota reached")
	}
	c, a, err := g.inner.AllocatePacketConn(network, port)
	if err != nil {
		g.s.allocs.Add(-1)
		return nil, nil, err
	}
	setBuffers(c)
	return &countedConn{PacketConn: c, s: g.s}, a, nil
}

// socketBuffer: UDP receive/send buffers; with the defaults, bursts of
// 1200-byte media overflow them (13.7% loss at 100 allocations).
const socketBuffer = 4 << 20

func setBuffers(c net.PacketConn) {
	if u, ok := c.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		_ = u.SetReadBuffer(socketBuffer)
		_ = u.SetWriteBuffer(socketBuffer)
	}
}

func (g *quotaGenerator) AllocateConn(network string, port int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("relay: TCP relaying (RFC 6062) is not supported")
}

// countedConn gives its allocation back to the quota when closed.
type countedConn struct {
	net.PacketConn
	s    *Server
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.s.allocs.Add(-1) })
	return c.PacketConn.Close()
}

// BadIntegrity counts requests whose MESSAGE-INTEGRITY failed (nothing
// charged for them).
func (s *Server) BadIntegrity() int64 { return s.badIntegrity.Load() }
