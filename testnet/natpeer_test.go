package testnet_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/testnet"
)

// TestMain runs this test binary as the NAT'd peer of TestNetnsBed when
// the test starts it inside a testbed namespace (LSNODE_BED_PEER set).
func TestMain(m *testing.M) {
	if os.Getenv("LSNODE_BED_RTP") != "" {
		if err := rtpPeer(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "rtp peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv("LSNODE_BED_PEER") != "" {
		if err := bedPeer(); err != nil {
			report(map[string]any{"event": "error", "error": err.Error()})
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// peerEvent is one line the NAT'd peer reports to the test.
type peerEvent struct {
	Event   string    `json:"event"`
	Error   string    `json:"error,omitempty"`
	Ms      float64   `json:"ms,omitempty"`
	Relays  []string  `json:"relays,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	Lookups []float64 `json:"lookups_ms,omitempty"`
	Rounds  int       `json:"rounds,omitempty"` // of hole punching, for "direct"
}

// punchWait is how long a round of hole punching gets before the peer
// tries another from a fresh node, at most maxPunches rounds. A round of
// the target's DCUtR can take 40 s (a direct dial and three attempts, each
// up to 10 s).
const (
	punchWait  = 45 * time.Second
	maxPunches = 3
)

// punchingNode joins a NAT'd node (reachability private, hole punching
// traced in trace) and waits until it holds a relay reservation (reported
// as "reserved" for the first one) and the members have told it its
// public (NAT) address, where hole punching starts.
func punchingNode(ctx context.Context, join func(holepunch.EventTracer) (*overlay.Overlay, error), trace *punchTrace, first bool) (*overlay.Overlay, error) {
	st := time.Now()
	ov, err := join(trace)
	if err != nil {
		return nil, err
	}
	for len(ov.RelayedAddrs()) == 0 {
		select {
		case <-ctx.Done():
			ov.Close()
			return nil, errors.New("the second NAT'd node (reachability private) reserved no relay")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if first {
		report(peerEvent{Event: "reserved", Ms: msf(time.Since(st))})
	}
	h := ov.Host()
	for i := 0; i < 300 && len(publicAddrs(h)) == 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if len(publicAddrs(h)) == 0 {
		ov.Close()
		return nil, errors.New("the second NAT'd node learnt no public address of its own from the members")
	}
	return ov, nil
}

// punchRound connects h to target through the relay only and waits
// punchWait for DCUtR to give it a direct connection (nil: none; what it
// saw goes to trace).
func punchRound(ctx context.Context, h host.Host, target peer.ID, relayed []ma.Multiaddr, trace *punchTrace, round int) (network.Conn, error) {
	if err := h.Connect(ctx, peer.AddrInfo{ID: target, Addrs: relayed}); err != nil {
		return nil, fmt.Errorf("connect through the relay: %w", err)
	}
	if conns := h.Network().ConnsToPeer(target); len(conns) != 1 || !conns[0].Stat().Limited {
		return nil, fmt.Errorf("the first connection to the target is not only a relayed one: %v", conns)
	}
	trace.add(fmt.Sprintf("round %d: %s connected through the relay; its public addresses %v", round, h.ID(), publicAddrs(h)))
	for try := time.Now(); time.Since(try) < punchWait; {
		for _, c := range h.Network().ConnsToPeer(target) {
			if !c.Stat().Limited && !isCircuit(c.RemoteMultiaddr()) {
				return c, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no direct connection to the target: %w\n%s", ctx.Err(), trace)
		case <-time.After(10 * time.Millisecond):
		}
	}
	trace.add(fmt.Sprintf("round %d: no direct connection in %v; the target's addresses here %v, connections %v",
		round, punchWait, h.Peerstore().Addrs(target), connAddrs(h.Network().ConnsToPeer(target))))
	return nil, nil
}

func connAddrs(cs []network.Conn) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s (limited %v)", c.RemoteMultiaddr(), c.Stat().Limited))
	}
	return out
}

// punchTrace keeps the hole punching events of the peer's second node.
type punchTrace struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

func (p *punchTrace) Trace(e *holepunch.Event) {
	p.add(fmt.Sprintf("%s %+v", e.Type, e.Evt))
}

func (p *punchTrace) add(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		p.start = time.Now()
	}
	p.lines = append(p.lines, fmt.Sprintf("+%.1fs %s", time.Since(p.start).Seconds(), line))
}

func (p *punchTrace) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) == 0 {
		return "(none: the target started no round)"
	}
	return strings.Join(p.lines, "\n")
}

func report(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// bedPeer is a NAT'd overlay node (reachability private, hole punching)
// behind the other NAT from the target, a NAT'd lsnode:
//  1. it joins the overlay and finds the target's relayed addresses
//     (kad-dht FIND_PEER);
//  2. a plain client (no hole punching) looks AOR up through the target
//     over the relay: the relayed latency;
//  3. a second NAT'd node connects through the relay only, and DCUtR must
//     upgrade that to a direct connection through both NATs: the
//     hole-punched latency;
//  4. when the test has killed one of the target's relays (stdin "killed
//     ID"), the target must hold a reservation elsewhere and be reachable
//     through it.
func bedPeer() error {
	env := func(k string) string { return os.Getenv("LSNODE_BED_" + k) }
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	t0 := time.Now()
	cfg, err := node.LoadConfig(env("CONFIG"))
	if err != nil {
		return err
	}
	pool, err := cfg.LoadTrustAnchors()
	if err != nil {
		return err
	}
	target, err := peer.Decode(env("TARGET"))
	if err != nil {
		return err
	}
	aor, want := env("AOR"), env("WANT")
	gossip, _ := time.ParseDuration(env("GOSSIP"))
	// joinPrivate starts a node with reachability private and joins.
	joinPrivate := func(tr holepunch.EventTracer) (*overlay.Overlay, error) {
		key, err := overlay.GenerateIdentity()
		if err != nil {
			return nil, err
		}
		ov, err := overlay.New(ctx, overlay.Config{Name: cfg.Overlay.Name, Identity: key, Reachability: overlay.ReachPrivate,
			ListenAddrs: []string{"/ip4/0.0.0.0/tcp/0"}, Bootstrap: strings.Split(env("BOOTSTRAP"), ","), GossipInterval: gossip,
			HolePunchTracer: tr})
		if err != nil {
			return nil, err
		}
		if err := ov.Join(ctx); err != nil {
			ov.Close()
			return nil, err
		}
		return ov, nil
	}
	ov, err := joinPrivate(nil)
	if err != nil {
		return err
	}
	defer ov.Close()
	report(peerEvent{Event: "joined", Ms: msf(time.Since(t0))})

	// 1. The target's relayed addresses, as kad-dht finds them.
	var relayed []ma.Multiaddr
	for len(relayed) == 0 {
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		ai, err := ov.DHT().FindPeer(fctx, target)
		fcancel()
		if err == nil {
			relayed = circuitAddrs(ai.Addrs)
		}
		if len(relayed) == 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("the target announced no relayed address: %v (last FIND_PEER: %v)", ctx.Err(), err)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	report(peerEvent{Event: "found", Ms: msf(time.Since(t0)), Relays: relaysOf(relayed)})

	// 2. Through the relay, from a plain client.
	lookups := func(c *lsp.Client, n int) ([]float64, error) {
		var out []float64
		for i := 0; i < n; i++ {
			st := time.Now()
			bs, err := c.Lookup(ctx, aor)
			if err != nil {
				return nil, err
			}
			if len(bs) == 0 || !strings.Contains(bs[0].Contact, want) {
				return nil, fmt.Errorf("lookup of %s through the target: %v, want %s", aor, bs, want)
			}
			out = append(out, msf(time.Since(st)))
		}
		return out, nil
	}
	viaRelay := func(addrs []ma.Multiaddr, n int) ([]float64, error) {
		lh, err := overlay.NewLightHost(nil)
		if err != nil {
			return nil, err
		}
		defer lh.Close()
		if err := lh.Connect(ctx, peer.AddrInfo{ID: target, Addrs: addrs}); err != nil {
			return nil, fmt.Errorf("connect through the relay: %w", err)
		}
		if conns := lh.Network().ConnsToPeer(target); len(conns) == 0 || !conns[0].Stat().Limited {
			return nil, fmt.Errorf("the connection through the relay is not a relayed one: %v", conns)
		}
		c, err := lsp.NewClient(lsp.ClientConfig{Streams: overlay.HostStreams(lh), Overlay: cfg.Overlay.Name, Server: peer.AddrInfo{ID: target}, TrustAnchors: pool})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return lookups(c, n)
	}
	rl, err := viaRelay(relayed, 200)
	if err != nil {
		return err
	}
	report(peerEvent{Event: "relayed", Lookups: rl})

	// 3. A second NAT'd node, which has not touched the target (the
	// first one's FIND_PEER connected to it, through the relay, and hole
	// punching has likely been and gone): it connects through the relay
	// only, and hole punching must give it a direct connection. A round
	// that gets none (DCUtR's three attempts) is followed by one from a
	// fresh node (another port, other NAT mappings), at most maxPunches.
	trace := &punchTrace{}
	var ov2 *overlay.Overlay
	var direct network.Conn
	var st time.Time
	tries := 0
	for direct == nil {
		if tries++; tries > maxPunches {
			return fmt.Errorf("no direct connection to the target after %d rounds of hole punching of %v, each from a fresh node; hole punching events here:\n%s",
				maxPunches, punchWait, trace)
		}
		ov, err := punchingNode(ctx, joinPrivate, trace, tries == 1)
		if err != nil {
			return err
		}
		st = time.Now()
		if direct, err = punchRound(ctx, ov.Host(), target, relayed, trace, tries); err != nil || direct == nil {
			ov.Close()
			if err != nil {
				return err
			}
			continue
		}
		ov2 = ov
	}
	defer ov2.Close()
	h := ov2.Host()
	report(peerEvent{Event: "direct", Ms: msf(time.Since(st)), Addr: direct.RemoteMultiaddr().String(), Rounds: tries})
	c, err := lsp.NewClient(lsp.ClientConfig{Streams: ov2, Overlay: cfg.Overlay.Name, Server: peer.AddrInfo{ID: target}, TrustAnchors: pool})
	if err != nil {
		return err
	}
	dl, err := lookups(c, 200)
	c.Close()
	if err != nil {
		return err
	}
	for _, conn := range h.Network().ConnsToPeer(target) {
		if conn.Stat().Limited {
			continue
		}
		if isCircuit(conn.RemoteMultiaddr()) {
			return fmt.Errorf("lookups went over %s", conn.RemoteMultiaddr())
		}
	}
	report(peerEvent{Event: "punched", Lookups: dl})

	// 4. The test kills a relay; the target re-reserves elsewhere, and
	// identify pushes its new addresses over the direct connection.
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return errors.New("stdin closed before a relay was killed")
	}
	killed := strings.TrimPrefix(in.Text(), "killed ")
	st = time.Now()
	for {
		addrs := circuitAddrs(h.Peerstore().Addrs(target))
		rs := relaysOf(addrs)
		if len(rs) > 0 && !slices.Contains(rs, killed) {
			var fresh []ma.Multiaddr
			for _, a := range addrs {
				if !strings.Contains(a.String(), killed) {
					fresh = append(fresh, a)
				}
			}
			if _, err := viaRelay(fresh, 1); err == nil {
				report(peerEvent{Event: "rereserved", Ms: msf(time.Since(st)), Relays: rs})
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the target did not re-reserve after relay %s died: relays %v", killed, rs)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// publicAddrs: the host's public, direct addresses (its NAT's, as the
// members observed them).
func publicAddrs(h interface{ Addrs() []ma.Multiaddr }) []ma.Multiaddr {
	all := h.Addrs()
	if a, ok := h.(interface{ AllAddrs() []ma.Multiaddr }); ok {
		all = a.AllAddrs()
	}
	var out []ma.Multiaddr
	for _, a := range all {
		if manet.IsPublicAddr(a) && !isCircuit(a) {
			out = append(out, a)
		}
	}
	return out
}

// rtpResult is what an RTP peer of TestNetnsBed's call saw.
type rtpResult struct {
	Sent     int      `json:"sent"`
	Received int      `json:"received"`
	From     []string `json:"from"` // source addresses of what it received
}

// rtpPeer is a call party's media (args: local port, out file, remote IP,
// remote port; started by sipp on the call's answer): 100 RTP packets of
// PCMU every 20 ms from the local port to the remote address, counting
// what comes back until 1 s after the last; the result goes to the out
// file as JSON.
func rtpPeer(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want LOCAL-PORT OUT-FILE REMOTE-IP REMOTE-PORT, got %q", args)
	}
	local, out := args[0], args[1]
	remote, err := net.ResolveUDPAddr("udp4", net.JoinHostPort(args[2], args[3]))
	if err != nil {
		return err
	}
	c, err := net.ListenPacket("udp4", ":"+local)
	if err != nil {
		return err
	}
	defer c.Close()
	var res rtpResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 && buf[0]>>6 == 2 {
				res.Received++
				if a := from.String(); !slices.Contains(res.From, a) {
					res.From = append(res.From, a)
				}
			}
		}
	}()
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, 0 // RTP v2, PCMU
	ssrc := uint32(time.Now().UnixNano())
	for i := 0; i < 100; i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
		binary.BigEndian.PutUint32(pkt[8:], ssrc)
		if _, err := c.WriteTo(pkt, remote); err == nil {
			res.Sent++
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	c.Close()
	<-done
	b, _ := json.Marshal(res)
	return os.WriteFile(out, b, 0o644)
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

func circuitAddrs(addrs []ma.Multiaddr) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range addrs {
		if isCircuit(a) {
			out = append(out, a)
		}
	}
	return out
}

// relaysOf returns the relays' peer IDs of circuit addresses
// (/.../p2p/RELAY/p2p-circuit).
func relaysOf(addrs []ma.Multiaddr) []string {
	var out []string
	for _, a := range addrs {
		if id, err := a.ValueForProtocol(ma.P_P2P); err == nil && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// startBedPeer runs bedPeer in h's namespace and returns its events.
type bedPeerProc struct {
	events  chan peerEvent
	stdin   interface{ Write([]byte) (int, error) }
	cmd     *exec.Cmd
	started time.Time
}

func (p *bedPeerProc) next(t *testing.T, event string, timeout time.Duration) peerEvent {
	t.Helper()
	e, err := p.nextErr(event, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// nextErr is next, failing with an error instead of the test.
func (p *bedPeerProc) nextErr(event string, timeout time.Duration) (peerEvent, error) {
	select {
	case e, ok := <-p.events:
		switch {
		case !ok:
			return e, fmt.Errorf("the NAT'd peer exited before %q", event)
		case e.Event == "error":
			return e, fmt.Errorf("the NAT'd peer: %s", e.Error)
		case e.Event != event:
			return e, fmt.Errorf("the NAT'd peer reported %q, want %q", e.Event, event)
		}
		return e, nil
	case <-time.After(timeout):
		return peerEvent{}, fmt.Errorf("the NAT'd peer did not report %q in %v", event, timeout)
	}
}

// natConntrack is what the NAT routers' connection tracking holds of TCP
// between their internet addresses (hole punching's SYNs), for a failure's
// report.
func natConntrack(b *testnet.Bed) string {
	var out strings.Builder
	for _, r := range b.Routers {
		raw, err := exec.Command("ip", "netns", "exec", r.NS, "cat", "/proc/net/nf_conntrack").CombinedOutput()
		fmt.Fprintf(&out, "router %s (%s): %v\n", r.Name, r.IP, err)
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, "tcp") && strings.Count(l, internetPrefix) >= 2 {
				out.WriteString("  " + strings.Join(strings.Fields(l), " ") + "\n")
			}
		}
	}
	return out.String()
}

// internetPrefix: the testbed's internet addresses (testnet's internet).
const internetPrefix = "=192.0.0."

func pctl(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
