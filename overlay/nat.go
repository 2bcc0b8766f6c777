package overlay

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/lsnode/lsnode/overlay/membership"
)

// relayService is the service a member with RelayService announces in its
// gossip entry; private nodes take their relay candidates from it.
const relayService = "libp2p:circuit-relay-v2"

// RelayReservations bounds the reservations a relay member holds, in all
// and per IP address (the NAT'd nodes behind one NAT share one).
const RelayReservations = 256

// natOptions are the libp2p options for the node's reachability and
// relay role.
func (o *Overlay) natOptions() []libp2p.Option {
	r := o.cfg
	var opts []libp2p.Option
	switch r.Reachability {
	case ReachPublic:
		// Members are DHT servers on addresses they were told to use.
		// Forcing reachability also replaces AutoNAT's background prober,
		// whose event subscription can deadlock host Close under load.
		opts = append(opts, libp2p.ForceReachabilityPublic())
		if !r.RelayService {
			opts = append(opts, libp2p.DisableRelay())
		}
	default:
		// Private or auto: the relay transport to reserve on members and
		// to dial relayed peers, and hole punching to leave the relay.
		step := max(r.GossipInterval, time.Second)
		var hp []holepunch.Option
		if r.HolePunchTracer != nil {
			hp = append(hp, holepunch.WithTracer(r.HolePunchTracer))
		}
		opts = append(opts, libp2p.EnableRelay(), libp2p.EnableHolePunching(hp...),
			libp2p.EnableAutoRelayWithPeerSource(o.relayCandidates,
				autorelay.WithMinCandidates(1),
				autorelay.WithBootDelay(5*step),
				// The peer source is the local membership view: cheap
				// to ask again, and empty for the first gossip round.
				autorelay.WithMinInterval(step),
				autorelay.WithBackoff(30*step)))
		if r.Reachability == ReachPrivate {
			opts = append(opts, libp2p.ForceReachabilityPrivate())
		}
	}
	if r.RelayService {
		rc := relayv2.DefaultResources()
		rc.MaxReservations = RelayReservations
		rc.MaxReservationsPerIP = RelayReservations
		rc.MaxReservationsPerASN = RelayReservations
		rc.Limit = &relayv2.RelayLimit{Duration: 2 * time.Minute, Data: 1 << 20}
		opts = append(opts, libp2p.EnableRelay(), libp2p.EnableRelayService(relayv2.WithResources(rc)),
			libp2p.EnableNATService(), libp2p.AutoNATServiceRateLimit(300, 10, time.Minute))
	}
	return opts
}

// relayCandidates is autorelay's peer source: live members that announce
// the relay service, in random order.
func (o *Overlay) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	ch := make(chan peer.AddrInfo, max(num, 0))
	defer close(ch)
	m := o.relayView.Load() // autorelay starts with the host, before the view
	if m == nil || num <= 0 {
		return ch
	}
	var cands []peer.AddrInfo
	m.each(func(id peer.ID, e *membership.Entry) bool {
		if id != m.self && len(e.Addrs) > 0 && slices.Contains(e.Services, relayService) {
			cands = append(cands, peer.AddrInfo{ID: id, Addrs: decodeAddrs(e.Addrs)})
		}
		return true
	})
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	for _, c := range cands[:min(num, len(cands))] {
		ch <- c
	}
	return ch
}

// watchReachability follows AutoNAT (or the forced value): a node serves
// as a member only while it is publicly reachable.
func (o *Overlay) watchReachability(sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-o.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			r := e.(event.EvtLocalReachabilityChanged).Reachability
			prev := network.Reachability(o.reach.Swap(int32(r)))
			if r != prev {
				o.cfg.Logger.Info("reachability", "now", r.String(), "serving", o.serving())
			}
		}
	}
}

// Reachability is the node's reachability as AutoNAT (or its
// configuration) last decided: Public, Private or Unknown.
func (o *Overlay) Reachability() network.Reachability {
	return network.Reachability(o.reach.Load())
}

// serving reports whether this node is a member others place replicas on:
// not a client and, with reachability auto, found public.
func (o *Overlay) serving() bool {
	switch o.cfg.Reachability {
	case ReachPublic:
		return true
	case ReachAuto:
		return o.Reachability() == network.ReachabilityPublic
	}
	return false
}

// RelayedAddrs returns this node's announced circuit relay addresses (its
// reservations), empty while it has none.
func (o *Overlay) RelayedAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range o.host.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			out = append(out, a)
		}
	}
	return out
}
