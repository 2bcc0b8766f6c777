package overlay

import (
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// dhtHost is the host kad-dht sees. kad-dht protects every peer of its
// routing table's two lowest buckets from the connection manager (up to 40
// connections, most of them idle), which keeps a node connected to a share
// of the overlay that grows with it. Here the routing table is the
// fallback (Closest answers from the membership view), so its peers are
// only tagged: the connection manager may close them when idle, and
// kad-dht dials again when it needs one.
type dhtHost struct{ host.Host }

func (h dhtHost) ConnManager() connmgr.ConnManager { return tagOnly{h.Host.ConnManager()} }

// tagOnly turns Protect into a tag of the same weight kad-dht gives its
// other routing-table peers.
type tagOnly struct{ connmgr.ConnManager }

const dhtTagValue = 5

func (t tagOnly) Protect(p peer.ID, tag string) { t.TagPeer(p, "dht-"+tag, dhtTagValue) }

func (t tagOnly) Unprotect(p peer.ID, tag string) bool {
	t.UntagPeer(p, "dht-"+tag)
	return false
}
