package testnet

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
)

// RunOptions adjust how Start runs a testnet.
type RunOptions struct {
	// Persist keeps each node's datastore on disk (nodes/<name>/data);
	// otherwise stores are in memory.
	Persist bool
	// ReadyTimeout bounds waiting for every node to see every other. Default
	// 30s plus 200ms per node.
	ReadyTimeout time.Duration
	// DisableDHTRefresh turns kad-dht's periodic refresh off.
	DisableDHTRefresh bool
	// Parallel node starts. Default 8.
	Parallel int
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Tweak, when set, edits each node's config before it starts (tests).
	Tweak func(*node.Config)
	// Only, when set, lists the nodes (manifest indexes) this process
	// runs: the others run elsewhere (a testnet split over processes, as
	// Chaos's PerProcess does). Each starts with its configured bootstrap
	// and Start does not wait for membership to converge.
	Only []int
}

// Network is a running in-process testnet.
type Network struct {
	Dir      string
	Manifest *Manifest
	opts     RunOptions

	mu      sync.Mutex
	nodes   []*node.Node
	configs []*node.Config

	idsOnce sync.Once
	ids     []overlay.PeerID // the manifest's peer IDs, decoded once ("" if bad)
}

// peerIDs are the manifest's nodes' peer IDs: Load (--stats) runs each
// second over every node of the process and every node of the testnet;
// decoding the IDs each time (base58) was 4% of the machine's CPU samples
// in a 300-node make scale, Load as a whole 9%.
func (n *Network) peerIDs() []overlay.PeerID {
	n.idsOnce.Do(func() {
		n.ids = make([]overlay.PeerID, len(n.Manifest.Nodes))
		for i, ni := range n.Manifest.Nodes {
			n.ids[i], _ = overlay.DecodePeerID(ni.PeerID)
		}
	})
	return n.ids
}

// Start runs every node of the testnet in dir in this process and returns
// once each node's membership view holds all nodes.
func Start(ctx context.Context, dir string, opts RunOptions) (*Network, error) {
	m, err := LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30*time.Second + time.Duration(len(m.Nodes))*200*time.Millisecond
	}
	n := &Network{Dir: dir, Manifest: m, opts: opts, nodes: make([]*node.Node, len(m.Nodes)),
		configs: make([]*node.Config, len(m.Nodes))}
	for i, ni := range m.Nodes {
		cfg, err := node.LoadConfig(filepath.Join(dir, ni.Config))
		if err != nil {
			return nil, err
		}
		if opts.Tweak != nil {
			opts.Tweak(cfg)
		}
		n.configs[i] = cfg
	}
	if opts.Only != nil {
		if err := n.startOnly(ctx, opts.Only); err != nil {
			return nil, err
		}
		return n, nil
	}
	// Bootstrap nodes first, then the rest a few at a time.
	boot := min(3, len(m.Nodes))
	for i := 0; i < boot; i++ {
		// A first-wave node joins through the nodes started before it only:
		// the others are not up yet (its config keeps them for restarts).
		first := *n.configs[i]
		first.Overlay.Bootstrap = nil
		for j := 0; j < i; j++ {
			first.Overlay.Bootstrap = append(first.Overlay.Bootstrap, m.Nodes[j].Multiaddrs...)
		}
		if err := n.start(ctx, i, &first); err != nil {
			n.Close()
			return nil, err
		}
	}
	rest := make([]int, 0, len(m.Nodes)-boot)
	for i := boot; i < len(m.Nodes); i++ {
		rest = append(rest, i)
	}
	if err := n.startAll(ctx, rest); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.WaitConverged(ctx, opts.ReadyTimeout); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// startOnly starts the nodes of only, which must be manifest indexes.
func (n *Network) startOnly(ctx context.Context, only []int) error {
	for _, i := range only {
		if i < 0 || i >= len(n.nodes) {
			return fmt.Errorf("testnet: no node %d: the testnet has nodes 0 to %d", i, len(n.nodes)-1)
		}
	}
	if err := n.startAll(ctx, only); err != nil {
		n.Close()
		return err
	}
	return nil
}

// startAll starts the nodes idx, opts.Parallel at a time.
func (n *Network) startAll(ctx context.Context, idx []int) error {
	sem := make(chan struct{}, n.opts.Parallel)
	var wg sync.WaitGroup
	errs := make([]error, len(idx))
	for k, i := range idx {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[k] = n.StartNode(ctx, i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StartNode starts (or restarts) node i.
func (n *Network) StartNode(ctx context.Context, i int) error { return n.start(ctx, i, n.configs[i]) }

func (n *Network) start(ctx context.Context, i int, cfg *node.Config) error {
	nd, err := node.New(ctx, cfg, node.Options{
		InMemory:          !n.opts.Persist,
		DisableDHTRefresh: n.opts.DisableDHTRefresh,
		Logger:            n.opts.Logger,
	})
	if err != nil {
		return fmt.Errorf("testnet: start %s: %w", n.Manifest.Nodes[i].Name, err)
	}
	n.mu.Lock()
	n.nodes[i] = nd
	n.mu.Unlock()
	return nil
}

// StopNode stops node i (its on-disk store, if any, stays).
func (n *Network) StopNode(i int) error {
	n.mu.Lock()
	nd := n.nodes[i]
	n.nodes[i] = nil
	n.mu.Unlock()
	if nd == nil {
		return nil
	}
	return nd.Close()
}

// Node returns node i, or nil while it is stopped.
func (n *Network) Node(i int) *node.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodes[i]
}

// Running returns the indexes of the running nodes.
func (n *Network) Running() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []int
	for i, nd := range n.nodes {
		if nd != nil {
			out = append(out, i)
		}
	}
	return out
}

// WaitConverged waits until every running node's live membership equals
// the set of running nodes (in its region, for a partial view).
func (n *Network) WaitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		running := n.Running()
		hashes := map[int]uint64{}
		for _, j := range running {
			if m := n.Node(j); m != nil {
				hashes[j] = idHash(m.Overlay().ID())
			}
		}
		lag := ""
		for _, i := range running {
			nd := n.Node(i)
			if nd == nil {
				continue
			}
			want := 0
			bits, prefix := nd.Overlay().Region()
			for _, h := range hashes {
				if bits == 0 || h>>(64-bits) == prefix {
					want++
				}
			}
			if got := len(nd.Overlay().Members()); got != want {
				lag = fmt.Sprintf("%s sees %d of %d nodes%s", n.Manifest.Nodes[i].Name, got, want, n.unseen(nd, running))
				break
			}
		}
		if lag == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testnet: membership did not converge in %v: %s", timeout, lag)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// inView: m belongs in nd's membership view (nd's region holds it).
func inView(nd, m *node.Node) bool {
	bits, prefix := nd.Overlay().Region()
	return bits == 0 || idHash(m.Overlay().ID())>>(64-bits) == prefix
}

// idHash is the first 8 bytes of a peer's Kademlia ID, where regions are
// told apart.
func idHash(id overlay.PeerID) uint64 {
	h := sha256.Sum256([]byte(id))
	return binary.BigEndian.Uint64(h[:8])
}

// unseen names up to 3 running nodes nd does not see live, with why.
func (n *Network) unseen(nd *node.Node, running []int) string {
	var out []string
	for _, j := range running {
		m := n.Node(j)
		if m == nil || len(out) == 3 || !inView(nd, m) {
			continue
		}
		if st := nd.Overlay().MemberState(m.Overlay().ID()); st != "live" {
			ms := m.Overlay().MembershipStats()
			out = append(out, fmt.Sprintf("%s %s: it refuted %d accusations, health %d", n.Manifest.Nodes[j].Name, st, ms.Refutations, ms.Health))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, ", ") + ")"
}

// Close stops every node.
func (n *Network) Close() error {
	var wg sync.WaitGroup
	errs := make([]error, len(n.nodes))
	for i := range n.nodes {
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = n.StopNode(i) }(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Load is a snapshot of what the running nodes of a Network hold and have
// sent (a Chaos run reads it from each of its processes).
type Load struct {
	// At: when it was taken (a reader may see it seconds later).
	At         time.Time `json:"at"`
	Nodes      int       `json:"nodes"`
	MembersMin int       `json:"members_min"` // the smallest live view among them
	MembersMax int       `json:"members_max"`
	// Views: each node's live view, by name.
	Views map[string]int `json:"views,omitempty"`
	// Conns: overlay connections, summed over the nodes.
	Conns int `json:"conns"`
	// MembershipBytes: membership payload sent, summed over the nodes.
	MembershipBytes uint64 `json:"membership_bytes"`
	// Messages sent by type (ping, ack, ping-req, have, want, updates,
	// join, snapshot, sync, summary), accusations made and refuted, summed.
	SentByType  []uint64 `json:"sent_by_type"`
	Accusations uint64   `json:"accusations"`
	Refutations uint64   `json:"refutations"`
	LateAcks    uint64   `json:"late_acks"` // acks of probes that had failed
	// Missing: how the node with the smallest view sees the testnet's
	// nodes it does not list live, counted by membership state (nodes
	// not running anywhere are "unknown").
	Missing map[string]int `json:"missing,omitempty"`
	// Unseen names up to 4 of them with their state there; Self is each
	// running node's own side: its live view, refutations and health
	// (to tell a node nobody hears from one that does not hear).
	Unseen []string          `json:"unseen,omitempty"`
	Self   map[string]string `json:"self,omitempty"`
	// Doubted: for up to 8 testnet nodes that some running node here
	// does not list live although they run here or elsewhere, how many
	// views here hold them in each state.
	Doubted map[string]map[string]int `json:"doubted,omitempty"`
	// DoubtedBy names up to 3 of the nodes here holding each of them so.
	DoubtedBy map[string][]string `json:"doubted_by,omitempty"`
	// FailsTo: for a node here doubting another ("node3→node7"), the
	// membership streams to it the doubter failed to open in a row.
	FailsTo map[string]string `json:"fails_to,omitempty"`
}

// Load returns the running nodes' Load.
func (n *Network) Load() Load {
	l := Load{At: time.Now()}
	for _, i := range n.Running() {
		nd := n.Node(i)
		if nd == nil {
			continue
		}
		o := nd.Overlay()
		m := len(o.Members())
		if l.Views == nil {
			l.Views = map[string]int{}
		}
		l.Views[n.Manifest.Nodes[i].Name] = m
		if l.Nodes == 0 || m < l.MembersMin {
			l.MembersMin = m
			l.Missing, l.Unseen = n.missing(nd)
		}
		if l.Self == nil {
			l.Self = map[string]string{}
		}
		ms := o.MembershipStats()
		fails, last := o.MembershipSendFailures()
		l.Self[n.Manifest.Nodes[i].Name] = fmt.Sprintf("view %d, refuted %d, health %d, bans %d, syncs %d, streams not opened %d (last: %s); %s", m, ms.Refutations, ms.Health, ms.Bans, ms.Syncs, fails, n.nameFailure(last), o.StreamUse())
		n.doubts(&l, nd)
		l.MembersMax = max(l.MembersMax, m)
		l.Nodes++
		l.Conns += o.Stats(0).Connections
		l.MembershipBytes += ms.BytesSent
		l.Accusations += ms.Accusations
		l.Refutations += ms.Refutations
		l.LateAcks += ms.LateAcks
		if l.SentByType == nil {
			l.SentByType = make([]uint64, len(ms.SentByType)-1)
		}
		for k, c := range ms.SentByType[1:] {
			l.SentByType[k] += c
		}
	}
	return l
}

// missing counts the testnet's nodes nd does not list live by their state
// in nd's view, and names up to 4 of those it knows of (not "unknown").
func (n *Network) missing(nd *node.Node) (map[string]int, []string) {
	out := map[string]int{}
	var names []string
	ids := n.peerIDs()
	for i, ni := range n.Manifest.Nodes {
		id := ids[i]
		if id == "" {
			continue
		}
		if st := nd.Overlay().MemberState(id); st != "live" {
			out[st]++
			if st != "unknown" && len(names) < 4 {
				names = append(names, ni.Name+" "+st+n.suspicion(nd, id))
			}
		}
	}
	return out, names
}

// doubts counts, into l.Doubted, the states nd holds testnet nodes in
// other than live and unknown (unknown: not running, as far as nd knows).
func (n *Network) doubts(l *Load, nd *node.Node) {
	ids := n.peerIDs()
	for i, ni := range n.Manifest.Nodes {
		id := ids[i]
		if id == "" || id == nd.Overlay().ID() {
			continue
		}
		st := nd.Overlay().MemberState(id)
		if st == "live" || st == "unknown" {
			continue
		}
		if l.Doubted == nil {
			l.Doubted = map[string]map[string]int{}
		}
		d := l.Doubted[ni.Name]
		if d == nil {
			if len(l.Doubted) >= 8 {
				continue
			}
			d = map[string]int{}
			l.Doubted[ni.Name] = d
		}
		d[st]++
		if l.DoubtedBy == nil {
			l.DoubtedBy = map[string][]string{}
		}
		if by := l.DoubtedBy[ni.Name]; len(by) < 3 {
			l.DoubtedBy[ni.Name] = append(by, n.nameOf(nd.Overlay().ID().String()))
		}
		if k, last := nd.Overlay().MembershipSendFailuresTo(id); k > 0 {
			if l.FailsTo == nil {
				l.FailsTo = map[string]string{}
			}
			l.FailsTo[n.nameOf(nd.Overlay().ID().String())+"→"+ni.Name] = fmt.Sprintf("%d in a row (last: %s)", k, last)
		}
	}
}

// nameFailure puts the node's name in front of a send failure that
// starts with its peer ID.
func (n *Network) nameFailure(s string) string {
	if id, rest, ok := strings.Cut(s, " "); ok {
		return n.nameOf(id) + " " + rest
	}
	return s
}

// nameOf is the testnet name of the node with peer ID id, or id.
func (n *Network) nameOf(id string) string {
	for _, ni := range n.Manifest.Nodes {
		if ni.PeerID == id {
			return ni.Name
		}
	}
	return id
}

// suspicion says who accused id in nd's view, by node name, and when.
func (n *Network) suspicion(nd *node.Node, id overlay.PeerID) string {
	accusers, at, spread := nd.Overlay().MemberSuspicion(id)
	if len(accusers) == 0 {
		return ""
	}
	var names []string
	for _, a := range accusers {
		names = append(names, n.nameOf(a.String()))
	}
	how := "quiet"
	if spread {
		how = "spread"
	}
	return fmt.Sprintf(" (accused by %s %s ago, %s)", strings.Join(names, "+"), time.Since(at).Round(time.Second), how)
}

// PrintLoad prints the Load as a JSON line ("load {...}") every interval
// until ctx ends; with interval 0 it only waits for ctx.
func (n *Network) PrintLoad(ctx context.Context, every time.Duration, w io.Writer) {
	if every <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b, _ := json.Marshal(n.Load())
			fmt.Fprintf(w, "load %s\n", b)
		}
	}
}

// ParseNodes parses a list of node indexes such as "3,4,17", each at most
// once (RunOptions.Only); "" is nil: all nodes.
func ParseNodes(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	seen := map[int]bool{}
	var out []int
	for _, f := range strings.Split(s, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || i < 0 {
			return nil, fmt.Errorf("%q is not a node index (0, 1, ...)", f)
		}
		if seen[i] {
			return nil, fmt.Errorf("node %d is listed twice", i)
		}
		seen[i] = true
		out = append(out, i)
	}
	return out, nil
}
