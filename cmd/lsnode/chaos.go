package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/testnet"
)

// chaosReport is what `lsnode chaos` prints (JSON).
type chaosReport struct {
	Nodes         int `json:"nodes"`
	Kills         int `json:"kills"`
	Killed        int `json:"killed_distinct"` // distinct nodes killed at least once
	Published     int `json:"published"`       // acknowledged by a write quorum
	PublishFailed int `json:"publish_failed"`  // not acknowledged (retried later: not counted as lost)
	Lookups       int `json:"lookups"`
	Lost          int `json:"lost"`        // acknowledged bindings not found at the end
	Unavailable   int `json:"unavailable"` // lookups that failed (counted as lost too)
	Late          int `json:"late"`        // missing at first, found within --grace`
	Wrong         int `json:"wrong"`       // found with another contact
	// Lookups of acknowledged bindings made while nodes were being killed,
	// and how many of them failed or did not find the binding.
	LookupsDuring int     `json:"lookups_during"`
	FailedDuring  int     `json:"lookups_during_failed"`
	Seconds       float64 `json:"seconds"`
}

// cmdChaos runs every node of a testnet as its own process, kills -9 and
// restarts random nodes on a schedule while a client publishes through a
// node that is never killed, then looks every acknowledged binding up from
// another and reports what was lost (exit 1 if anything was).
func cmdChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chaos", stderr)
	dir := fs.String("dir", "", "testnet directory (lsnode testnet init)")
	dur := fs.Duration("duration", 30*time.Second, "how long to kill and publish")
	every := fs.Duration("kill-every", 2*time.Second, "one kill -9 per interval")
	down := fs.Duration("down", time.Second, "how long a killed node stays down")
	settle := fs.Duration("settle", 5*time.Second, "after the last restart, time for re-replication before reading")
	grace := fs.Duration("grace", 15*time.Second, "how long a binding missing at first is looked for again before it counts as lost")
	fraction := fs.Float64("kill-fraction", 1.0/3, "share of the nodes that are killed (each in turn, again and again)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 || *dur <= 0 || *every <= 0 || *fraction <= 0 || *fraction > 1 {
		return fail(2, "chaos: want --dir DIR, positive --duration and --kill-every, --kill-fraction in (0,1]")
	}
	m, err := testnet.LoadManifest(*dir)
	if err != nil {
		return err
	}
	if len(m.Nodes) < 4 {
		return fail(2, "chaos: want a testnet of at least 4 nodes, have %d", len(m.Nodes))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// The publisher talks to the first domain node, the reader to the last
	// node: both are spared; every other node may be killed.
	pub, reader := -1, len(m.Nodes)-1
	for i, n := range m.Nodes {
		if n.Domain != "" && pub < 0 {
			pub = i
		}
	}
	if pub < 0 || pub == reader {
		return fail(2, "chaos: the testnet needs a domain node that is not its last node")
	}
	cfgOf := func(i int) string { return filepath.Join(*dir, m.Nodes[i].Config) }
	procs := make([]*exec.Cmd, len(m.Nodes))
	start := func(i int) error {
		cmd := exec.Command(exe, "run", "--config", cfgOf(i), "--log-level", "error")
		cmd.Env = append(os.Environ(), "LSNODE_TEST_MAIN=1") // when exe is the test binary
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		procs[i] = cmd
		return nil
	}
	stopAll := func() {
		for _, p := range procs {
			if p != nil && p.ProcessState == nil {
				_ = p.Process.Signal(syscall.SIGTERM)
				_ = p.Wait()
			}
		}
	}
	defer stopAll()
	for i := range m.Nodes {
		if err := start(i); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := waitMembers(ctx, cfgOf(reader), len(m.Nodes), 30*time.Second); err != nil {
		return err
	}
	rep := chaosReport{Nodes: len(m.Nodes)}
	domain := m.Nodes[pub].Domain
	var mu sync.Mutex
	acked := map[string]string{} // AOR → contact
	var ackedList []string
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubDone := make(chan error, 1)
	go func() {
		_, _, c, done, err := connect(cctx, cfgOf(pub), *dur+time.Minute, true)
		if err != nil {
			pubDone <- err
			return
		}
		defer done()
		for i := 0; cctx.Err() == nil; i++ {
			aor := fmt.Sprintf("sip:chaos%d@%s", i, domain)
			contact := fmt.Sprintf("sip:chaos%d@192.0.2.%d:5060", i, i%250+1)
			wctx, wcancel := context.WithTimeout(cctx, 5*time.Second)
			err := c.lsp.Publish(wctx, aor, lsp.Binding{Contact: contact, Expires: time.Now().Add(time.Hour)})
			wcancel()
			if err != nil {
				if cctx.Err() != nil {
					break
				}
				rep.PublishFailed++
				continue
			}
			mu.Lock()
			acked[aor] = contact
			ackedList = append(ackedList, aor)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		pubDone <- nil
	}()
	// Meanwhile, the reader's node looks acknowledged bindings up.
	readDone := make(chan error, 1)
	go func() {
		_, _, c, done, err := connect(cctx, cfgOf(reader), *dur+time.Minute, false)
		if err != nil {
			readDone <- err
			return
		}
		defer done()
		for cctx.Err() == nil {
			mu.Lock()
			var aor, contact string
			if n := len(ackedList); n > 0 {
				aor = ackedList[rand.IntN(n)]
				contact = acked[aor]
			}
			mu.Unlock()
			if aor == "" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			lctx, lcancel := context.WithTimeout(cctx, 5*time.Second)
			bs, err := c.lsp.Lookup(lctx, aor)
			lcancel()
			if cctx.Err() != nil {
				break
			}
			rep.LookupsDuring++
			if err != nil || len(bs) != 1 || bs[0].Contact != contact {
				rep.FailedDuring++
				fmt.Fprintf(stderr, "lookup during chaos: %s: %v %v\n", aor, bs, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		readDone <- nil
	}()
	// The schedule: kill -9 the next of the victims (a random --kill-fraction
	// of the nodes, the publisher's and the reader's spared), bring it back
	// after --down.
	var victims []int
	for _, i := range rand.Perm(len(m.Nodes)) {
		if i != pub && i != reader {
			victims = append(victims, i)
		}
	}
	victims = victims[:max(1, min(len(victims), int(math.Ceil(*fraction*float64(len(m.Nodes))))))]
	killed := map[int]bool{}
	end := time.After(*dur)
	tick := time.NewTicker(*every)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			break loop
		case <-tick.C:
			v := victims[rep.Kills%len(victims)]
			_ = procs[v].Process.Signal(syscall.SIGKILL)
			_ = procs[v].Wait()
			rep.Kills++
			killed[v] = true
			time.Sleep(*down)
			if err := start(v); err != nil {
				return err
			}
		}
	}
	cancel()
	if err := <-pubDone; err != nil {
		return err
	}
	if err := <-readDone; err != nil {
		return err
	}
	rep.Killed = len(killed)
	rep.Published = len(acked)
	// Everyone back; give re-replication its moment, then read it all.
	if err := waitMembers(ctx, cfgOf(reader), len(m.Nodes), 30*time.Second); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*settle):
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	_, _, rc, done, err := connect(rctx, cfgOf(reader), 2*time.Minute, false)
	if err != nil {
		return err
	}
	defer done()
	missing := map[string]string{}
	for aor, contact := range acked {
		rep.Lookups++
		bs, err := rc.lsp.Lookup(rctx, aor)
		switch {
		case err != nil || len(bs) == 0:
			missing[aor] = contact
		case len(bs) != 1 || bs[0].Contact != contact:
			rep.Wrong++
		}
	}
	// What is missing may still be on its way to its replicas (a write
	// acknowledged by substitutes while a replica was down): look again
	// for a while; only what never shows up is lost.
	for deadline := time.Now().Add(*grace); len(missing) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		for aor, contact := range missing {
			if bs, err := rc.lsp.Lookup(rctx, aor); err == nil && len(bs) == 1 && bs[0].Contact == contact {
				delete(missing, aor)
				rep.Late++
			}
		}
	}
	for aor := range missing {
		rep.Lost++
		if _, err := rc.lsp.Lookup(rctx, aor); err != nil {
			rep.Unavailable++
		}
		fmt.Fprintf(stderr, "lost: %s\n", aor)
	}
	rep.Seconds = time.Since(t0).Seconds()
	if err := printJSON(stdout, rep); err != nil {
		return err
	}
	if rep.Lost > 0 || rep.Wrong > 0 || rep.FailedDuring > 0 {
		return fail(1, "chaos: %d of %d acknowledged bindings lost, %d wrong, %d of %d lookups during the kills failed",
			rep.Lost, rep.Published, rep.Wrong, rep.FailedDuring, rep.LookupsDuring)
	}
	return nil
}

// waitMembers waits until the node of cfgPath counts n live members.
func waitMembers(ctx context.Context, cfgPath string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := 0
	for time.Now().Before(deadline) {
		cctx, _, c, done, err := connect(ctx, cfgPath, 3*time.Second, false)
		if err == nil {
			size, err := c.lsp.OverlaySize(cctx)
			done()
			if err == nil {
				last = size
				if size == n {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: %d of %d members live after %v", last, n, timeout)
}
