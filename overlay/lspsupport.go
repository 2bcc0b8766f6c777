package overlay

import (
	"context"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
)

// HostStreams adapts a libp2p host the caller holds (a NewLightHost whose
// connections a test inspects, say) to Streams, opening streams the way
// *Overlay and *Dialer do.
func HostStreams(h host.Host) Streams { return hostStreams{h} }

type hostStreams struct{ h host.Host }

func (s hostStreams) NewStream(ctx context.Context, p PeerID, proto Protocol) (Stream, error) {
	return newStream(ctx, s.h, p, proto)
}

func (s hostStreams) Connected(p PeerID) bool {
	return s.h.Network().Connectedness(p) == network.Connected
}
