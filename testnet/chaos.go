package testnet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
)

// ErrChaos is returned when a chaos run cannot start (a testnet too small
// for it, a bad ChaosSpec), and by ChaosReport.Err when it lost bindings.
var ErrChaos = errors.New("chaos")

// ChaosSpec describes a chaos run (see Chaos).
type ChaosSpec struct {
	// Exe is the lsnode binary that runs each node (`Exe run --config
	// FILE`). Required.
	Exe string
	// Duration of killing and publishing. Default 30s.
	Duration time.Duration
	// KillEvery: one kill -9 per interval. Default 2s.
	KillEvery time.Duration
	// Down: how long a killed node stays down (0: restarted at once).
	Down time.Duration
	// Settle: after the last restart, time for re-replication before the
	// final read.
	Settle time.Duration
	// Grace: how long a binding missing at first is looked for again
	// before it counts as lost.
	Grace time.Duration
	// KillFraction: the share of the nodes that are killed, each in turn,
	// again and again; in (0, 1]. Default 1/3.
	KillFraction float64
	// Pace: the publisher and the reader each wait this long between two
	// requests. Default 20ms.
	Pace time.Duration
	// PerProcess: the nodes that are never killed run this many to a
	// process (`lsnode testnet run --only`, stores in memory), so hundreds
	// of nodes fit one machine; 0 or 1: each node its own `lsnode run`.
	PerProcess int
	// Idle, when set, measures what the testnet costs standing still for
	// this long, Warmup after every node sees every other, before the
	// kills (ChaosReport.Idle); the kills are measured too (Churn).
	Idle, Warmup time.Duration
	// Log receives a line per failed lookup and per lost binding, and the
	// grouped processes' errors; nil: discarded.
	Log io.Writer
	// Dump, when set, is a directory: each grouped process writes its
	// stderr to group-K.log there, and when the members do not converge
	// every grouped process is sent SIGQUIT first (Go writes each
	// goroutine's stack there), for a post-mortem of a stalled node.
	Dump string
	// Profile, when set, is a directory: each grouped process writes a CPU
	// profile of its first two minutes (its start and the overlay's
	// convergence) to group-K.cpu there, and with Idle its heap at the end
	// of the idle window to group-K.heap.
	Profile string
	// StatsEvery is how often each grouped process reports its Load
	// (testnet run --stats); each costs it a walk of every view. Default
	// 1s; a window of cost (Idle) should span several.
	StatsEvery time.Duration
}

// ChaosReport is what a chaos run found (`lsnode chaos` prints it as JSON).
type ChaosReport struct {
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
	// Processes: how many processes ran the nodes.
	Processes int `json:"processes"`
	// Converged: seconds from the last process started to every view
	// complete (the reader's, and every grouped node's).
	Converged float64 `json:"converged_seconds"`
	// Idle and Churn: the cost before and during the kills (with
	// ChaosSpec.Idle).
	Idle  *ChaosCost `json:"idle,omitempty"`
	Churn *ChaosCost `json:"churn,omitempty"`
}

// Err says what the run lost (an ErrChaos); nil if nothing.
func (r ChaosReport) Err() error {
	if r.Lost > 0 || r.Wrong > 0 || r.FailedDuring > 0 {
		return fmt.Errorf("%w: %d of %d acknowledged bindings lost, %d wrong, %d of %d lookups during the kills failed",
			ErrChaos, r.Lost, r.Published, r.Wrong, r.FailedDuring, r.LookupsDuring)
	}
	return nil
}

// chaos is one chaos run.
type chaos struct {
	dir   string
	m     *Manifest
	spec  ChaosSpec
	procs []*exec.Cmd // the nodes run one to a process (nil: grouped)
	// victims are the nodes killed in turn; groups run the others when
	// PerProcess > 1.
	victims []int
	groups  []*group
	// The publisher talks to the first domain node, the reader to the
	// last node: both are spared; every other node may be killed.
	pub, reader int
	partial     bool // the reader keeps a partial view (its size is an estimate)
	bits        int  // every node's region bits, for a partial view
	rep         ChaosReport

	mu      sync.Mutex
	acked   map[string]string // AOR → contact
	order   []string
	ackedAt map[string]time.Time // when each AOR's write was acknowledged
	events  []string             // the kill schedule so far, for the log of a failed lookup
	start0  time.Time
}

// event notes a kill or restart for the log of a failed lookup.
func (c *chaos) event(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, fmt.Sprintf("%.2fs ", time.Since(c.start0).Seconds())+fmt.Sprintf(format, args...))
}

// recent is the last n events of the kill schedule.
func (c *chaos) recent(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.events[max(0, len(c.events)-n):], "; ")
}

// Chaos runs every node of the testnet in dir as its own process, kills -9
// and restarts a share of them on a schedule while a client publishes
// through a node that is never killed and another looks the acknowledged
// bindings up; then it looks every acknowledged binding up and reports
// what was lost (see ChaosReport.Err). It stops every process it started.
func Chaos(ctx context.Context, dir string, spec ChaosSpec) (ChaosReport, error) {
	c, err := newChaos(dir, spec)
	if err != nil {
		return ChaosReport{}, err
	}
	defer c.stopAll()
	t0 := time.Now()
	if err := c.startAll(ctx); err != nil {
		return ChaosReport{}, err
	}
	started := time.Now()
	if err := c.waitMembers(ctx); err != nil {
		return ChaosReport{}, err
	}
	c.rep.Converged = time.Since(started).Seconds()
	if c.spec.Idle > 0 {
		select {
		case <-ctx.Done():
			return ChaosReport{}, ctx.Err()
		case <-time.After(c.spec.Warmup):
		}
		if c.rep.Idle, err = c.measure(ctx, c.spec.Idle); err != nil {
			return ChaosReport{}, err
		}
		if c.spec.Profile != "" {
			c.signalGroups(syscall.SIGUSR1) // their heaps standing still
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pubDone, readDone := make(chan error, 1), make(chan error, 1)
	go func() { pubDone <- c.publish(cctx) }()
	go func() { readDone <- c.read(cctx) }()
	var before costSample
	if c.spec.Idle > 0 {
		if before, err = c.sample(); err != nil {
			return ChaosReport{}, err
		}
	}
	if err := c.kill(ctx); err != nil {
		return ChaosReport{}, err
	}
	if c.spec.Idle > 0 {
		after, err := c.sample()
		if err != nil {
			return ChaosReport{}, err
		}
		churn := c.cost(before, after)
		c.rep.Churn = &churn
	}
	cancel()
	if err := errors.Join(<-pubDone, <-readDone); err != nil {
		return ChaosReport{}, err
	}
	c.rep.Published = len(c.acked)
	// Everyone back; give re-replication its moment, then read it all.
	if err := c.waitMembers(ctx); err != nil {
		return ChaosReport{}, err
	}
	select {
	case <-ctx.Done():
		return ChaosReport{}, ctx.Err()
	case <-time.After(c.spec.Settle):
	}
	if err := c.verify(ctx); err != nil {
		return ChaosReport{}, err
	}
	c.rep.Seconds = time.Since(t0).Seconds()
	return c.rep, nil
}

func newChaos(dir string, spec ChaosSpec) (*chaos, error) {
	if spec.Duration == 0 {
		spec.Duration = 30 * time.Second
	}
	if spec.KillEvery == 0 {
		spec.KillEvery = 2 * time.Second
	}
	if spec.KillFraction == 0 {
		spec.KillFraction = 1.0 / 3
	}
	if spec.Log == nil {
		spec.Log = io.Discard
	}
	if spec.Pace == 0 {
		spec.Pace = 20 * time.Millisecond
	}
	if spec.Duration < 0 || spec.KillEvery < 0 || spec.Down < 0 || spec.Settle < 0 || spec.Grace < 0 ||
		spec.Idle < 0 || spec.Warmup < 0 || spec.Pace < 0 || spec.KillFraction < 0 || spec.KillFraction > 1 || spec.PerProcess < 0 {
		return nil, fmt.Errorf("%w: want durations ≥ 0, a kill fraction in (0,1] and nodes per process ≥ 0", ErrChaos)
	}
	if spec.Exe == "" {
		return nil, fmt.Errorf("%w: no lsnode binary to run the nodes with", ErrChaos)
	}
	m, err := LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	if len(m.Nodes) < 4 {
		return nil, fmt.Errorf("%w: want a testnet of at least 4 nodes, have %d", ErrChaos, len(m.Nodes))
	}
	c := &chaos{dir: dir, m: m, spec: spec, procs: make([]*exec.Cmd, len(m.Nodes)),
		pub: -1, reader: len(m.Nodes) - 1, rep: ChaosReport{Nodes: len(m.Nodes)}, acked: map[string]string{}, ackedAt: map[string]time.Time{}, start0: time.Now()}
	for i, n := range m.Nodes {
		if n.Domain != "" && c.pub < 0 {
			c.pub = i
		}
	}
	if c.pub < 0 || c.pub == c.reader {
		return nil, fmt.Errorf("%w: the testnet needs a domain node that is not its last node", ErrChaos)
	}
	for _, i := range rand.Perm(len(m.Nodes)) {
		if i != c.pub && i != c.reader {
			c.victims = append(c.victims, i)
		}
	}
	c.victims = c.victims[:max(1, min(len(c.victims), int(math.Ceil(spec.KillFraction*float64(len(m.Nodes))))))]
	cfg, err := node.LoadConfig(c.cfgOf(c.reader))
	if err != nil {
		return nil, err
	}
	c.partial = cfg.Overlay.View == "partial"
	if c.partial {
		c.bits = cfg.Overlay.RegionBits
	}
	return c, nil
}

func (c *chaos) cfgOf(i int) string { return filepath.Join(c.dir, c.m.Nodes[i].Config) }

// dial connects a location-service client to node i (see node.Dial).
func (c *chaos) dial(ctx context.Context, i int, withCred bool) (*lsp.Client, error) {
	cfg, err := node.LoadConfig(c.cfgOf(i))
	if err != nil {
		return nil, err
	}
	return node.Dial(ctx, cfg, withCred)
}

// startAll starts the testnet's processes: every node its own, or the
// victims so and the others in groups.
func (c *chaos) startAll(ctx context.Context) error {
	if c.spec.PerProcess > 1 {
		if err := c.startGroups(ctx); err != nil {
			return err
		}
		for _, v := range c.victims {
			if err := c.start(v); err != nil {
				return err
			}
			time.Sleep(250 * time.Millisecond) // not all joining at once
		}
	} else {
		for i := range c.m.Nodes {
			if err := c.start(i); err != nil {
				return err
			}
		}
	}
	c.rep.Processes = len(c.live())
	return nil
}

// start runs node i as a process of its own.
func (c *chaos) start(i int) error {
	cmd := exec.Command(c.spec.Exe, "run", "--config", c.cfgOf(i), "--log-level", "error")
	// LSNODE_TEST_MAIN: when Exe is cmd/lsnode's test binary.
	cmd.Env = append(os.Environ(), "LSNODE_TEST_MAIN=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.procs[i] = cmd
	return nil
}

func (c *chaos) stopAll() {
	live := c.live()
	for _, p := range live {
		if p.ProcessState == nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, g := range c.groups {
		<-g.done // its output read to the end before Wait closes the pipe
	}
	for _, p := range live {
		if p.ProcessState == nil {
			_ = p.Wait()
		}
	}
}

// publish publishes a new binding through the publisher's node, again and
// again, until ctx ends, noting each acknowledged one.
func (c *chaos) publish(ctx context.Context) error {
	cl, err := c.dial(ctx, c.pub, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	domain := c.m.Nodes[c.pub].Domain
	for i := 0; ctx.Err() == nil; i++ {
		aor := fmt.Sprintf("sip:chaos%d@%s", i, domain)
		contact := fmt.Sprintf("sip:chaos%d@192.0.2.%d:5060", i, i%250+1)
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		err := cl.Publish(wctx, aor, lsp.Binding{Contact: contact, Expires: time.Now().Add(time.Hour)})
		wcancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.rep.PublishFailed++
			continue
		}
		c.mu.Lock()
		c.acked[aor] = contact
		c.ackedAt[aor] = time.Now()
		c.order = append(c.order, aor)
		c.mu.Unlock()
		time.Sleep(c.spec.Pace)
	}
	return nil
}

// read looks random acknowledged bindings up through the reader's node
// until ctx ends.
func (c *chaos) read(ctx context.Context) error {
	cl, err := c.dial(ctx, c.reader, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	// A failed lookup is asked again through the publisher's node too:
	// whether the binding is missing for every view or for the reader's.
	other, err := c.dial(ctx, c.pub, false)
	if err != nil {
		return err
	}
	defer other.Close()
	for ctx.Err() == nil {
		c.mu.Lock()
		var aor, contact string
		var at time.Time
		if n := len(c.order); n > 0 {
			aor = c.order[rand.IntN(n)]
			contact, at = c.acked[aor], c.ackedAt[aor]
		}
		c.mu.Unlock()
		if aor == "" {
			time.Sleep(c.spec.Pace)
			continue
		}
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		bs, err := cl.Lookup(lctx, aor)
		lcancel()
		if ctx.Err() != nil {
			break
		}
		c.rep.LookupsDuring++
		if err != nil || len(bs) != 1 || bs[0].Contact != contact {
			c.rep.FailedDuring++
			// What the schedule did around it, and whether it was a
			// moment's: the same lookup again at once.
			now := time.Since(c.start0).Seconds()
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			again, aerr := cl.Lookup(rctx, aor)
			elsewhere, eerr := other.Lookup(rctx, aor)
			size, _ := cl.OverlaySize(rctx)
			otherSize, _ := other.OverlaySize(rctx)
			rcancel()
			fmt.Fprintf(c.spec.Log, "lookup during chaos: %s: %v %v (at %.2fs, acknowledged %.2fs before; again at once: %v %v; through the publisher's node: %v %v; "+
				"members live in the reader's view %d, in the publisher's %d; last kills: %s)\n",
				aor, bs, err, now, time.Since(at).Seconds(), again, aerr, elsewhere, eerr, size, otherSize, c.recent(4))
		}
		time.Sleep(c.spec.Pace)
	}
	return nil
}

// kill is the schedule: for Duration, kill -9 the next of the victims (a
// random KillFraction of the nodes, the publisher's and the reader's
// spared) every KillEvery, and bring it back after Down.
func (c *chaos) kill(ctx context.Context) error {
	victims := c.victims
	killed := map[int]bool{}
	end := time.After(c.spec.Duration)
	tick := time.NewTicker(c.spec.KillEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			c.rep.Killed = len(killed)
			return nil
		case <-tick.C:
			v := victims[c.rep.Kills%len(victims)]
			_ = c.procs[v].Process.Signal(syscall.SIGKILL)
			_ = c.procs[v].Wait()
			c.event("killed node %d", v)
			c.rep.Kills++
			killed[v] = true
			time.Sleep(c.spec.Down)
			if err := c.start(v); err != nil {
				return err
			}
			c.event("restarted node %d", v)
		}
	}
}

// verify looks every acknowledged binding up through the reader's node.
func (c *chaos) verify(ctx context.Context) error {
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	rc, err := c.dial(rctx, c.reader, false)
	if err != nil {
		return err
	}
	defer rc.Close()
	missing := map[string]string{}
	for aor, contact := range c.acked {
		c.rep.Lookups++
		bs, err := rc.Lookup(rctx, aor)
		switch {
		case err != nil || len(bs) == 0:
			missing[aor] = contact
		case len(bs) != 1 || bs[0].Contact != contact:
			c.rep.Wrong++
		}
	}
	// What is missing may still be on its way to its replicas (a write
	// acknowledged by substitutes while a replica was down): look again
	// for a while; only what never shows up is lost.
	for deadline := time.Now().Add(c.spec.Grace); len(missing) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		for aor, contact := range missing {
			if bs, err := rc.Lookup(rctx, aor); err == nil && len(bs) == 1 && bs[0].Contact == contact {
				delete(missing, aor)
				c.rep.Late++
			}
		}
	}
	for aor := range missing {
		c.rep.Lost++
		if _, err := rc.Lookup(rctx, aor); err != nil {
			c.rep.Unavailable++
		}
		fmt.Fprintf(c.spec.Log, "lost: %s\n", aor)
	}
	return nil
}

// waitMembers waits up to 30s (plus 200ms a node) until the reader's node
// counts every node, and so does every grouped node.
func (c *chaos) waitMembers(ctx context.Context) error {
	last, n := 0, len(c.m.Nodes)
	timeout := 30*time.Second + time.Duration(n)*200*time.Millisecond
	deadline := time.Now().Add(timeout)
	lag := ""
	tr := c.newTrace(fmt.Sprintf("all %d members", n))
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		cl, err := c.dial(cctx, c.reader, false)
		if err == nil {
			size, err := cl.OverlaySize(cctx)
			cl.Close()
			if err == nil {
				last = size
			}
		}
		cancel()
		var ok bool
		ok, lag = c.groupsConverged(n)
		tr.step(fmt.Sprintf("%d at the reader; %s", last, cmp.Or(lag, "groups converged")))
		if ok && (last == n || c.partial) {
			return nil // a partial view's size is an estimate
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	c.dumpGroups()
	return fmt.Errorf("%w: %d of %d members live at the reader after %v; %s", ErrChaos, last, n, timeout, lag)
}
