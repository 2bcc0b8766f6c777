package overlay

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// overlay started in a test is closed, and Close waits for what it started.
//
// Ignored: when libp2p.New fails to listen (TestConfigErrors asks for an
// address this machine does not have), go-libp2p v0.51 rolls its fx graph
// back without closing the swarm and peerstore it built; New closes the
// resource and connection managers it made itself. An overlay left open
// would still show: its own goroutines and kad-dht's are not ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/net/swarm.(*connectionEventsEmitter).runEmitter"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/net/swarm.(*DialBackoff).background"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/host/peerstore/pstoremem.(*memoryAddrBook).background"),
	)
}
