package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	leveldb "github.com/ipfs/go-ds-leveldb"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/lsnode/lsnode/pki"
)

// ValueNamespace is the kad-dht value namespace the overlay accepts with
// Config.BenchmarkValues (and only then), so kad-dht's own PutValue/GetValue
// can be measured beside lsp on the same hosts. Values are opaque, at most
// MaxValueSize bytes; lsp does not use them.
const (
	ValueNamespace = "v"
	MaxValueSize   = 4096
)

// Overlay is one node's membership in a named overlay.
type Overlay struct {
	cfg     *resolved
	host    host.Host // the libp2p host
	routed  host.Host // what the overlay protocols see: host, gated in a federation
	admit   *admission
	dht     *dht.IpfsDHT
	store   ds.Batching
	members *members
	routes  *routes          // a partial view's routes to keys outside its region
	reach   atomic.Int32     // network.Reachability, from AutoNAT or forced
	opened  [2]atomic.Uint64 // connections opened since the start: outbound, inbound
	// relayView is members once made, for autorelay's peer source and
	// the routing table's filter (both may run before it is).
	relayView atomic.Pointer[members]
	redials   redials

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts a libp2p host and kad-dht for cfg. It does not contact any peer:
// call Join. On error, everything started is closed again.
func New(ctx context.Context, cfg Config) (o *Overlay, err error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	ov := &Overlay{cfg: r, routes: newRoutes(3 * r.FailAfter)}
	o = ov
	o.ctx, o.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			ov.Close() // o itself is already nil here: "return nil, err" set it
			o = nil
		}
	}()
	if o.store, err = openStore(r.DataDir); err != nil {
		return nil, err
	}
	if k := r.PrivateNetwork; k != nil && len(k) != 32 {
		return nil, fmt.Errorf("%w: private-network key of %d bytes: want 32", ErrConfig, len(k))
	}
	if f := r.Federation; f != nil {
		// Fail fast on our own membership: a node whose certificate the
		// federation would refuse should say so, not wander unadmitted.
		id, _ := peer.IDFromPrivateKey(r.Identity)
		if _, err = f.Verify(f.Chain, id, r.Name, time.Now()); err != nil {
			return nil, fmt.Errorf("this node's own member certificate: %w", err)
		}
	}
	if err = o.startHost(); err != nil {
		return nil, err
	}
	if o.dht, err = dht.New(o.routed, o.dhtOptions()...); err != nil {
		return nil, fmt.Errorf("overlay: kad-dht: %w", err)
	}
	if err = o.startMembers(); err != nil {
		return nil, err
	}
	r.Logger.Debug("overlay started", "peer", o.host.ID(), "addrs", o.host.Addrs())
	return o, nil
}

// openStore opens the datastore: leveldb under dir, in memory without one.
func openStore(dir string) (ds.Batching, error) {
	if dir == "" {
		return dssync.MutexWrap(ds.NewMapDatastore()), nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("overlay: data dir: %w", err)
	}
	st, err := leveldb.NewDatastore(filepath.Join(dir, "store"), nil)
	if err != nil {
		return nil, fmt.Errorf("overlay: open datastore in %s: %w", dir, err)
	}
	return st, nil
}

// startHost makes the libp2p host under the resource and connection
// limits, gated by federation admission when there is one.
func (o *Overlay) startHost() error {
	r := o.cfg
	n := r.MaxConnsPerIP
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limitsFor(r.MaxConns, r.MaxFDs)),
		rcmgr.WithLimitPerSubnet([]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: n}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: n}, {PrefixLength: 48, ConnCount: 8 * n}}),
		rcmgr.WithConnRateLimiters(connRateLimiter(n)))
	if err != nil {
		return fmt.Errorf("overlay: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(r.TargetConns*3/4, r.TargetConns, connmgr.WithGracePeriod(r.ConnGrace))
	if err != nil {
		return fmt.Errorf("overlay: connection manager: %w", err)
	}
	hostOpts := o.natOptions()
	if psk := o.PrivateNetwork(); psk != nil {
		hostOpts = append(hostOpts, libp2p.PrivateNetwork(psk))
	}
	o.host, err = libp2p.New(append(hostOpts,
		libp2p.Identity(r.Identity),
		libp2p.ListenAddrs(r.listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, muxer()),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(budgetCM{cm}),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("lsnode"),
	)...)
	if err != nil {
		rm.Close()
		cm.Close()
		return fmt.Errorf("overlay: libp2p host: %w", err)
	}
	o.routed = o.host
	o.host.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.Stat().Direction == network.DirInbound {
			o.opened[1].Add(1)
		} else {
			o.opened[0].Add(1)
		}
	}})
	if r.Federation != nil {
		o.admit = newAdmission(o, r.Federation)
		o.host.SetStreamHandler(o.admit.proto, o.admit.handle)
		o.routed = gatedHost{Host: o.host, a: o.admit}
		o.host.Network().Notify(&network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
			o.admit.disconnected(c.RemotePeer())
		}})
	}
	return nil
}

// dhtOptions configures kad-dht: mode from the reachability setting, the
// overlay's protocol prefix, no providers, values only for benchmarks.
func (o *Overlay) dhtOptions() []dht.Option {
	r := o.cfg
	mode := dht.ModeServer
	switch r.Reachability {
	case ReachPrivate:
		mode = dht.ModeClient
	case ReachAuto:
		mode = dht.ModeAuto
	}
	opts := []dht.Option{
		dht.Mode(mode),
		dht.ProtocolPrefix(protocol.ID(ProtocolPrefix(r.Name))),
		dht.Datastore(o.store),
		dht.DisableProviders(),
		dht.BootstrapPeers(r.bootstrap...),
	}
	if r.BenchmarkValues {
		opts = append(opts, dht.Validator(record.NamespacedValidator{ValueNamespace: opaqueValidator{}}))
	} else {
		// No value store: PUT_VALUE and GET_VALUE are not served, and
		// no namespace validates (pk and ipns included).
		opts = append(opts, dht.DisableValues(), dht.Validator(record.NamespacedValidator{}))
	}
	if r.DisableDHTRefresh || o.feedsRoutes() {
		opts = append(opts, dht.DisableAutoRefresh())
	}
	if r.MaxPerSubnet > 0 && !o.feedsRoutes() {
		// kad-dht's own diversity filter on its routing table (groups by
		// IPv4 /16 or IPv6 ASN): per bucket and for the whole table. A fed
		// table needs none: the view it is fed from caps members per
		// subnet by their announced addresses, and this filter, which
		// knows a peer's addresses only from a connection, would refuse
		// every member this node is not connected to.
		opts = append(opts, dht.RoutingTablePeerDiversityFilter(dht.NewRTPeerDiversityFilter(o.host, r.MaxPerSubnet, 4*r.MaxPerSubnet)))
	}
	opts = append(opts, dht.RoutingTableFilter(func(_ interface{}, p peer.ID) bool {
		if o.admit != nil && o.admit.refusedNow(p) {
			return false
		}
		if !o.feedsRoutes() {
			return true
		}
		// A fed table takes from kad-dht only the view's live members
		// (relayView: the view may not be made yet).
		m := o.relayView.Load()
		if m == nil {
			return false
		}
		alive, _ := m.aliveIn(p)
		return alive
	}))
	return opts
}

// startMembers starts the membership view, its gossip and the
// reachability watcher; Close waits for them.
func (o *Overlay) startMembers() error {
	reach, err := o.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		return fmt.Errorf("overlay: reachability events: %w", err)
	}
	if o.members, err = newMembers(o); err != nil {
		reach.Close()
		return err
	}
	o.relayView.Store(o.members)
	o.routed.SetStreamHandler(o.membersProtocol(), o.members.handle)
	o.wg.Add(3)
	go func() { defer o.wg.Done(); o.watchReachability(reach) }()
	go func() { defer o.wg.Done(); o.members.run(o.ctx) }()
	go func() { defer o.wg.Done(); o.members.warm(o.ctx) }()
	if o.feedsRoutes() {
		o.wg.Add(1)
		go func() { defer o.wg.Done(); o.members.feedRoutes(o.ctx) }()
	}
	return nil
}

// connRateLimiter bounds how fast one address opens connections: libp2p's
// default (a burst of 16, then one every 5 s per IPv4 address) refuses the
// nodes and tools behind one NAT, who all share its address. Scaled with
// the per-address connection bound n: a burst of 2n, then n/8 per second
// (8/s for the default 64); loopback is unlimited.
func connRateLimiter(n int) *rate.Limiter {
	per := rate.Limit{RPS: max(1, float64(n)/8), Burst: 2 * n}
	wide := rate.Limit{RPS: 8 * per.RPS, Burst: 8 * per.Burst}
	return &rate.Limiter{
		NetworkPrefixLimits: []rate.PrefixLimit{
			{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
			{Prefix: netip.MustParsePrefix("::1/128")},
		},
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: per}},
			IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 56, Limit: per}, {PrefixLength: 48, Limit: wide}},
			GracePeriod:      time.Minute,
		},
	}
}

// limitsFor sizes the resource manager for an overlay member: the defaults
// scaled to 256 MiB and maxFDs descriptors, with connection limits raised so
// a node can hold a connection to each of maxConns members in either
// direction (the memory-scaled defaults allow 80 inbound, too few for a
// bootstrap node of a 100-node overlay).
func limitsFor(maxConns, maxFDs int) rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	// Identify runs once on each new connection: a joining node connects
	// to its probe targets, ring neighbours and routing table at once, and
	// the default (80 streams at 256 MiB) failed hundreds of identifies
	// per joiner at 300 nodes, leaving kad-dht without their protocols.
	idn := rcmgr.BaseLimit{StreamsInbound: 2 * maxConns, StreamsOutbound: 2 * maxConns, Streams: 4 * maxConns, Memory: 16 << 20}
	limits.AddServiceLimit(identify.ServiceName, idn, rcmgr.BaseLimitIncrease{})
	for _, id := range [...]protocol.ID{identify.ID, identify.IDPush} {
		limits.AddProtocolLimit(id, idn, rcmgr.BaseLimitIncrease{})
	}
	conns := rcmgr.LimitVal(2 * maxConns)
	scope := rcmgr.ResourceLimits{Conns: conns, ConnsInbound: conns, ConnsOutbound: conns,
		FD: rcmgr.LimitVal(max(maxFDs, 2*maxConns+64))}
	// Streams: a replica serves many concurrent requests per peer on the
	// overlay's own protocols, which fall under the default protocol and
	// peer scopes; their defaults reset streams under REGISTER load
	// (StreamResourceLimitExceeded). Per-peer request rate limits belong
	// to the protocols themselves.
	// Memory grows with them: yamux reserves each stream's receive window
	// from the resource manager and, when a reservation fails, tears down
	// the whole connection. These are caps, not allocations.
	const mib = 1 << 20
	streams := rcmgr.ResourceLimits{Streams: 1024, StreamsInbound: 1024, StreamsOutbound: 1024, Memory: 256 * mib}
	system := scope
	system.Streams, system.StreamsInbound, system.StreamsOutbound = 16384, 16384, 16384
	system.Memory = 2048 * mib
	// New streams count as transient until their protocol is negotiated:
	// a burst of requests opens many at once ("cannot reserve outbound
	// stream" under call load with the default).
	transient := scope
	transient.Streams, transient.StreamsInbound, transient.StreamsOutbound = 4096, 4096, 4096
	transient.Memory = 256 * mib
	partial := rcmgr.PartialLimitConfig{System: system, Transient: transient,
		ProtocolDefault:     rcmgr.ResourceLimits{Streams: 8192, StreamsInbound: 8192, StreamsOutbound: 8192, Memory: 1024 * mib},
		ProtocolPeerDefault: streams, PeerDefault: streams,
		Conn: rcmgr.ResourceLimits{Memory: 256 * mib}}
	return partial.Build(limits.Scale(256<<20, maxFDs))
}

// Join connects to the bootstrap peers, pulls their membership view and
// bootstraps kad-dht (a full view: fills its routing table from the view
// instead, viewroutes.go). It returns ErrBootstrap if bootstrap peers were
// configured and none answered; the node keeps retrying them in the background.
func (o *Overlay) Join(ctx context.Context) error {
	if len(o.cfg.bootstrap) == 0 {
		return nil
	}
	var (
		mu   sync.Mutex
		ok   int
		errs []error
		wg   sync.WaitGroup
	)
	for _, ai := range o.cfg.bootstrap {
		if ai.ID == o.host.ID() {
			continue
		}
		wg.Add(1)
		go func(ai peer.AddrInfo) {
			defer wg.Done()
			err := o.host.Connect(ctx, ai)
			if err == nil {
				err = o.members.join(ctx, ai.ID, false)
			}
			if err != nil {
				err = o.explainJoin(ai, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ai.ID, err))
				return
			}
			ok++
		}(ai)
	}
	wg.Wait()
	if ok == 0 && len(errs) > 0 {
		all := errors.Join(errs...)
		if errors.Is(all, ErrMembership) {
			// Refused, not unreachable: retrying will not help.
			return all
		}
		return fmt.Errorf("%w: %w", ErrBootstrap, all)
	}
	if o.feedsRoutes() {
		return nil // the view fills kad-dht's table (viewroutes.go)
	}
	if err := o.dht.Bootstrap(ctx); err != nil {
		return err
	}
	if o.cfg.View == ViewPartial {
		// The bootstrap peers' regions may hold none of this node's:
		// join through the members kad-dht finds nearest it too (none,
		// when this node is the first of its region).
		o.joinRegion(ctx)
	}
	return nil
}

// explainJoin turns a failed join through p into an error that says what
// the operator can do about it.
func (o *Overlay) explainJoin(ai peer.AddrInfo, err error) error {
	p := ai.ID
	if errors.Is(err, ErrMembership) {
		return err
	}
	admit := o.Protocol("admit", "1.0.0")
	if o.admit == nil {
		if ps, _ := o.host.Peerstore().SupportsProtocols(p, admit); len(ps) > 0 {
			return fmt.Errorf("%w: %s is a member of federation overlay %q, which admits only nodes with a member certificate (overlay.member_cert; lsnode ca sign): %v", ErrMembership, p, o.cfg.Name, err)
		}
	}
	// A handshake that failed or stalled: the two sides may not share a
	// private-network key (retrying will not help), or the peer is busy
	// (it will). What the peer says first on a fresh connection tells:
	// libp2p's multistream header in clear, or bytes under a key.
	msg := err.Error()
	if !strings.Contains(msg, "failed to negotiate security protocol") {
		// A refused TCP connect is a peer not (yet) listening, even if a
		// probe a moment later gets through (nodes starting together).
		if strings.Contains(msg, "identify") || o.host.Network().Connectedness(p) == network.Connected ||
			!strings.Contains(msg, "failed to dial") || strings.Contains(msg, "connect: connection refused") {
			return err
		}
	}
	psk := o.PrivateNetwork()
	switch firstWords(o.ctx, ai) {
	case speaksClear:
		if psk == nil {
			return err // a busy peer: the join is retried
		}
		return fmt.Errorf("%w: handshake with %s failed: this node has a private-network key (fingerprint %s) and the peer has none: %v", ErrMembership, p, pki.PSKFingerprint(psk), err)
	case speaksKeyed:
		if psk != nil {
			return fmt.Errorf("%w: handshake with %s failed: this node's private-network key (fingerprint %s) is not the overlay's: %v", ErrMembership, p, pki.PSKFingerprint(psk), err)
		}
		return fmt.Errorf("%w: handshake with %s failed: overlay %q is a private network, and its members need its key (overlay.psk_file): %v", ErrMembership, p, o.cfg.Name, err)
	}
	return err // unreachable or silent: nothing to tell yet
}

// HandleClients serves a client-facing protocol (lsp's client face: tools
// and registrars that are not overlay members). An open overlay serves
// anyone who connects; a federation overlay serves its admitted members and
// connections from loopback (the operator's own tools on this machine),
// which with a private-network key must hold the key too.
func (o *Overlay) HandleClients(pid protocol.ID, h network.StreamHandler) {
	if o.admit == nil {
		o.host.SetStreamHandler(pid, h)
		return
	}
	gated := o.admit.wrap(h)
	o.host.SetStreamHandler(pid, func(s network.Stream) {
		if ip, err := manet.ToIP(s.Conn().RemoteMultiaddr()); err == nil && ip.IsLoopback() {
			h(s)
			return
		}
		gated(s)
	})
}

// PrivateNetwork returns the overlay's private-network key, nil if none:
// a client host must use it to connect.
func (o *Overlay) PrivateNetwork() pnet.PSK {
	if f := o.cfg.Federation; f != nil && f.PSK != nil {
		return f.PSK
	}
	return o.cfg.PrivateNetwork
}

// What a libp2p listener sends first on a new TCP connection.
const (
	speaksNothing = iota // unreachable, or silent for 2 s
	speaksClear          // multistream-select's header: no private-network key
	speaksKeyed          // other bytes: a nonce and ciphertext under a key
)

// firstWords connects to ai's addresses and reads what the listener says
// first: it speaks first, multistream-select's header, under its
// private-network key if it has one.
func firstWords(ctx context.Context, ai peer.AddrInfo) int {
	for _, a := range ai.Addrs {
		var d manet.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, a)
		cancel()
		if err != nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, len(multistreamHeader))
		n, _ := io.ReadFull(c, buf)
		c.Close()
		switch {
		case n == 0:
			continue
		case bytes.HasPrefix([]byte(multistreamHeader), buf[:n]):
			return speaksClear
		default:
			return speaksKeyed
		}
	}
	return speaksNothing
}

// multistreamHeader is multistream-select's first message: its length,
// then its protocol name.
const multistreamHeader = "\x13/multistream/1.0.0\n"

// Host returns the libp2p host the overlay's protocols use. In a federation
// overlay its stream handlers serve, and its streams open to, admitted
// members only.
func (o *Overlay) Host() host.Host { return o.routed }

// DHT returns the kad-dht instance.
func (o *Overlay) DHT() *dht.IpfsDHT { return o.dht }

// Datastore returns the node's embedded datastore (shared with kad-dht; use a
// key prefix of your own).
func (o *Overlay) Datastore() ds.Batching { return o.store }

// Persistent reports whether Datastore outlives the process (Config.DataDir
// is set); without one it is a map in memory.
func (o *Overlay) Persistent() bool { return o.cfg.DataDir != "" }

// ID returns this node's peer ID.
func (o *Overlay) ID() peer.ID { return o.host.ID() }

// Name returns the overlay's name.
func (o *Overlay) Name() string { return o.cfg.Name }

// Protocol returns the protocol ID /lsp/<name>/<sub>/<version>.
func (o *Overlay) Protocol(sub, version string) protocol.ID {
	return ProtocolID(o.cfg.Name, sub, version)
}

// Addrs returns this node's full multiaddrs (with /p2p/<id>).
func (o *Overlay) Addrs() []string {
	var out []string
	for _, a := range o.host.Addrs() {
		out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+o.host.ID().String())).String())
	}
	return out
}

// Closest returns up to n live members closest to key under Kademlia's XOR
// metric (the key is hashed as kad-dht hashes keys), nearest first. The result
// may include this node. It needs no network round trip. A partial view
// answers for a key outside its region from the route Route cached (none
// before).
func (o *Overlay) Closest(key string, n int) []peer.ID {
	if ps, ok := o.members.placed(kb.ConvertKey(key), n); ok {
		return ps
	}
	ps, _ := o.routes.get(key, n)
	return ps
}

// Suspected returns up to n members nearest key (nearest first) that
// Closest leaves out because they are suspected (by this node's Suspect,
// or by another member's accusation not yet refuted here): worth asking
// when the others had nothing, since a restarted member comes back before
// its suspicion ends here.
func (o *Overlay) Suspected(key string, n int) []peer.ID {
	return o.members.suspected(kb.ConvertKey(key), n)
}

// Redial drops the dial backoff this node's host keeps for p after a
// failed dial (5 s at first, growing to minutes), at most once per p per
// redialEvery: a member suspected for such a failure may be back,
// restarted on the same address, long before it ends, and a reader
// asking it would otherwise fail at once without dialling. It reports
// whether it did.
func (o *Overlay) Redial(p peer.ID) bool {
	if !o.redials.allow(p, time.Now()) {
		return false
	}
	o.clearDialBackoff(p)
	return true
}

// redialEvery: how often Redial drops one peer's backoff at most (so
// lookups that find nothing dial a dead suspect at most this often, as
// the backoff would at its first step), and maxRedials the peers it
// remembers.
const (
	redialEvery = time.Second
	maxRedials  = 4096
)

// redials remembers when Redial last dropped each peer's backoff.
type redials struct {
	mu   sync.Mutex
	last map[peer.ID]time.Time
}

func (r *redials) allow(p peer.ID, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.last[p]; ok && now.Sub(t) < redialEvery {
		return false
	}
	if r.last == nil {
		r.last = map[peer.ID]time.Time{}
	}
	if len(r.last) >= maxRedials {
		for q, t := range r.last {
			if now.Sub(t) >= redialEvery {
				delete(r.last, q)
			}
		}
		if len(r.last) >= maxRedials {
			return false
		}
	}
	r.last[p] = now
	return true
}

// ClosestIterative runs kad-dht's iterative lookup for key and returns up to n
// peers nearest first, this node included when it is closer than the ones
// found. Use it when Closest's view may be stale.
func (o *Overlay) ClosestIterative(ctx context.Context, key string, n int) ([]peer.ID, error) {
	ps, err := o.dht.GetClosestPeers(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("overlay: closest peers: %w", err)
	}
	ps = append(ps, o.host.ID())
	ps = kb.SortClosestPeers(ps, kb.ConvertKey(key))
	if len(ps) > n {
		ps = ps[:n]
	}
	return ps, nil
}

// Alive reports whether p is a live member in this node's view. A
// partial view cannot tell for a peer outside its region: it says yes
// unless a dial to p failed a moment ago (Suspect).
func (o *Overlay) Alive(p peer.ID) bool {
	alive, in := o.members.aliveIn(p)
	if !in {
		return !o.routes.suspected(p)
	}
	return alive
}

// Joined reports whether this node has joined the overlay: a view pulled
// from a member (or a member joined it), or no bootstrap peer configured
// but itself (the overlay's first node). Until then its view cannot tell
// "no such binding" from "not seen yet".
func (o *Overlay) Joined() bool {
	if o.cfg.ServeAlone {
		return true
	}
	for _, ai := range o.cfg.bootstrap {
		if ai.ID != o.host.ID() {
			return o.members.joined()
		}
	}
	return true
}

// Members returns the live members, this node included unless it is a
// client.
func (o *Overlay) Members() []peer.ID { return o.members.list() }

// MemberCount is len(Members()) without the list (it may lag a member's
// probation or local suspicion running out by a second).
func (o *Overlay) MemberCount() int { return o.members.count() }

// Suspect marks p as unreachable from here for FailAfter: it is left out of
// Closest until its heartbeat is seen again after that.
func (o *Overlay) Suspect(p peer.ID) {
	o.members.suspect(p)
	o.routes.suspect(p, o.cfg.FailAfter)
}

// Announce sets the services this node advertises in its membership
// entry (RFC 6940's TURN-SERVICE idea: "turn:host:port?transport=udp").
// At most 8, each at most 256 bytes; the rest is dropped.
func (o *Overlay) Announce(services ...string) {
	keep := slices.Clone(o.members.base)
	for _, s := range services {
		if len(s) <= maxServiceBytes && len(keep) < maxServices && s != relayService {
			keep = append(keep, s)
		}
	}
	o.members.setServices(keep)
}

// Bounds of announced services, per member.
const (
	maxServices     = 8
	maxServiceBytes = 256
)

// Services returns the services announced by live members (this node
// included), by peer. Announcements are as trustworthy as the member that
// signed them: use them to find candidates, not to trust them.
func (o *Overlay) Services() map[peer.ID][]string {
	a := o.members.announced()
	out := make(map[peer.ID][]string, len(a))
	for id, svcs := range a {
		out[peer.ID(id)] = slices.Clone(svcs)
	}
	return out
}

// AnyService reports whether a live member (this node included) announces
// a service match accepts: Services without the copy, for per-request
// checks. Its cost is the members that announce a service, not the view's
// size (it may lag a change by a second).
func (o *Overlay) AnyService(match func(string) bool) bool {
	for _, svcs := range o.members.announced() {
		if slices.ContainsFunc(svcs, match) {
			return true
		}
	}
	return false
}

// Changes returns a channel that receives a value (coalesced) whenever the set
// of live members changes. Each call returns a new subscription; cancel it
// with the returned function.
func (o *Overlay) Changes() (<-chan struct{}, func()) { return o.members.subscribe() }

// Size estimates the number of nodes in the overlay: the size of the live
// membership view, which gossip keeps complete; before the view holds anyone
// else (just joined), an estimate from the density of the kad-dht routing
// table around this node.
func (o *Overlay) Size() int {
	if n, live := o.members.liveScaled(); live > 1 {
		return n
	}
	est, _ := o.routingTableEstimate()
	return max(1, est)
}

// estimateSample: routingTableEstimate's estimate is a median over this
// many of the nearest peers.
const estimateSample = 8

// routingTableEstimate: in a network of N nodes with uniformly random IDs, the
// i-th closest peer to a point lies at normalised XOR distance ≈ i/(N+1).
// sample is how many peers it took (fewer than estimateSample: the table
// holds no more).
func (o *Overlay) routingTableEstimate() (est, sample int) {
	self := kb.ConvertPeerID(o.host.ID())
	near := o.dht.RoutingTable().NearestPeers(self, estimateSample)
	if len(near) == 0 {
		return 0, 0
	}
	// One estimate per neighbour, then their median: a mean is ruled by a
	// single neighbour that happens to sit very close (an estimate of 334
	// for 12 nodes was seen).
	var ests []float64
	for i, p := range near {
		d := normDistance(self, kb.ConvertPeerID(p))
		if d <= 0 {
			continue
		}
		ests = append(ests, float64(i+1)/d-1)
	}
	if len(ests) == 0 {
		return 0, len(near)
	}
	slices.Sort(ests)
	return int(math.Round(ests[len(ests)/2])) + 1, len(near)
}

func normDistance(a, b kb.ID) float64 {
	var d float64
	for i := 0; i < 8 && i < len(a); i++ {
		d = d*256 + float64(a[i]^b[i])
	}
	return d / math.Pow(256, 8)
}

// Close leaves the overlay (announcing it to a few members), stops every
// goroutine and closes the host, the DHT and the datastore.
func (o *Overlay) Close() error {
	var errs []error
	o.once.Do(func() {
		if o.members != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			o.members.leave(ctx)
			cancel()
		}
		o.cancel()
		if o.members != nil {
			o.members.wg.Wait()
		}
		if o.dht != nil {
			errs = append(errs, o.dht.Close())
		}
		if o.host != nil {
			errs = append(errs, o.host.Close())
		}
		o.wg.Wait()
		if o.store != nil {
			errs = append(errs, o.store.Close())
		}
	})
	return errors.Join(errs...)
}

// opaqueValidator accepts any value up to MaxValueSize; on ties it keeps the first.
type opaqueValidator struct{}

func (opaqueValidator) Validate(_ string, v []byte) error {
	if len(v) > MaxValueSize {
		return fmt.Errorf("overlay: value of %d bytes exceeds %d", len(v), MaxValueSize)
	}
	return nil
}

func (opaqueValidator) Select(string, [][]byte) (int, error) { return 0, nil }
