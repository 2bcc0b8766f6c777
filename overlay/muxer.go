package overlay

import (
	"time"

	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	yamuxcfg "github.com/libp2p/go-yamux/v5"
)

// muxKeepAlive: a connection that has received nothing for this long is
// pinged, and closed when the ping is not answered within yamux's write
// timeout (10 s). libp2p keeps yamux's 30 s. A received frame (a pong
// included) restarts the wait at both ends, so an idle connection costs
// one ping exchange per interval.
const muxKeepAlive = 2 * time.Minute

// muxRTTInterval: how often a connection measures its round trip time
// with a ping of its own. yamux uses the figure to size stream receive
// windows, which lsnode's small messages do not need; it cannot be turned
// off, so it is made rare.
const muxRTTInterval = 30 * time.Minute

// muxer is libp2p's yamux with fewer pings. With libp2p's settings each
// end of every connection pinged for its keepalive and again for its
// round-trip time each half minute: on an idle full view of 100 members
// that was most of a node's traffic, so its idle cost grew with its
// connections. The keepalive stays, at muxKeepAlive: the kernel's TCP
// keepalives (libp2p's transport sets 30 s idle, Go probes every 15 s, 9
// times) close a dead connection only when nothing is in flight, and a
// connection whose other end is gone (a NAT flushed, the peer moved to
// another address with the same key) while a request is unacknowledged
// would otherwise stay open for the kernel's retransmission limit, about
// 15 minutes, with every request to that peer timing out on it.
func muxer() *yamux.Transport {
	cfg := yamuxcfg.Config(*yamux.DefaultTransport)
	cfg.KeepAliveInterval = muxKeepAlive
	cfg.MeasureRTTInterval = muxRTTInterval
	t := yamux.Transport(cfg)
	return &t
}
