package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/testnet"
)

// TestMain lets the test binary act as lsnode when LSNODE_TEST_MAIN=1, so
// tests can run nodes as separate processes.
func TestMain(m *testing.M) {
	if os.Getenv("LSNODE_TEST_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

func startProc(t *testing.T, cfg string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], "run", "--config", cfg, "--log-level", "warn"), log: &bytes.Buffer{}}
	p.cmd.Env = append(os.Environ(), "LSNODE_TEST_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
}

// waitSize polls 'lsnode status' until every config's node reports n members
// (within 60 s: five race-instrumented processes starting at once on two
// cores, beside the rest of the suite).
func waitSize(t *testing.T, cfgs []string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, cfg := range cfgs {
		for {
			code, out, _ := lsnode(t, "status", "--config", cfg, "--timeout", "2s")
			var st struct {
				Size int `json:"size_estimate"`
			}
			if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Size == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reported %d members (last: %d %q)", cfg, n, code, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func TestNodeProcessesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	dir := filepath.Join(t.TempDir(), "tn")
	m, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 5})
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []string
	ids := map[overlay.PeerID]int{}
	for i, n := range m.Nodes {
		path := filepath.Join(dir, n.Config)
		cfg, err := node.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Overlay.GossipInterval = node.Duration(200 * time.Millisecond)
		cfg.Overlay.FailAfter = node.Duration(2 * time.Second)
		cfg.LSP.RebalanceDelay = node.Duration(300 * time.Millisecond)
		if err := cfg.Save(path); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, path)
		id, _ := overlay.DecodePeerID(n.PeerID)
		ids[id] = i
	}
	procs := make([]*proc, len(cfgs))
	for i, c := range cfgs {
		procs[i] = startProc(t, c)
	}
	waitSize(t, cfgs, 5)

	aor := "sip:alice@a.example"
	if code, _, errs := lsnode(t, "publish", "--config", cfgs[0], "--aor", aor, "--contact", "sip:alice@192.0.2.10", "--expires", "600"); code != 0 {
		t.Fatalf("publish: %q", errs)
	}
	// The three replicas by the overlay's metric; kill -9 one that is not node0.
	var all []overlay.PeerID
	for id := range ids {
		all = append(all, id)
	}
	// Closest by XOR distance between keyspace positions (kad-dht's).
	key := overlay.KeyPosition(lsp.Key(aor))
	dist := func(id overlay.PeerID) []byte {
		d := overlay.KeyPosition(string(id))
		for i := range d {
			d[i] ^= key[i]
		}
		return d
	}
	slices.SortFunc(all, func(a, b overlay.PeerID) int { return bytes.Compare(dist(a), dist(b)) })
	replicas := all[:3]
	isReplica := map[int]bool{}
	for _, r := range replicas {
		isReplica[ids[r]] = true
	}
	victim, reader := -1, -1
	for i := 1; i < 5; i++ {
		if isReplica[i] && victim < 0 {
			victim = i
		}
		if !isReplica[i] && reader < 0 {
			reader = i
		}
	}
	if victim < 0 || reader < 0 {
		t.Fatalf("replicas %v leave no victim/reader", isReplica)
	}
	procs[victim].kill9(t)
	if code, out, errs := lsnode(t, "lookup", "--config", cfgs[reader], aor); code != 0 || !bytes.Contains([]byte(out), []byte("192.0.2.10")) {
		t.Fatalf("lookup with a replica killed: %d %q %q", code, out, errs)
	}

	// kill -9 every node, restart them all: only the on-disk stores remain.
	for i, p := range procs {
		if i != victim {
			p.kill9(t)
		}
	}
	for i, c := range cfgs {
		procs[i] = startProc(t, c)
	}
	waitSize(t, cfgs, 5)
	for i, c := range cfgs {
		code, out, errs := lsnode(t, "lookup", "--config", c, aor)
		if code != 0 || !bytes.Contains([]byte(out), []byte("192.0.2.10")) {
			t.Fatalf("node%d after restarting all: %d %q %q\nlog: %s", i, code, out, errs, procs[i].log)
		}
	}

	// SIGTERM: a clean, prompt exit.
	if err := procs[2].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- procs[2].cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nlog: %s", err, procs[2].log)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node did not stop within 10s of SIGTERM")
	}
}

// TestChaos runs `lsnode chaos` on a 30-node testnet: a third of the
// nodes, each its own process, are killed -9 and restarted, each twice,
// while bindings are published and looked up; none may be lost and every
// lookup must answer. The other 20 run 10 to a process, whose loads give
// the idle and churn costs.
func TestChaos(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	if code, _, errs := lsnode(t, "testnet", "init", "--dir", dir, "--nodes", "30", "--domains", "a.example,b.example"); code != 0 {
		t.Fatalf("init: %d %q", code, errs)
	}
	// The 30 nodes run a plain build of lsnode: 30 race-instrumented
	// processes would not fit two cores (the chaos logic itself is plain
	// Go, covered by this package's other tests under -race).
	exe := filepath.Join(t.TempDir(), "lsnode")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out, errs bytes.Buffer
	cmd := exec.Command(exe, "chaos", "--dir", dir, "--duration", "31s", "--kill-every", "1500ms", "--down", "500ms",
		"--per-process", "10", "--idle", "3s")
	cmd.Stdout, cmd.Stderr = &out, &errs
	err := cmd.Run()
	var rep testnet.ChaosReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil || err != nil {
		t.Fatalf("chaos: %v, %v\n%s\n%s", err, jerr, out.String(), errs.String())
	}
	if rep.Killed != 10 || rep.Kills < 18 || rep.Published < 100 || rep.Lost != 0 || rep.Wrong != 0 ||
		rep.Lookups != rep.Published || rep.LookupsDuring < 100 || rep.FailedDuring != 0 || rep.Processes != 12 {
		t.Fatalf("chaos report %+v", rep)
	}
	for _, c := range []*testnet.ChaosCost{rep.Idle, rep.Churn} {
		if c == nil || c.Conns < 2 || c.MembershipBytesPerSec <= 0 || c.LoopbackBytesPerSec <= 0 || c.RSSBytes <= 0 ||
			c.CPU <= 0 || c.OneNodeRSSBytes <= 0 {
			t.Fatalf("chaos costs: idle %+v, churn %+v", rep.Idle, rep.Churn)
		}
	}
	t.Logf("chaos: %+v", rep)
}
