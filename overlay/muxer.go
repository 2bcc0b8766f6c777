package overlay

import (
	"time"

	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	yamuxcfg "github.com/libp2p/go-yamux/v5"
)

// muxRTTInterval: how often a connection measures its round trip time
// with a ping of its own. Nothing of lsnode reads that figure; yamux cannot
// turn it off, so it is made rare.
const muxRTTInterval = 30 * time.Minute

// muxer is libp2p's yamux with its own keepalive pings off. Left on, each
// end of every connection pings every 30 s, and yamux's round-trip
// measurement pings again every 30 s: on an idle full view of 100 members
// that was most of a node's traffic, two ping exchanges per connection and
// end each half minute, so a node's idle cost grew with its connections.
// A connection stays watched without them: the TCP transport sets kernel
// keepalives (probes after 30 s idle, which also hold NAT mappings open),
// a stream that cannot be written fails its request, and a member's
// failure is the membership's probes' to find, not a connection's.
func muxer() *yamux.Transport {
	cfg := yamuxcfg.Config(*yamux.DefaultTransport)
	cfg.EnableKeepAlive = false
	cfg.MeasureRTTInterval = muxRTTInterval
	t := yamux.Transport(cfg)
	return &t
}
