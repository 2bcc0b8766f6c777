package testnet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// TestNetnsBed: a namespace testbed (6 public hosts, 2 NAT routers with 2
// and 10 hosts behind them) runs an lsnode process per public host (members
// and relays) and one behind each NAT (AutoNAT decides) over real veth
// links. Behind the NATs (masquerade, no route in, unasked packets
// dropped):
//   - CLI clients publish and look up through the members;
//   - the NAT'd lsnode finds itself private, reserves relays and announces
//     them;
//   - a NAT'd peer behind the other NAT reaches it through a relay, then
//     directly once hole punching (DCUtR) has gone through both NATs;
//   - killing one of its relays makes it reserve elsewhere.
//
// Close leaves no namespace and no process behind. Needs root, iproute2
// and nftables: skipped outside CI when missing, required in CI.
func TestNetnsBed(t *testing.T) {
	if os.Geteuid() != 0 || !haveTools("ip", "nft") {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run the namespace testbed: needs root, iproute2 and nftables")
		}
		t.Skip("needs root, iproute2 and nftables")
	}
	exe := filepath.Join(t.TempDir(), "lsnode")
	if out, err := exec.Command("go", "build", "-o", exe, "../cmd/lsnode").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	bed, err := testnet.NewBed(ctx, testnet.BedSpec{Public: 6, NATs: []int{2, 10}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			bed.Close()
		}
	}()
	built := time.Since(t0)
	pub := bed.Public()
	// Nodes 0-5 on the public hosts, nodes 6 and 7 behind NAT 0 and NAT 1.
	nw, err := testnet.StartBedNet(ctx, bed, t.TempDir(), exe,
		testnet.Spec{Overlay: "bed", GossipInterval: 200 * time.Millisecond, FailAfter: 2 * time.Second}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, hosts := nw.Configs, nw.Hosts
	run := func(h testnet.Host, args ...string) (string, error) { return nw.Run(ctx, h, args...) }
	// Converged: node 0 and the NAT'd nodes count the public nodes (a
	// NAT'd node is no member).
	if err := nw.WaitSize(ctx, 0, len(pub), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	started := time.Since(t0)
	for i := len(pub); i < len(hosts); i++ {
		if err := nw.WaitSize(ctx, i, len(pub), 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	joined := time.Since(t0)
	time.Sleep(time.Second) // gossip rounds: the clients must stay out of the members' views
	if out, err := run(pub[0], "status", "--config", cfgs[0]); err != nil || !strings.Contains(out, fmt.Sprintf(`"size_estimate": %d`, len(pub))) {
		t.Fatalf("a member counts a NAT'd client: %v\n%s", err, out)
	}

	// The hosts behind NAT cannot be reached from outside.
	natted := bed.Behind(0)[0]
	if out, err := exec.Command("ip", "-n", pub[0].NS, "route", "get", natted.IP).CombinedOutput(); err == nil {
		t.Fatalf("%s reaches %s directly: %s", pub[0].Name, natted.IP, out)
	}
	// A client behind NAT 0 publishes through node 0 (a.example's), one
	// behind NAT 1 looks it up through node 3.
	if out, err := run(natted, "publish", "--config", cfgs[0], "--aor", "sip:alice@a.example",
		"--contact", "sip:alice@"+natted.IP+":5060", "--expires", "600"); err != nil {
		t.Fatalf("publish from behind NAT: %v\n%s", err, out)
	}
	// The NAT'd client node reads it through the overlay (its own lsp
	// service, outbound to the replicas).
	if out, err := run(hosts[len(pub)], "lookup", "--config", cfgs[len(pub)], "sip:alice@a.example"); err != nil || !strings.Contains(out, natted.IP+":5060") {
		t.Fatalf("lookup by the NAT'd client node: %v\n%s", err, out)
	}
	other := bed.Behind(1)[0]
	lt := time.Now()
	out, err := run(other, "lookup", "--config", cfgs[3], "sip:alice@a.example")
	lookup := time.Since(lt)
	if err != nil || !strings.Contains(out, natted.IP+":5060") {
		t.Fatalf("lookup from behind NAT: %v\n%s", err, out)
	}
	// Ten clients behind one NAT (one source address to the public
	// nodes) look up at once, five times each: libp2p's default of 8
	// connections per IP would refuse some.
	errs := make(chan error, 10)
	for _, h := range bed.Behind(1) {
		go func(h testnet.Host) {
			for k := 0; k < 5; k++ {
				out, err := run(h, "lookup", "--config", cfgs[3], "sip:alice@a.example")
				if err != nil || !strings.Contains(out, natted.IP+":5060") {
					errs <- fmt.Errorf("%s: %v: %s", h.Name, err, out)
					return
				}
			}
			errs <- nil
		}(h)
	}
	for range bed.Behind(1) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent lookups from behind one NAT: %v", err)
		}
	}
	natLookups(t, ctx, nw, bed.Behind(1)[1], natted.IP+":5060")

	t.Logf("testbed: %d public hosts, %d NATs (%d hosts behind them): namespaces and links in %v, overlay converged %v after start, NAT'd client node joined %v after start; "+
		"lookup from behind NAT (CLI process, dial through the NAT included) %v",
		len(pub), len(bed.Routers), len(bed.Hosts)-len(pub), built.Round(time.Millisecond), started.Round(time.Millisecond), joined.Round(time.Millisecond), lookup.Round(time.Millisecond))

	// Close: nothing left behind.
	closed = true
	if err := bed.Close(); err != nil {
		t.Fatal(err)
	}
	list, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(list), fmt.Sprintf("lsnbed-%d-", os.Getpid())) {
		t.Fatalf("namespaces left after Close:\n%s", list)
	}
	if out, _ := exec.Command("pgrep", "-f", cfgs[0]).Output(); len(out) > 0 {
		t.Fatalf("processes left after Close: %s", out)
	}
}

func haveTools(tools ...string) bool {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return false
		}
	}
	return true
}

// natLookups runs the NAT'd peer (bedPeer) on h, behind the other NAT from
// the NAT'd lsnode behind NAT 0, and checks and logs what it reports.
func natLookups(t *testing.T, ctx context.Context, nw *testnet.BedNet, h testnet.Host, want string) {
	pub := len(nw.Bed.Public())
	target := nw.Manifest.Nodes[pub] // the NAT'd lsnode behind NAT 0
	var boots []string
	for i := 0; i < pub; i++ {
		boots = append(boots, nw.Addrs[i]...)
	}
	cmd := nw.Bed.Command(ctx, h, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LSNODE_BED_PEER=1", "LSNODE_BED_CONFIG="+nw.Configs[0], "LSNODE_BED_TARGET="+target.PeerID,
		"LSNODE_BED_AOR=sip:alice@a.example", "LSNODE_BED_WANT="+want, "LSNODE_BED_GOSSIP=200ms",
		"LSNODE_BED_BOOTSTRAP="+strings.Join(boots, ","))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := nw.Bed.Start(cmd); err != nil {
		t.Fatal(err)
	}
	p := &bedPeerProc{events: make(chan peerEvent, 16), stdin: stdin}
	go func() {
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e peerEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Event != "" {
				p.events <- e
			}
		}
	}()
	p.next(t, "joined", time.Minute)
	found := p.next(t, "found", 3*time.Minute)
	sinceStart := time.Since(nw.Started(pub))
	// AutoNAT has found the NAT'd lsnode private (it reserved relays):
	// still no member.
	if err := nw.WaitSize(ctx, 0, pub, time.Second); err != nil {
		t.Fatalf("after AutoNAT: %v", err)
	}
	relayed := p.next(t, "relayed", time.Minute)
	direct := p.next(t, "direct", time.Minute)
	// The direct connection goes to NAT 0's address: through both NATs.
	if !strings.Contains(direct.Addr, "/ip4/"+nw.Bed.Routers[0].IP+"/") {
		t.Fatalf("direct connection to %s, want NAT 0's address %s", direct.Addr, nw.Bed.Routers[0].IP)
	}
	punched := p.next(t, "punched", time.Minute)
	// Kill one of the target's relays.
	victim := -1
	for i, ni := range nw.Manifest.Nodes[:pub] {
		if slices.Contains(found.Relays, ni.PeerID) {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatalf("the target's relays %v are none of the members", found.Relays)
	}
	if err := nw.Kill(victim); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(stdin, "killed %s\n", nw.Manifest.Nodes[victim].PeerID)
	re := p.next(t, "rereserved", 3*time.Minute)
	if slices.Contains(re.Relays, nw.Manifest.Nodes[victim].PeerID) {
		t.Fatalf("still announces the killed relay: %v", re.Relays)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("NAT'd peer: %v", err)
	}
	t.Logf("NAT'd lsnode (AutoNAT auto): relayed address found %v after its start (peer's FIND_PEER polls every 1 s; peer started %v after it); relays %v",
		sinceStart.Round(100*time.Millisecond), started.Sub(nw.Started(pub)).Round(100*time.Millisecond), found.Relays)
	t.Logf("lookup through the NAT'd lsnode from behind the other NAT: relayed p50 %.2f ms p99 %.2f ms (n=%d); hole-punched p50 %.2f ms p99 %.2f ms (n=%d); direct connection %.0f ms after the relayed one (%s)",
		pctl(relayed.Lookups, 0.5), pctl(relayed.Lookups, 0.99), len(relayed.Lookups), pctl(punched.Lookups, 0.5), pctl(punched.Lookups, 0.99), len(punched.Lookups), direct.Ms, direct.Addr)
	t.Logf("relay %d killed: re-reserved and reachable through %v in %.0f ms", victim, re.Relays, re.Ms)
}
