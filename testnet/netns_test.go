package testnet_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
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
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	t0 := time.Now()
	bed, err := testnet.NewBed(ctx, testnet.BedSpec{Public: 6, NATs: []int{2, 10}, UDPTimeout: natUDPTimeout})
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
		testnet.Spec{Overlay: "bed", GossipInterval: 200 * time.Millisecond, FailAfter: 2 * time.Second}, os.Stderr,
		func(_ int, c *node.Config) {
			// Keepalives well inside the NATs' short UDP timeout.
			c.Proxy.NATKeepalive = node.Duration(natUDPTimeout / 4)
		})
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
	if out, err := run(pub[0], "status", "--strict", "--config", cfgs[0]); err != nil || !strings.Contains(out, fmt.Sprintf(`"size_estimate": %d`, len(pub))) {
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
		// What the node saw, for the report: its status, and whether the
		// binding shows up a moment later.
		st, _ := run(hosts[len(pub)], "status", "--strict", "--config", cfgs[len(pub)])
		time.Sleep(2 * time.Second)
		again, aerr := run(hosts[len(pub)], "lookup", "--config", cfgs[len(pub)], "sip:alice@a.example")
		t.Fatalf("lookup by the NAT'd client node: %v\n%s\nits status: %s\n2 s later: %v\n%s", err, out, st, aerr, again)
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
	peer := startNATPeer(t, ctx, nw, bed.Behind(1)[1], natted.IP+":5060")
	natCall(t, ctx, nw)
	natLookups(t, ctx, nw, peer)

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

// startNATPeer starts the NAT'd peer (bedPeer) on h, behind the other NAT
// from the NAT'd lsnode behind NAT 0; it polls for that node's relayed
// addresses from the start, so "found" dates its reservation.
func startNATPeer(t *testing.T, ctx context.Context, nw *testnet.BedNet, h testnet.Host, want string) *bedPeerProc {
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
	p := &bedPeerProc{events: make(chan peerEvent, 16), stdin: stdin, cmd: cmd, started: started}
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
	return p
}

// natLookups checks and logs what the NAT'd peer reports.
func natLookups(t *testing.T, ctx context.Context, nw *testnet.BedNet, p *bedPeerProc) {
	pub := len(nw.Bed.Public())
	cmd, started := p.cmd, p.started
	joined := p.next(t, "joined", time.Minute)
	found := p.next(t, "found", 3*time.Minute)
	// When the NAT'd lsnode had reserved relays (within the peer's poll).
	sinceStart := started.Add(time.Duration(found.Ms * float64(time.Millisecond))).Sub(nw.Started(pub))
	// AutoNAT has found the NAT'd lsnode private, it says so with its
	// relayed addresses, and it is still no member.
	out, err := nw.Run(ctx, nw.Hosts[pub], "status", "--strict", "--config", nw.Configs[pub])
	if err != nil || !strings.Contains(out, `"reachability": "private"`) || !strings.Contains(out, "/p2p-circuit") ||
		!strings.Contains(out, `"answered_by": "`+nw.Manifest.Nodes[pub].PeerID) {
		t.Fatalf("status of the NAT'd lsnode: %v\n%s", err, out)
	}
	if out, err := nw.Run(ctx, nw.Hosts[0], "status", "--strict", "--config", nw.Configs[0]); err != nil || !strings.Contains(out, `"reachability": "public"`) {
		t.Fatalf("status of a public member: %v\n%s", err, out)
	}
	if err := nw.WaitSize(ctx, 0, pub, time.Second); err != nil {
		t.Fatalf("after AutoNAT: %v", err)
	}
	relayed := p.next(t, "relayed", time.Minute)
	reserved := p.next(t, "reserved", time.Minute)
	direct, err := p.nextErr("direct", maxPunches*(punchWait+20*time.Second)+30*time.Second)
	if err != nil {
		t.Fatalf("%v\nconnection tracking of the NAT routers (TCP between internet addresses):\n%s", err, natConntrack(nw.Bed))
	}
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
	fmt.Fprintf(p.stdin, "killed %s\n", nw.Manifest.Nodes[victim].PeerID)
	re := p.next(t, "rereserved", 3*time.Minute)
	if slices.Contains(re.Relays, nw.Manifest.Nodes[victim].PeerID) {
		t.Fatalf("still announces the killed relay: %v", re.Relays)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("NAT'd peer: %v", err)
	}
	t.Logf("NAT'd lsnode (AutoNAT auto): relayed addresses found %v after its start (FIND_PEER every 250 ms from a peer that started %v after it and joined in %.0f ms); relays %v",
		sinceStart.Round(100*time.Millisecond), started.Sub(nw.Started(pub)).Round(100*time.Millisecond), joined.Ms, found.Relays)
	t.Logf("lookup through the NAT'd lsnode from behind the other NAT: relayed p50 %.2f ms p99 %.2f ms (n=%d); hole-punched p50 %.2f ms p99 %.2f ms (n=%d); direct connection %.0f ms after the relayed one (%s), in %d round(s) of hole punching",
		pctl(relayed.Lookups, 0.5), pctl(relayed.Lookups, 0.99), len(relayed.Lookups), pctl(punched.Lookups, 0.5), pctl(punched.Lookups, 0.99), len(punched.Lookups), direct.Ms, direct.Addr, direct.Rounds)
	t.Logf("a node with reachability private (no AutoNAT) held a relay reservation %.0f ms after its start", reserved.Ms)
	t.Logf("relay %d killed: re-reserved and reachable through %v in %.0f ms", victim, re.Relays, re.Ms)
}

// natUDPTimeout: the testbed's NATs forget an idle UDP mapping after 4 s.
const natUDPTimeout = 4 * time.Second

// natCall: a sipp UA behind NAT 0 registers with a.example's node (its
// Contact private); after twice the NATs' UDP timeout of idleness (the
// proxy's keepalives must hold its mapping) a sipp UA behind NAT 1 calls
// it through b.example's node, authenticated as a b.example user. The
// INVITE finds the binding in the overlay and follows its Path to
// a.example's node, which sends it down the registered flow; RTP then
// flows both ways through the media relay, between parties that cannot
// reach each other.
func natCall(t *testing.T, ctx context.Context, nw *testnet.BedNet) {
	m := nw.Manifest
	var aIdx, bIdx = -1, -1
	for i, n := range m.Nodes[:len(nw.Bed.Public())] {
		switch {
		case n.Domain == "a.example" && aIdx < 0:
			aIdx = i
		case n.Domain == "b.example" && bIdx < 0:
			bIdx = i
		}
	}
	if aIdx < 0 || bIdx < 0 {
		t.Fatalf("no public a.example and b.example nodes: %+v", m.Nodes)
	}
	callee, caller := domainUser(m, "a.example", 1), domainUser(m, "b.example", 0)
	calleeUser := strings.TrimPrefix(strings.Split(callee.AOR, "@")[0], "sip:")
	callerUser := strings.TrimPrefix(strings.Split(caller.AOR, "@")[0], "sip:")
	calleeHost, callerHost := nw.Bed.Behind(0)[1], nw.Bed.Behind(1)[3]
	dir := t.TempDir()
	rtpOut := func(who string) string { return filepath.Join(dir, "rtp-"+who+".json") }
	for _, f := range []struct{ name, who string }{
		{"nat-callee.xml", ""}, {"nat-callee-ooc.xml", "callee"}, {"nat-caller.xml", "caller"}} {
		b, err := os.ReadFile(filepath.Join("testdata/sipp", f.name))
		if err != nil {
			t.Fatal(err)
		}
		port := map[string]int{"callee": 30000, "caller": 30002}[f.who]
		s := strings.ReplaceAll(string(b), "RTP_PORT", fmt.Sprint(port))
		s = strings.ReplaceAll(s, "RTP_CMD", fmt.Sprintf("env LSNODE_BED_RTP=1 %s %d %s", os.Args[0], port, rtpOut(f.who)))
		s = strings.ReplaceAll(s, "CONTACT_IP", calleeHost.IP)
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sipp := func(ctx context.Context, h testnet.Host, args ...string) *exec.Cmd {
		cmd := nw.Bed.Command(ctx, h, "sipp", append(args, "-i", h.IP, "-p", "5060", "-m", "1", "-nostdin",
			"-trace_err", "-error_file", filepath.Join(dir, h.Name+"-errors.log"))...)
		cmd.Dir = dir
		return cmd
	}
	reg := sipp(ctx, calleeHost, m.Nodes[aIdx].SIP, "-sf", "nat-callee.xml", "-oocsf", "nat-callee-ooc.xml",
		"-au", callee.Username, "-ap", callee.Password, "-auth_uri", "a.example", "-key", "user", calleeUser, "-key", "domain", "a.example")
	var regOut lockedBuffer
	reg.Stdout, reg.Stderr = &regOut, &regOut
	if err := nw.Bed.Start(reg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			errs, _ := os.ReadFile(filepath.Join(dir, calleeHost.Name+"-errors.log"))
			t.Logf("callee sipp:\n%s\nerrors:\n%s", tail(regOut.Bytes()), tail(errs))
		}
	}()
	// Registered: any node finds the binding, with its Path.
	var binding string
	waitFor(t, 15*time.Second, "the NAT'd UA's binding", func() error {
		out, err := nw.Run(ctx, nw.Hosts[2], "lookup", "--config", nw.Configs[2], callee.AOR)
		if err != nil || !strings.Contains(out, calleeHost.IP) {
			return fmt.Errorf("%v: %s", err, out)
		}
		binding = out
		return nil
	})
	if !strings.Contains(binding, nw.Bed.Routers[0].IP) || !strings.Contains(binding, `"path"`) {
		t.Fatalf("the binding of a NAT'd UA has no received address of its NAT or no Path:\n%s", binding)
	}
	idle := 2 * natUDPTimeout
	time.Sleep(idle)
	st := time.Now()
	// sipp's own -timeout does not end a call stuck waiting for an answer.
	callCtx, cancelCall := context.WithTimeout(ctx, time.Minute)
	defer cancelCall()
	call := sipp(callCtx, callerHost, m.Nodes[bIdx].SIP, "-sf", "nat-caller.xml", "-s", calleeUser,
		"-key", "cdomain", "a.example", "-key", "caller", callerUser, "-key", "mydomain", "b.example",
		"-au", caller.Username, "-ap", caller.Password, "-auth_uri", calleeUser+"@a.example", "-timeout", "40s")
	if out, err := call.CombinedOutput(); err != nil {
		errs, _ := os.ReadFile(filepath.Join(dir, callerHost.Name+"-errors.log"))
		cerrs, _ := os.ReadFile(filepath.Join(dir, calleeHost.Name+"-errors.log"))
		t.Fatalf("call from behind NAT 1 to the UA behind NAT 0: %v\n%s\ncaller errors:\n%s\ncallee errors:\n%s\ncallee:\n%s",
			err, tail(out), tail(errs), tail(cerrs), tail(regOut.Bytes()))
	}
	callTime := time.Since(st)
	// Both parties' RTP went through a relay on a public host, the same one.
	public := map[string]bool{}
	for _, h := range nw.Bed.Public() {
		public[h.IP] = true
	}
	var res [2]rtpResult
	for i, who := range []string{"callee", "caller"} {
		waitFor(t, 10*time.Second, who+"'s RTP result", func() error {
			b, err := os.ReadFile(rtpOut(who))
			if err != nil {
				return err
			}
			return json.Unmarshal(b, &res[i])
		})
		r := res[i]
		if r.Received < 50 {
			t.Fatalf("%s received %d of the other party's 100 RTP packets (sent %d): %+v", who, r.Received, r.Sent, r)
		}
		for _, from := range r.From {
			if host, _, _ := net.SplitHostPort(from); !public[host] {
				t.Fatalf("%s received RTP from %s, not from a relay on a public host", who, from)
			}
		}
	}
	// One relay carries the call: b.example's proxy anchored the NAT'd
	// caller's offer on its relay, and a.example's node, seeing the offer
	// already at an overlay relay, did not anchor it again (the relay
	// latches the NAT'd callee from its first packet).
	relays := map[string]bool{}
	for _, r := range res {
		for _, from := range r.From {
			host, _, _ := net.SplitHostPort(from)
			relays[host] = true
		}
	}
	if len(relays) != 1 {
		t.Fatalf("the call's media went through %d relays (%v), want one", len(relays), relays)
	}
	t.Logf("NAT'd call: registered behind NAT 0, idle %v (NAT UDP timeout %v, keepalive every %v), call through b.example's node and the flow took %v (sipp run); RTP received callee %d/100 from %v, caller %d/100 from %v",
		idle, natUDPTimeout, natUDPTimeout/4, callTime.Round(time.Millisecond), res[0].Received, res[0].From, res[1].Received, res[1].From)

	// A caller on a public host (speermint-flows §8): its own address is
	// public, so only the callee's side tells b.example's proxy to anchor
	// (media auto: the binding is behind a NAT). Without it the caller
	// would send to the callee's private address and the callee would
	// receive nothing.
	pubCaller := nw.Bed.Public()[len(nw.Bed.Public())-1]
	for _, who := range []string{"callee", "caller"} {
		_ = os.Remove(rtpOut(who))
	}
	pcall := nw.Bed.Command(callCtx, pubCaller, "sipp", m.Nodes[bIdx].SIP, "-sf", "nat-caller.xml", "-s", calleeUser,
		"-key", "cdomain", "a.example", "-key", "caller", callerUser, "-key", "mydomain", "b.example",
		"-au", caller.Username, "-ap", caller.Password, "-auth_uri", calleeUser+"@a.example", "-timeout", "40s",
		"-i", pubCaller.IP, "-p", "5090", "-m", "1", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "public-caller-errors.log"))
	pcall.Dir = dir
	if out, err := pcall.CombinedOutput(); err != nil {
		errs, _ := os.ReadFile(filepath.Join(dir, "public-caller-errors.log"))
		t.Fatalf("call from a public host to the UA behind NAT 0: %v\n%s\ncaller errors:\n%s", err, tail(out), tail(errs))
	}
	for i, who := range []string{"callee", "caller"} {
		waitFor(t, 10*time.Second, who+"'s RTP result of the public caller's call", func() error {
			b, err := os.ReadFile(rtpOut(who))
			if err != nil {
				return err
			}
			return json.Unmarshal(b, &res[i])
		})
		if r := res[i]; r.Received < 50 {
			t.Fatalf("public caller's call: %s received %d of the other party's 100 RTP packets (sent %d): %+v", who, r.Received, r.Sent, r)
		}
		for _, from := range res[i].From {
			if host, _, _ := net.SplitHostPort(from); !public[host] || host == pubCaller.IP {
				t.Fatalf("public caller's call: %s received RTP from %s, not from a relay", who, from)
			}
		}
	}
	t.Logf("public caller to the NAT'd callee: RTP received callee %d/100 from %v, caller %d/100 from %v (anchored for the callee's NAT)",
		res[0].Received, res[0].From, res[1].Received, res[1].From)
}
