package overlay

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// NewLightHost returns a client-only libp2p host with an ephemeral identity
// and no listener: enough to talk the client protocol to an lsnode without
// joining the overlay; it can dial a NAT'd node through a circuit relay
// address. psk is the overlay's private-network key (nil: none).
// Close it when done.
func NewLightHost(psk pnet.PSK) (host.Host, error) {
	var opts []libp2p.Option
	if psk != nil {
		opts = append(opts, libp2p.PrivateNetwork(psk))
	}
	h, err := libp2p.New(append(opts,
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, muxer()),
		libp2p.EnableRelay(),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("lsnode-client"),
	)...)
	if err != nil {
		return nil, fmt.Errorf("overlay: client host: %w", err)
	}
	return h, nil
}
