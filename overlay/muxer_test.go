package overlay

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// TestIdleConnectionIsQuiet: a connection that carries nothing sends no
// payload for 33 s, longer than libp2p's yamux keepalive and round-trip
// intervals (30 s each; the default subtest checks it sees them), shorter
// than lsnode's (muxKeepAlive): an idle member's traffic must not grow
// with its connections. The kernel's TCP keepalive probes carry no
// payload, so they do not count.
func TestIdleConnectionIsQuiet(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 35 s")
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Fatal("ss (iproute2) is needed to read the connection's byte counts")
	}
	for _, tc := range []struct {
		name  string
		mux   *yamux.Transport
		quiet bool
	}{{"ours", muxer(), true}, {"default", yamux.DefaultTransport, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := quietHost(t, tc.mux, true), quietHost(t, tc.mux, false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
				t.Fatal(err)
			}
			conns := b.Network().ConnsToPeer(a.ID())
			if len(conns) != 1 {
				t.Fatalf("%d connections", len(conns))
			}
			port, peerPort := localPort(t, conns[0].LocalMultiaddr()), localPort(t, conns[0].RemoteMultiaddr())
			time.Sleep(2 * time.Second) // identify's exchange
			before := payloadBytes(t, port, peerPort)
			time.Sleep(33 * time.Second)
			after := payloadBytes(t, port, peerPort)
			t.Logf("payload bytes on the connection (local port %d), sent+received: %d, then %d 33 s later", port, before, after)
			if quiet := after == before; quiet != tc.quiet {
				t.Fatalf("quiet %v, want %v: %d bytes over 33 s idle", quiet, tc.quiet, after-before)
			}
		})
	}
}

func quietHost(t *testing.T, mux *yamux.Transport, listen bool) host.Host {
	t.Helper()
	addrs := libp2p.NoListenAddrs
	if listen {
		addrs = libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")
	}
	h, err := libp2p.New(addrs, libp2p.Transport(tcp.NewTCPTransport), libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, mux), libp2p.DisableMetrics(), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func localPort(t *testing.T, a ma.Multiaddr) int {
	t.Helper()
	na, err := manet.ToNetAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	ta, ok := na.(*net.TCPAddr)
	if !ok {
		t.Fatalf("not TCP: %v", na)
	}
	return ta.Port
}

var ssBytes = regexp.MustCompile(`bytes_(?:sent|received):(\d+)`)

// payloadBytes: what the kernel counts as sent and received on the TCP
// socket from local port to peer port (ss -ti).
func payloadBytes(t *testing.T, port, peer int) int64 {
	t.Helper()
	out, err := exec.Command("ss", "-tinH", "state", "established", fmt.Sprintf("( sport = :%d and dport = :%d )", port, peer)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	ms := ssBytes.FindAllSubmatch(out, -1)
	if len(ms) == 0 {
		t.Fatalf("no byte counts for port %d in:\n%s", port, out)
	}
	var n int64
	for _, m := range ms {
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		n += v
	}
	return n
}
