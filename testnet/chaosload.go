package testnet

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// ChaosCost is what the testnet cost while Chaos measured it: per node
// unless said otherwise. The grouped nodes (those never killed, run
// PerProcess to a process) give the membership, connection and memory
// figures; a killed node's counters restart with it.
type ChaosCost struct {
	Seconds float64 `json:"seconds"`
	// LoopbackBytesPerSec: all bytes sent on loopback over the window,
	// per node (with the publisher's and reader's, which are small).
	LoopbackBytesPerSec float64 `json:"loopback_bytes_per_sec"`
	// MembershipBytesPerSec: membership protocol payload sent.
	MembershipBytesPerSec float64 `json:"membership_bytes_per_sec"`
	// RSSBytes: the grouped processes' resident memory over their nodes.
	RSSBytes float64 `json:"rss_bytes"`
	// Conns: open overlay connections.
	Conns float64 `json:"conns"`
	// CPU: all the testnet's processes together, in cores (not per node).
	CPU float64 `json:"cpu_cores"`
	// OneNodeRSSBytes: the mean resident memory of a one-node process (a
	// killable node's), for comparison.
	OneNodeRSSBytes float64 `json:"one_node_process_rss_bytes,omitempty"`
}

// String is the cost as a short summary.
func (c ChaosCost) String() string {
	return fmt.Sprintf("%.2f KB/s/node (membership payload %.2f), RSS %.1f MB/node, %.0f conns/node, CPU %.0f%%",
		c.LoopbackBytesPerSec/1000, c.MembershipBytesPerSec/1000, c.RSSBytes/1e6, c.Conns, 100*c.CPU)
}

// group is one process running several nodes that are never killed
// (`lsnode testnet run --only ...`), printing their Load every second.
type group struct {
	nodes   []int
	cmd     *exec.Cmd
	started chan struct{} // closed when its nodes are up
	done    chan struct{} // closed when its output ends

	mu   sync.Mutex
	load Load
}

func (g *group) Load() Load {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.load
}

// startGroups runs the nodes that are not victims PerProcess to a process,
// one process after the other (the first holds the bootstrap nodes): each
// starts once the one before has its nodes up, so the bootstrap nodes are
// not asked by hundreds of joiners at once.
func (c *chaos) startGroups(ctx context.Context) error {
	victim := map[int]bool{}
	for _, v := range c.victims {
		victim[v] = true
	}
	var rest []int
	for i := range c.m.Nodes {
		if !victim[i] {
			rest = append(rest, i)
		}
	}
	for len(rest) > 0 {
		k := min(len(rest), c.spec.PerProcess)
		g := &group{nodes: rest[:k], started: make(chan struct{}), done: make(chan struct{})}
		rest = rest[k:]
		if err := c.startGroup(g); err != nil {
			return err
		}
		select {
		case <-g.started:
		case <-g.done:
			return fmt.Errorf("%w: a group of %d nodes (from node %d) exited before its nodes were up", ErrChaos, len(g.nodes), g.nodes[0])
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Minute):
			return fmt.Errorf("%w: a group of %d nodes did not start in 3 min", ErrChaos, len(g.nodes))
		}
		// The next group joins a settled overlay: a machine busy with
		// joins answers probes late, and false accusations feed on that.
		up := 0
		for _, g := range c.groups {
			up += len(g.nodes)
		}
		if err := c.waitGroups(ctx, up, 3*time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// waitGroups waits until every grouped node sees n members.
func (c *chaos) waitGroups(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tr := c.newTrace(fmt.Sprintf("%d grouped nodes", n))
	for {
		ok, lag := c.groupsConverged(n)
		tr.step(lag)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			c.dumpGroups()
			return fmt.Errorf("%w: %d grouped nodes did not see each other within %v: %s", ErrChaos, n, timeout, lag)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *chaos) startGroup(g *group) error {
	only := make([]string, len(g.nodes))
	for k, i := range g.nodes {
		only[k] = strconv.Itoa(i)
	}
	args := []string{"testnet", "run", "--dir", c.dir, "--only", strings.Join(only, ","), "--stats", cmp.Or(c.spec.StatsEvery, time.Second).String(), "--log-level", "error"}
	if c.spec.Profile != "" {
		args = append(args, "--cpuprofile", filepath.Join(c.spec.Profile, fmt.Sprintf("group-%d.cpu", len(c.groups))),
			"--heapprofile", filepath.Join(c.spec.Profile, fmt.Sprintf("group-%d.heap", len(c.groups))))
	}
	g.cmd = exec.Command(c.spec.Exe, args...)
	g.cmd.Env = append(os.Environ(), "LSNODE_TEST_MAIN=1")
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g.cmd.Stderr = c.spec.Log
	if c.spec.Dump != "" {
		f, err := os.Create(filepath.Join(c.spec.Dump, fmt.Sprintf("group-%d.log", len(c.groups))))
		if err != nil {
			return err
		}
		defer f.Close() // the child holds its own descriptor
		g.cmd.Stderr = f
		g.cmd.Env = append(g.cmd.Env, "GOTRACEBACK=all")
	}
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := g.cmd.Start(); err != nil {
		return err
	}
	c.groups = append(c.groups, g)
	go g.read(out)
	return nil
}

// signalGroups sends sig to every grouped process.
func (c *chaos) signalGroups(sig os.Signal) {
	for _, g := range c.groups {
		_ = g.cmd.Process.Signal(sig)
	}
}

// dumpGroups, with spec.Dump set, has every grouped process write its
// goroutines' stacks to its log (SIGQUIT) and waits for them to exit.
func (c *chaos) dumpGroups() {
	if c.spec.Dump == "" {
		return
	}
	c.signalGroups(syscall.SIGQUIT)
	for _, g := range c.groups {
		select {
		case <-g.done:
		case <-time.After(30 * time.Second):
		}
	}
}

// read follows the group's output: its start line, then a Load every
// StatsEvery.
func (g *group) read(out io.Reader) {
	defer close(g.done)
	sc := bufio.NewScanner(out)
	once := sync.OnceFunc(func() { close(g.started) })
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "testnet nodes started") {
			once()
		}
		if js, ok := strings.CutPrefix(line, "load "); ok {
			var l Load
			if json.Unmarshal([]byte(js), &l) == nil {
				g.mu.Lock()
				g.load = l
				g.mu.Unlock()
			}
		}
	}
}

// groupsConverged says whether every grouped node sees all n members (the
// grouped nodes started, or every node), and if not, the smallest view.
// A partial view sees those of its region.
func (c *chaos) groupsConverged(n int) (bool, string) {
	if c.bits > 0 {
		return c.regionsConverged(n)
	}
	for _, g := range c.groups {
		if l := g.Load(); l.Nodes != len(g.nodes) || l.MembersMin != n {
			return false, fmt.Sprintf("a group of %d nodes has %d up, smallest view %d of %d (the others there: %v; %s)",
				len(g.nodes), l.Nodes, l.MembersMin, n, l.Missing, c.selfOf(l.Unseen))
		}
	}
	return true, ""
}

// regionsConverged is groupsConverged for partial views of c.bits bits.
func (c *chaos) regionsConverged(n int) (bool, string) {
	var up []int
	if n == len(c.m.Nodes) {
		for i := range c.m.Nodes {
			up = append(up, i)
		}
	} else {
		for _, g := range c.groups {
			up = append(up, g.nodes...)
		}
	}
	prefixes := make([]uint64, len(c.m.Nodes))
	for i, ni := range c.m.Nodes {
		id, _ := overlay.DecodePeerID(ni.PeerID) // a bad one is in no region
		prefixes[i] = idHash(id) >> (64 - c.bits)
	}
	prefix := func(i int) uint64 { return prefixes[i] }
	for _, g := range c.groups {
		l := g.Load()
		if l.Nodes != len(g.nodes) {
			return false, fmt.Sprintf("a group of %d nodes has %d up", len(g.nodes), l.Nodes)
		}
		for _, i := range g.nodes {
			want := 0
			for _, j := range up {
				if prefix(j) == prefix(i) {
					want++
				}
			}
			if got := l.Views[c.m.Nodes[i].Name]; got != want {
				return false, fmt.Sprintf("%s sees %d of the %d nodes of its region (%s)", c.m.Nodes[i].Name, got, want, c.selfOf(l.Unseen))
			}
		}
	}
	return true, ""
}

// selfOf says how each node named in unseen ("node7 dead") sees itself,
// from its group's Load.
func (c *chaos) selfOf(unseen []string) string {
	var out []string
	for _, u := range unseen {
		name, _, _ := strings.Cut(u, " ")
		own := "not running"
		doubted := map[string]int{}
		var by []string
		for _, g := range c.groups {
			l := g.Load()
			if s, ok := l.Self[name]; ok {
				own = s
			}
			for st, k := range l.Doubted[name] {
				doubted[st] += k
			}
			by = append(by, l.DoubtedBy[name]...)
		}
		var holders []string
		for _, h := range by {
			for _, g := range c.groups {
				l := g.Load()
				if s, ok := l.Self[h]; ok {
					if f, ok := l.FailsTo[h+"→"+name]; ok {
						s += "; streams to " + name + " not opened: " + f
					}
					holders = append(holders, h+": "+s)
				}
			}
		}
		out = append(out, fmt.Sprintf("%s there, itself: %s; views not listing it live: %v, among them %v", u, own, doubted, holders))
	}
	return strings.Join(out, "; ")
}

// traceEvery: how often a wait for the views logs its progress.
const traceEvery = 10 * time.Second

// trace logs, every traceEvery of a wait, what the testnet spent since
// the last line: the CPU of its processes, and the accusations and
// refutations its grouped nodes made (a start that does not settle keeps
// accusing live members), with the smallest view's lag.
type trace struct {
	c    *chaos
	what string
	t0   time.Time
	last costSample
	acc  [3]uint64
}

func (c *chaos) newTrace(what string) *trace {
	tr := &trace{c: c, what: what, t0: time.Now()}
	tr.last, _ = c.sample()
	tr.acc = tr.accused(tr.last)
	return tr
}

func (tr *trace) accused(s costSample) (n [3]uint64) {
	for _, l := range s.loads {
		n[0] += l.Accusations
		n[1] += l.Refutations
		n[2] += l.LateAcks
	}
	return n
}

// step logs a line if traceEvery passed since the last one.
func (tr *trace) step(lag string) {
	if time.Since(tr.last.at) < traceEvery {
		return
	}
	s, err := tr.c.sample()
	if err != nil {
		return
	}
	acc := tr.accused(s)
	secs := s.at.Sub(tr.last.at).Seconds()
	fmt.Fprintf(tr.c.spec.Log, "waiting for %s, %.0fs: CPU %.0f%% (grouped processes %.0f%%), %d accusations, %d refutations and %d late acks in %.0fs; %s\n",
		tr.what, time.Since(tr.t0).Seconds(), 100*(s.cpu-tr.last.cpu)/secs, 100*(s.groupCPU-tr.last.groupCPU)/secs,
		acc[0]-tr.acc[0], acc[1]-tr.acc[1], acc[2]-tr.acc[2], secs, cmp.Or(lag, "converged"))
	tr.last, tr.acc = s, acc
}

// costSample is one reading of the counters a ChaosCost is made of.
type costSample struct {
	at       time.Time
	lo       int64
	cpu      float64
	groupCPU float64 // of it, the grouped processes'
	loads    []Load
}

func (c *chaos) sample() (costSample, error) {
	s := costSample{at: time.Now()}
	var err error
	if s.lo, err = LoopbackSent(); err != nil {
		return s, err
	}
	// Killed (and waited for) processes' CPU is in this one's children's.
	_, s.cpu, err = ProcCPU("self")
	if err != nil {
		return s, err
	}
	for _, p := range c.live() {
		if own, _, err := ProcCPU(strconv.Itoa(p.Process.Pid)); err == nil {
			s.cpu += own
		}
	}
	for _, g := range c.groups {
		s.loads = append(s.loads, g.Load())
		if own, _, err := ProcCPU(strconv.Itoa(g.cmd.Process.Pid)); err == nil {
			s.groupCPU += own
		}
	}
	return s, nil
}

// live returns the testnet's processes that are running.
func (c *chaos) live() []*exec.Cmd {
	var out []*exec.Cmd
	for _, g := range c.groups {
		out = append(out, g.cmd)
	}
	for _, p := range c.procs {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// cost is what the testnet cost between samples a and b.
func (c *chaos) cost(a, b costSample) ChaosCost {
	secs := b.at.Sub(a.at).Seconds()
	n := float64(len(c.m.Nodes))
	cc := ChaosCost{Seconds: secs, LoopbackBytesPerSec: float64(b.lo-a.lo) / n / secs, CPU: (b.cpu - a.cpu) / secs}
	var grouped, rss, reported float64
	for k, g := range c.groups {
		grouped += float64(len(g.nodes))
		// Per second of the group's own readings (they lag the sample
		// by up to StatsEvery), over the groups with two of them.
		la, lb := a.loads[k], b.loads[k]
		if d := lb.At.Sub(la.At).Seconds(); d > 0 && !la.At.IsZero() {
			cc.MembershipBytesPerSec += float64(lb.MembershipBytes-la.MembershipBytes) / d
			reported += float64(len(g.nodes))
		}
		cc.Conns += float64(b.loads[k].Conns)
		if r, err := ProcRSS(strconv.Itoa(g.cmd.Process.Pid)); err == nil {
			rss += float64(r)
		}
	}
	if grouped > 0 {
		cc.MembershipBytesPerSec /= max(reported, 1)
		cc.Conns /= grouped
		cc.RSSBytes = rss / grouped
	}
	var ones, oneRSS float64
	for _, v := range c.victims {
		if p := c.procs[v]; p != nil {
			if r, err := ProcRSS(strconv.Itoa(p.Process.Pid)); err == nil {
				ones++
				oneRSS += float64(r)
			}
		}
	}
	if ones > 0 {
		cc.OneNodeRSSBytes = oneRSS / ones
	}
	return cc
}

// measure samples for d and returns the cost over it.
func (c *chaos) measure(ctx context.Context, d time.Duration) (*ChaosCost, error) {
	a, err := c.sample()
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	b, err := c.sample()
	if err != nil {
		return nil, err
	}
	cc := c.cost(a, b)
	return &cc, nil
}
