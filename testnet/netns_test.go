package testnet_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// TestNetnsBed: a namespace testbed (4 public hosts, 2 NAT routers with a
// host behind each) runs an lsnode process per public host over real veth
// links; a client behind a NAT (masquerade, no route in from outside)
// publishes and looks up through it; Close leaves no namespace and no
// process behind. Needs root, iproute2 and nftables: skipped outside CI
// when missing, required in CI.
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	bed, err := testnet.NewBed(ctx, testnet.BedSpec{Public: 4, NATs: []int{1, 10}})
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
	// Nodes 0-3 on the public hosts, nodes 4 and 5 behind NAT 0 and NAT 1
	// as clients.
	nw, err := testnet.StartBedNet(ctx, bed, t.TempDir(), exe,
		testnet.Spec{Overlay: "bed", GossipInterval: 200 * time.Millisecond, FailAfter: 2 * time.Second}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, hosts := nw.Configs, nw.Hosts
	run := func(h testnet.Host, args ...string) (string, error) { return nw.Run(ctx, h, args...) }
	// Converged: node 0 and the NAT'd client nodes count the four public
	// nodes (clients are not members).
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
