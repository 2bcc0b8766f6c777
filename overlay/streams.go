package overlay

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// The overlay's vocabulary for the protocols built on it (lsp, the media
// relay's control): they speak these names and never import libp2p, so the
// transport stays this package's business.
type (
	// PeerID names an overlay member (its libp2p peer ID).
	PeerID = peer.ID
	// AddrInfo is a member's ID and its addresses.
	AddrInfo = peer.AddrInfo
	// Stream is one bidirectional stream to a member.
	Stream = network.Stream
	// Protocol names a protocol spoken over streams (see ProtocolID).
	Protocol = protocol.ID
	// PSK is a private overlay's pre-shared key.
	PSK = pnet.PSK
)

// DecodePeerID parses a peer ID in its text form.
func DecodePeerID(s string) (PeerID, error) { return peer.Decode(s) }

// Streams opens streams to members: what a request/response protocol on the
// overlay needs from a host. *Overlay and *Dialer implement it.
type Streams interface {
	// NewStream opens a stream to p speaking proto.
	NewStream(ctx context.Context, p PeerID, proto Protocol) (Stream, error)
	// Connected reports whether a connection to p is open now.
	Connected(p PeerID) bool
}

// newStream opens a stream on h, also over a relayed (limited) connection:
// a NAT'd member is reached through its circuit relay.
func newStream(ctx context.Context, h host.Host, p PeerID, proto Protocol) (Stream, error) {
	return h.NewStream(network.WithAllowLimitedConn(ctx, "lsnode"), p, proto)
}

// NewStream opens a stream to member p speaking proto. In a federation
// overlay only admitted members are reached.
func (o *Overlay) NewStream(ctx context.Context, p PeerID, proto Protocol) (Stream, error) {
	o.members.addrsFor(p)
	return newStream(ctx, o.routed, p, proto)
}

// Connected reports whether a connection to p is open now.
func (o *Overlay) Connected(p PeerID) bool {
	return o.routed.Network().Connectedness(p) == network.Connected
}

// SetStreamHandler serves proto to members (in a federation overlay,
// admitted members only; see HandleClients for a client-facing protocol).
func (o *Overlay) SetStreamHandler(proto Protocol, h func(Stream)) {
	o.routed.SetStreamHandler(proto, h)
}

// RemoveStreamHandler stops serving proto.
func (o *Overlay) RemoveStreamHandler(proto Protocol) { o.routed.RemoveStreamHandler(proto) }

// Dialer is a client of the overlay that is not a member: an ephemeral
// identity, no listener, enough to speak a client protocol to a node (the
// CLI's publish/lookup, a registrar using a remote node). Close it when done.
type Dialer struct {
	h host.Host
}

// NewDialer returns a Dialer; psk is the overlay's private-network key
// (nil: none).
func NewDialer(psk PSK) (*Dialer, error) {
	h, err := NewLightHost(psk)
	if err != nil {
		return nil, err
	}
	return &Dialer{h: h}, nil
}

// Connect connects to ai (its addresses are remembered for an hour).
func (d *Dialer) Connect(ctx context.Context, ai AddrInfo) error {
	return d.h.Connect(ctx, ai)
}

// AddAddrs remembers ai's addresses for later streams.
func (d *Dialer) AddAddrs(ai AddrInfo) {
	if len(ai.Addrs) > 0 {
		d.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
	}
}

// NewStream opens a stream to p speaking proto.
func (d *Dialer) NewStream(ctx context.Context, p PeerID, proto Protocol) (Stream, error) {
	return newStream(ctx, d.h, p, proto)
}

// Connected reports whether a connection to p is open now.
func (d *Dialer) Connected(p PeerID) bool {
	return d.h.Network().Connectedness(p) == network.Connected
}

// Close closes the dialer's host and its connections.
func (d *Dialer) Close() error {
	if err := d.h.Close(); err != nil {
		return fmt.Errorf("overlay: dialer: %w", err)
	}
	return nil
}
