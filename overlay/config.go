package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
)

// Config configures one overlay membership. The zero value of every field but
// Name and Identity has a documented default.
type Config struct {
	// Name of the overlay; sets the protocol prefix /lsp/<Name>, so overlays with
	// different names never mix. Lowercase letters, digits, '.', '-', '_'.
	Name string
	// Identity is the node's libp2p key (see LoadOrCreateIdentity).
	Identity crypto.PrivKey
	// ListenAddrs are multiaddrs to listen on. Default /ip4/127.0.0.1/tcp/0.
	ListenAddrs []string
	// Bootstrap are multiaddrs with /p2p/<id> of peers to join through.
	Bootstrap []string
	// DataDir holds the embedded leveldb datastore. Empty: an in-memory store.
	DataDir string
	// MaxConns bounds this host's connections (the resource manager
	// refuses beyond 2 × MaxConns). Default 192.
	MaxConns int
	// TargetConns is the connection manager's high water mark: above it,
	// idle connections (not to ring neighbours, a minute old at least) are
	// closed down to three quarters of it. Default min(32, MaxConns): an
	// idle member needs its ring neighbours (up to 8) and the members it
	// probes; a node past WarmConns dials the replicas a read or write
	// needs, as kad-dht's do, and at 64 each of 300 members held 48–56
	// connections at idle, some 2 MB of its memory.
	TargetConns int
	// ConnGrace is how long a new connection is exempt from the
	// connection manager's trimming. Default 1 minute. A joining node's
	// kad-dht bootstrap and the membership's first exchanges reach most of
	// a small overlay within it, so during the first ConnGrace a node may
	// hold far more than TargetConns connections; a shorter grace keeps
	// that peak (and the memory it leaves behind) down.
	ConnGrace time.Duration
	// WarmConns: while the live view has at most this many members besides
	// this node, it keeps a connection to each (protected from the
	// connection manager, dialled in the background), so one-hop reads and
	// writes never wait on a dial. Default min(112, 3/4 MaxConns); negative:
	// never. Clients and partial views do not warm.
	WarmConns int
	// MaxFDs bounds the file descriptors the resource manager lets this host
	// use. Default 1024, so 100+ hosts fit one process.
	MaxFDs int
	// GossipInterval is the membership gossip period. Default 1s.
	GossipInterval time.Duration
	// FailAfter declares a member dead when its heartbeat has not advanced for
	// this long. Default 10 × GossipInterval; never less than 3·log2(N)
	// gossip rounds for a view of N members.
	FailAfter time.Duration
	// Client joins without serving: for a node others cannot reach (behind
	// a NAT). It runs kad-dht in client mode and never enters anyone's
	// membership view, so no one places a replica on it; it reads and
	// writes through the members it connects to.
	Client bool
	// Reachability says how others reach this node:
	//   - "public" (the default, unless Client): on the addresses it
	//     listens on; a member that serves replicas.
	//   - "private" (the default with Client): behind a NAT. A client
	//     that reserves a circuit relay (v2) on members with RelayService,
	//     announces the relayed addresses (identify, kad-dht FIND_PEER)
	//     and upgrades relayed connections to direct ones by hole punching
	//     (DCUtR) where the NATs allow.
	//   - "auto": AutoNAT decides from members' dial-backs (members with
	//     RelayService run the AutoNAT service): private, as above, until
	//     one reaches it; then a member. AutoNAT needs about 20 s.
	Reachability string
	// RelayService: serve NAT'd peers with a circuit relay (v2, bounded:
	// RelayReservations, 2 min and 1 MiB per relayed connection, enough
	// for hole punching and a few requests) and AutoNAT dial-backs. The
	// member announces it in gossip, where private nodes find relays.
	RelayService bool
	// HolePunchTracer, when set, receives the hole punching (DCUtR) events
	// of a node that is not public: each attempt's addresses, result and
	// error (to count direct against relayed, or to report a failure).
	HolePunchTracer holepunch.EventTracer
	// MaxConnsPerIP bounds concurrent connections from one IPv4 address (or
	// IPv6 /56; 8× that per /48). libp2p's default is 8, too few for the
	// members and clients behind one NAT. Loopback is never limited.
	// Default 64.
	MaxConnsPerIP int
	// MaxPerSubnet: at most this many members per IPv4 /24 or IPv6 /48 (of
	// the address this node reached them at) hold replicas in its view; a
	// routing-table diversity limit for open overlays. 0: no limit.
	MaxPerSubnet int
	// MaxUnconfirmed bounds the members this node holds that it learnt
	// from gossip (a third party's word) but has not reached itself:
	// at most this many in total, and a quarter of that per IPv4 /24 or
	// IPv6 /48 of the peers that told it. Such a member is not live, holds
	// no replica and is not gossiped on until this node connects to it;
	// one never reached is dropped after 2 × FailAfter. Default 1024.
	MaxUnconfirmed int
	// View: "full" (the default) keeps the whole membership view and
	// places every key in one hop; "partial" keeps one region of it
	// (1/2^RegionBits of the id space, for a node that cannot afford the
	// full view of a large overlay), places the keys of that region in one
	// hop and the others by kad-dht's iterative lookup (cached routes).
	View string
	// RegionBits (1-6) sizes a partial view's region; 0 picks it from the
	// overlay's estimated size, so a region holds about 64 members (a
	// whole small overlay), and follows the size as it changes.
	RegionBits int
	// DisableDHTRefresh turns kad-dht's background routing-table refresh off
	// (tests and large in-process testnets).
	DisableDHTRefresh bool
	// BenchmarkValues turns on kad-dht's value store in ValueNamespace
	// (opaque values up to MaxValueSize, unsigned, from anyone), so a
	// benchmark can measure kad-dht's own PutValue/GetValue beside lsp.
	// Benchmarks only: off, a node stores no kad-dht value at all.
	BenchmarkValues bool
	// Federation closes the overlay to holders of member certificates (and of
	// its private-network key, if it has one). Nil: an open overlay.
	Federation *Federation
	// ServeAlone: the node counts as joined from the start, bootstrap
	// peers or not, and serves with what its view holds until it reaches
	// them (it keeps trying): one of a domain's front-ends, which must
	// work while the others are down. Without it a node whose bootstrap
	// peers never answered refuses reads and writes (ErrNotJoined).
	ServeAlone bool
	// PrivateNetwork closes the overlay to the holders of this libp2p
	// private-network key (32 bytes), with no member certificates: a
	// domain's front-ends sharing its bindings, the key derived from the
	// domain's. A Federation's own key takes precedence. TCP only.
	PrivateNetwork PSK
	// Logger; default slog.Default(). Tagged with component=overlay.
	Logger *slog.Logger
}

// Reachability values.
const (
	ReachPublic  = "public"
	ReachPrivate = "private"
	ReachAuto    = "auto"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

type resolved struct {
	Config
	listen    []ma.Multiaddr
	bootstrap []peer.AddrInfo
}

func (c Config) resolve() (*resolved, error) {
	if !nameRE.MatchString(c.Name) {
		return nil, fmt.Errorf("%w: overlay name %q: want 1-63 of [a-z0-9._-]", ErrConfig, c.Name)
	}
	if c.Identity == nil {
		return nil, fmt.Errorf("%w: no identity key", ErrConfig)
	}
	r := &resolved{Config: c}
	if len(r.ListenAddrs) == 0 {
		r.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	for _, s := range r.ListenAddrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: listen address %q: %v", ErrConfig, s, err)
		}
		r.listen = append(r.listen, a)
	}
	infos, err := ParseAddrInfos(r.Bootstrap)
	if err != nil {
		return nil, err
	}
	r.bootstrap = infos
	switch r.Reachability {
	case "":
		r.Reachability = ReachPublic
		if r.Client {
			r.Reachability = ReachPrivate
		}
	case ReachPublic, ReachPrivate, ReachAuto:
		if r.Client && r.Reachability == ReachPublic {
			return nil, fmt.Errorf("%w: a client node cannot have reachability public", ErrConfig)
		}
	default:
		return nil, fmt.Errorf("%w: reachability %q: want public, private or auto", ErrConfig, r.Reachability)
	}
	r.connDefaults()
	if r.MaxUnconfirmed <= 0 {
		r.MaxUnconfirmed = 1024
	}
	if r.GossipInterval <= 0 {
		r.GossipInterval = time.Second
	}
	if r.FailAfter <= 0 {
		r.FailAfter = 10 * r.GossipInterval
	}
	if r.FailAfter < 2*r.GossipInterval {
		return nil, fmt.Errorf("%w: FailAfter %v must be at least twice GossipInterval %v", ErrConfig, r.FailAfter, r.GossipInterval)
	}
	switch r.View {
	case "":
		r.View = ViewFull
	case ViewFull, ViewPartial:
	default:
		return nil, fmt.Errorf("%w: view %q: want full or partial", ErrConfig, r.View)
	}
	if r.RegionBits < 0 || r.RegionBits > 6 || r.RegionBits > 0 && r.View != ViewPartial {
		return nil, fmt.Errorf("%w: region bits %d: want 1 to 6 (0: automatic), with a partial view", ErrConfig, r.RegionBits)
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	r.Logger = r.Logger.With("component", "overlay", "overlay", r.Name)
	return r, nil
}

// connDefaults fills in the connection limits left zero.
func (r *resolved) connDefaults() {
	if r.MaxConns <= 0 {
		r.MaxConns = 192
	}
	if r.TargetConns <= 0 || r.TargetConns > r.MaxConns {
		r.TargetConns = min(32, r.MaxConns)
	}
	if r.ConnGrace <= 0 {
		r.ConnGrace = time.Minute
	}
	if r.WarmConns == 0 {
		r.WarmConns = min(112, r.MaxConns*3/4)
	}
	if r.MaxFDs <= 0 {
		r.MaxFDs = 1024
	}
	if r.MaxConnsPerIP <= 0 {
		r.MaxConnsPerIP = 64
	}
}

// CheckListenAddr reports whether s is a multiaddr a node can listen on
// ("/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"): a multiaddr
// with an IP and a port, without a peer ID.
func CheckListenAddr(s string) error {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return fmt.Errorf("not a multiaddr (like /ip4/0.0.0.0/tcp/4001): %v", multiaddrErr(s, err))
	}
	if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
		return errors.New("a listen address has no /p2p/ peer ID")
	}
	_, errTCP := a.ValueForProtocol(ma.P_TCP)
	_, errUDP := a.ValueForProtocol(ma.P_UDP)
	if errTCP != nil && errUDP != nil {
		return errors.New("no /tcp/ or /udp/ port (like /ip4/0.0.0.0/tcp/4001)")
	}
	return nil
}

// CheckBootstrapAddr reports whether s is a bootstrap peer's address: a
// multiaddr ending in /p2p/ and a valid peer ID.
func CheckBootstrapAddr(s string) error {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return multiaddrErr(s, err)
	}
	if _, err := peer.AddrInfoFromP2pAddr(a); err != nil {
		return errors.New("no /p2p/PEER-ID at its end")
	}
	return nil
}

// multiaddrErr is the multiaddr parser's error without the address it
// repeats.
func multiaddrErr(s string, err error) error {
	if _, rest, ok := strings.Cut(err.Error(), fmt.Sprintf("%q: ", s)); ok {
		return errors.New(rest)
	}
	return err
}

// ParseAddrInfos parses multiaddrs that end in /p2p/<peer-id>, merging
// addresses of the same peer.
func ParseAddrInfos(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap address %q: %v", ErrConfig, s, err)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap addresses: %v", ErrConfig, err)
	}
	return infos, nil
}

// ProtocolID returns /lsp/<name>/<sub>/<version>.
func ProtocolID(name, sub, version string) protocol.ID {
	return protocol.ID(ProtocolPrefix(name) + "/" + sub + "/" + version)
}

// ProtocolPrefix returns the protocol prefix of an overlay name.
func ProtocolPrefix(name string) string { return "/lsp/" + name }
