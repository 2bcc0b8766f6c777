package overlay

import (
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/peer"
)

// kbucketTag is the tag kad-dht protects the peers of its routing table's
// two farthest buckets with (kad-dht's own constant, not exported).
const kbucketTag = "kbucket"

// kbucketValue is what such a peer is worth to the connection manager
// here: more than a peer kad-dht merely tags (5), so it is trimmed after
// those, but trimmed.
const kbucketValue = 10

// budgetCM is the connection manager the host runs under. It is libp2p's,
// except that kad-dht's protection of its two farthest buckets becomes a
// tag. In an overlay of a few hundred members those buckets hold up to 40
// peers (2 × K), and protected connections are never trimmed, so the
// connection budget (TargetConns) could not go below about 40 plus the
// ring neighbours: each connection costs some 50 KB (yamux session,
// noise's buffer, 5 goroutines with the streams kad-dht keeps open). The
// routing table does not need the connections: its entries are peer IDs
// and addresses, refreshed by kad-dht's own queries, which dial.
type budgetCM struct {
	connmgr.ConnManager
}

func (c budgetCM) Protect(p peer.ID, tag string) {
	if tag == kbucketTag {
		c.ConnManager.TagPeer(p, kbucketTag, kbucketValue)
		return
	}
	c.ConnManager.Protect(p, tag)
}

func (c budgetCM) Unprotect(p peer.ID, tag string) bool {
	if tag == kbucketTag {
		return false // kad-dht unprotects and untags together
	}
	return c.ConnManager.Unprotect(p, tag)
}
