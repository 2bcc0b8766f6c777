package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/testnet"
)

const usage = `usage: lsnode <command> [flags]

commands:
  run --config FILE [--config FILE2 ...]
                                     run a node (several: one per overlay, e.g. a public
                                     and a federation overlay, each with its own store)
  testnet init --dir DIR [--nodes N] [--domains a.example,b.example] [--users K] [--federation]
                                     create a local testnet
  testnet run --dir DIR [--persist]  run every node of a testnet in this process
  lookup --config FILE AOR           print AOR's live bindings as JSON (exit 1: not found)
  publish --config FILE --aor AOR --contact URI --expires S
                                     publish a binding signed with the node's domain credential
  remove --config FILE --aor AOR [--contact URI]
                                     remove one binding (or all) of AOR
  status --config FILE               the answering node's peer ID, its overlay size estimate,
                                     reachability and relayed addresses
  relays --config FILE               relays the overlay announces, with their TURN URIs (JSON)
  testbed --dir DIR [--public 4] [--nats 1,1]
                                     a network-namespace testbed (root): nodes as processes on
                                     public hosts and behind NAT routers, until Ctrl-C
  id --config FILE                   the node's peer ID (creates its identity key if missing)
  version                            lsnode's version, commit and Go version
  config check FILE... [--set k=v]   check config files (YAML or JSON): every error with its line
  ca init --dir DIR                  create a federation CA: ca.pem, ca.key, swarm.key, crl.pem
  ca sign --dir DIR (--peer ID --overlay NAME --out FILE | --config FILE)
                                     enrol a node: sign its member certificate
  ca revoke --dir DIR --cert FILE    add a member certificate to the CA's revocation list
  chaos --dir DIR [--duration 30s] [--kill-every 2s] [--down 1s] [--kill-fraction 0.33]
                                     run a testnet as processes, kill -9 and restart nodes
                                     while publishing; report lost bindings (exit 1 if any)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "lsnode: "+ee.msg)
		}
		return ee.code
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	fmt.Fprintln(stderr, "lsnode: "+oneLine(err))
	return 2
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fail(2, "")
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "testnet":
		if len(args) < 2 {
			return fail(2, "testnet: want 'init' or 'run' (see 'lsnode help')")
		}
		switch args[1] {
		case "init":
			return cmdTestnetInit(args[2:], stdout, stderr)
		case "run":
			return cmdTestnetRun(ctx, args[2:], stdout, stderr)
		}
		return fail(2, "testnet: unknown subcommand %q (want init or run)", args[1])
	case "lookup":
		return cmdLookup(ctx, args[1:], stdout, stderr)
	case "publish":
		return cmdPublish(ctx, args[1:], stdout, stderr)
	case "remove":
		return cmdRemove(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdStatus(ctx, args[1:], stdout, stderr)
	case "relays":
		return cmdRelays(ctx, args[1:], stdout, stderr)
	case "chaos":
		return cmdChaos(ctx, args[1:], stdout, stderr)
	case "ca":
		return cmdCA(args[1:], stdout, stderr)
	case "testbed":
		return cmdTestbed(ctx, args[1:], stdout, stderr)
	case "id":
		return cmdID(args[1:], stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			return fail(2, "config: want 'config check FILE' (see 'lsnode help')")
		}
		return cmdConfigCheck(args[2:], stdout, stderr)
	case "version", "--version":
		return cmdVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fail(2, "unknown command %q (see 'lsnode help')", args[0])
}

// cmdConfigCheck loads config files as 'run' would (LSNODE_* variables and
// --set overrides applied) and reports every problem with its line.
func cmdConfigCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("config check", stderr)
	var sets stringList
	fs.Var(&sets, "set", "override a config key, key=value; repeatable")
	if err := parse(fs, reorder(args)); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fail(2, "config check: want one or more config files")
	}
	overrides := append(node.EnvOverrides(os.Environ()), sets...)
	bad := 0
	for _, p := range fs.Args() {
		cfg, err := node.LoadConfigWith(p, overrides)
		if err != nil {
			bad++
			fmt.Fprintln(stdout, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (node %q, overlay %q)\n", p, cfg.Name, cfg.Overlay.Name)
	}
	if bad > 0 {
		return fail(1, "config check: %d of %d files have errors", bad, fs.NArg())
	}
	return nil
}

// cmdVersion prints the build's module version, VCS revision and time
// (and whether the tree was modified), and the Go version.
func cmdVersion(stdout io.Writer) error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fail(1, "version: no build information in this binary")
	}
	v := map[string]string{"version": bi.Main.Version, "go": bi.GoVersion}
	if version != "" {
		v["version"] = version
	}
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			v["commit"] = st.Value
		case "vcs.time":
			v["commit_time"] = st.Value
		case "vcs.modified":
			v["modified"] = st.Value
		}
	}
	return printJSON(stdout, v)
}

// flagSet is a FlagSet that reports errors as one line and prints its
// defaults only when asked (-h).
type flagSet struct {
	*flag.FlagSet
	stderr io.Writer
}

func newFlags(name string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flagSet{FlagSet: fs, stderr: stderr}
}

func parse(fs *flagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(fs.stderr)
			fmt.Fprintf(fs.stderr, "usage of lsnode %s:\n", fs.Name())
			fs.PrintDefaults()
			return fail(2, "")
		}
		return fail(2, "%s: %v (see 'lsnode %s -h')", fs.Name(), err, fs.Name())
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	return newLoggerFormat(w, level, "text")
}

// newLoggerFormat is newLogger with format "text" or "json".
func newLoggerFormat(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fail(2, "bad --log-level %q (debug, info, warn, error)", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fail(2, "bad --log-format %q (text, json)", format)
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	var paths stringList
	fs.Var(&paths, "config", "node config file (YAML or JSON); repeat to run one node per overlay")
	var sets stringList
	fs.Var(&sets, "set", "override a config key, key=value (overlay.gossip_interval=1s); repeatable; after LSNODE_* variables")
	level := fs.String("log-level", "", "log level (default: the first config's, or info)")
	format := fs.String("log-format", "", "log format, text or json (default: the first config's, or text)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(paths) == 0 || fs.NArg() > 0 {
		return fail(2, "run: want --config FILE and no arguments")
	}
	overrides := append(node.EnvOverrides(os.Environ()), sets...)
	var cfgs []*node.Config
	dirs := map[string]string{}
	for _, p := range paths {
		cfg, err := node.LoadConfigWith(p, overrides)
		if err != nil {
			return err
		}
		// Each overlay keeps its own store: two nodes on one data dir
		// would mix them (and leveldb would refuse the second).
		if d := cfg.Path(cfg.Overlay.DataDir); d != "" {
			if other, ok := dirs[d]; ok {
				return fail(2, "run: %s and %s share data_dir %s; every overlay needs its own store", other, p, d)
			}
			dirs[d] = p
		}
		cfgs = append(cfgs, cfg)
	}
	lvl := *level
	if lvl == "" {
		lvl = cfgs[0].LogLevel
	}
	if lvl == "" {
		lvl = "info"
	}
	fmtName := *format
	if fmtName == "" {
		fmtName = cfgs[0].LogFormat
	}
	log, err := newLoggerFormat(stderr, lvl, fmtName)
	if err != nil {
		return err
	}
	var nodes []*node.Node
	closeAll := func() error {
		var errs []error
		for _, n := range nodes {
			errs = append(errs, n.Close())
		}
		return errors.Join(errs...)
	}
	for _, cfg := range cfgs {
		n, err := node.New(ctx, cfg, node.Options{Logger: log})
		if err != nil {
			_ = closeAll()
			return err
		}
		nodes = append(nodes, n)
	}
	<-ctx.Done()
	log.Info("shutting down")
	return closeAll()
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func cmdTestnetInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("testnet init", stderr)
	var spec testnet.Spec
	fs.StringVar(&spec.Dir, "dir", "", "directory to create the testnet in")
	fs.IntVar(&spec.Nodes, "nodes", 5, "number of nodes")
	domains := fs.String("domains", "a.example,b.example", "comma-separated SIP domains")
	fs.IntVar(&spec.PerDomain, "per-domain", 1, "nodes authoritative for each domain")
	fs.IntVar(&spec.Users, "users", 3, "demo users per domain")
	fs.StringVar(&spec.Overlay, "overlay", "testnet", "overlay name")
	fs.IntVar(&spec.BasePort, "base-port", 0, "node i listens on 127.0.0.1:base-port+i (0: free ports)")
	fs.IntVar(&spec.Replicas, "replicas", 3, "replicas per AOR")
	fs.BoolVar(&spec.Federation, "federation", false, "a federation overlay: CA, private-network key and member certificates")
	if err := parse(fs, args); err != nil {
		return err
	}
	if spec.Dir == "" || fs.NArg() > 0 {
		return fail(2, "testnet init: want --dir DIR and no arguments")
	}
	for _, d := range strings.Split(*domains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			spec.Domains = append(spec.Domains, d)
		}
	}
	if len(spec.Domains) == 0 {
		return fail(2, "testnet init: --domains is empty")
	}
	m, err := testnet.Init(spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "testnet created in %s: %d nodes, %d domains (%s)\n", spec.Dir, len(m.Nodes), len(m.Domains), filepath.Join(spec.Dir, testnet.ManifestFile))
	return nil
}

func cmdTestnetRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("testnet run", stderr)
	dir := fs.String("dir", "", "testnet directory (from 'lsnode testnet init')")
	persist := fs.Bool("persist", false, "keep node stores on disk instead of in memory")
	level := fs.String("log-level", "warn", "log level")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return fail(2, "testnet run: want --dir DIR and no arguments")
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	start := time.Now()
	nw, err := testnet.Start(ctx, *dir, testnet.RunOptions{Persist: *persist, Logger: log,
		DisableDHTRefresh: true})
	if err != nil {
		return err
	}
	m := nw.Manifest
	fmt.Fprintf(stdout, "testnet ready: %d nodes, %d domains, overlay %q, started in %v\n",
		len(m.Nodes), len(m.Domains), m.Overlay, time.Since(start).Round(time.Millisecond))
	var example *testnet.NodeInfo
	for i := range m.Nodes {
		if m.Nodes[i].Domain != "" {
			example = &m.Nodes[i]
			break
		}
	}
	if example != nil {
		cfg := filepath.Join(*dir, example.Config)
		other := filepath.Join(*dir, m.Nodes[len(m.Nodes)-1].Config)
		aor := "sip:alice@" + example.Domain
		self := os.Args[0]
		if example.Admin != "" {
			fmt.Fprintf(stdout, "dashboard of %s: http://%s/dashboard/\n", example.Name, example.Admin)
		}
		fmt.Fprintf(stdout, "try, in another shell:\n  %s publish --config %s --aor %s --contact sip:alice@127.0.0.1:5070 --expires 3600\n  %s lookup --config %s %s\npress Ctrl-C to stop\n", self, cfg, aor, self, other, aor)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping testnet")
	return nw.Close()
}

// client connects a light host to the node of cfg (or, failing that, to its
// bootstrap peers) over the LSP client protocol.
type client struct {
	host   host.Host
	lsp    *lsp.Client
	server peer.ID
}

func dialNode(ctx context.Context, cfg *node.Config, withCred bool) (*client, error) {
	key, err := overlay.LoadIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return nil, err
	}
	id, err := overlay.PeerIDOf(key)
	if err != nil {
		return nil, err
	}
	self := peer.AddrInfo{ID: id}
	for _, s := range cfg.Overlay.Listen {
		a, err := ma.NewMultiaddr(strings.Replace(s, "/ip4/0.0.0.0/", "/ip4/127.0.0.1/", 1))
		if err == nil {
			self.Addrs = append(self.Addrs, a)
		}
	}
	candidates := []peer.AddrInfo{self}
	boots, err := overlay.ParseAddrInfos(cfg.Overlay.Bootstrap)
	if err != nil {
		return nil, err
	}
	candidates = append(candidates, boots...)
	pool, err := cfg.LoadTrustAnchors()
	if err != nil {
		return nil, err
	}
	var cred *lsp.Credential
	if withCred {
		if cfg.Domain == "" {
			return nil, fail(2, "node %q has no domain credential: publish needs the config of a domain's node", cfg.Name)
		}
		if cred, err = cfg.LoadCredential(); err != nil {
			return nil, err
		}
	}
	fed, err := cfg.LoadFederation()
	if err != nil {
		return nil, err
	}
	var psk pnet.PSK
	if fed != nil {
		psk = fed.PSK
	}
	h, err := overlay.NewLightHost(psk)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ai := range candidates {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := h.Connect(cctx, ai)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ai.ID.ShortString(), err))
			continue
		}
		c, err := lsp.NewClient(lsp.ClientConfig{Host: h, Overlay: cfg.Overlay.Name, Server: ai,
			Credential: cred, TrustAnchors: pool})
		if err != nil {
			h.Close()
			return nil, err
		}
		return &client{host: h, lsp: c, server: ai.ID}, nil
	}
	h.Close()
	return nil, fmt.Errorf("cannot reach node %s or its bootstrap peers (is it running?): %w", cfg.Name, errors.Join(errs...))
}

func (c *client) Close() {
	c.lsp.Close()
	c.host.Close()
}

// connect loads the config at cfgPath and dials its node; call the returned
// function when done.
func connect(ctx context.Context, cfgPath string, timeout time.Duration, withCred bool) (context.Context, *node.Config, *client, func(), error) {
	cfg, err := node.LoadConfig(cfgPath)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	c, err := dialNode(ctx, cfg, withCred)
	if err != nil {
		cancel()
		return nil, nil, nil, nil, err
	}
	return ctx, cfg, c, func() { c.Close(); cancel() }, nil
}

func clientFlags(name string, stderr io.Writer) (*flagSet, *string, *time.Duration) {
	fs := newFlags(name, stderr)
	cfg := fs.String("config", "", "config file of the node to ask")
	timeout := fs.Duration("timeout", 10*time.Second, "overall timeout")
	return fs, cfg, timeout
}

func cmdLookup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath, timeout := clientFlags("lookup", stderr)
	if err := parse(fs, reorder(args)); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		return fail(2, "lookup: want --config FILE and one AOR")
	}
	aor, err := lsp.Canonical(fs.Arg(0))
	if err != nil {
		return err
	}
	ctx, _, c, done, err := connect(ctx, *cfgPath, *timeout, false)
	if err != nil {
		return err
	}
	defer done()
	bs, err := c.lsp.Lookup(ctx, aor)
	if err != nil {
		return err
	}
	if len(bs) == 0 {
		return fail(1, "%s: not found", aor)
	}
	return printJSON(stdout, map[string]any{"aor": aor, "bindings": bs})
}

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath, timeout := clientFlags("publish", stderr)
	aor := fs.String("aor", "", "address of record")
	contact := fs.String("contact", "", "contact URI")
	expires := fs.Int("expires", 3600, "lifetime in seconds")
	q := fs.Float64("q", 0, "q value 0..1 (0: unspecified)")
	instance := fs.String("instance", "", "RFC 5626 +sip.instance")
	regID := fs.Uint("reg-id", 0, "RFC 5626 reg-id")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *aor == "" || *contact == "" || fs.NArg() > 0 {
		return fail(2, "publish: want --config FILE --aor AOR --contact URI [--expires S]")
	}
	if *expires <= 0 {
		return fail(2, "publish: --expires must be positive (use 'lsnode remove' to remove)")
	}
	if *regID > 1<<31 {
		return fail(2, "publish: --reg-id out of range")
	}
	canon, err := lsp.Canonical(*aor)
	if err != nil {
		return err
	}
	ctx, _, c, done, err := connect(ctx, *cfgPath, *timeout, true)
	if err != nil {
		return err
	}
	defer done()
	b := lsp.Binding{Contact: *contact, Expires: time.Now().Add(time.Duration(*expires) * time.Second),
		Q: *q, Instance: *instance, RegID: uint32(*regID)}
	if err := c.lsp.Publish(ctx, canon, b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s -> %s (expires in %ds)\n", canon, *contact, *expires)
	return nil
}

func cmdRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath, timeout := clientFlags("remove", stderr)
	aor := fs.String("aor", "", "address of record")
	contact := fs.String("contact", "", "contact URI or instance to remove (default: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *aor == "" || fs.NArg() > 0 {
		return fail(2, "remove: want --config FILE --aor AOR [--contact URI]")
	}
	canon, err := lsp.Canonical(*aor)
	if err != nil {
		return err
	}
	ctx, _, c, done, err := connect(ctx, *cfgPath, *timeout, true)
	if err != nil {
		return err
	}
	defer done()
	var ids []string
	if *contact != "" {
		ids = []string{*contact}
	}
	if err := c.lsp.Remove(ctx, canon, ids...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s\n", canon)
	return nil
}

// reorder moves flags before positional arguments, so "lookup AOR --config F"
// works as well as "lookup --config F AOR".
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath, timeout := clientFlags("status", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return fail(2, "status: want --config FILE")
	}
	ctx, cfg, c, done, err := connect(ctx, *cfgPath, *timeout, false)
	if err != nil {
		return err
	}
	defer done()
	info, err := c.lsp.Info(ctx)
	if err != nil {
		return err
	}
	out := map[string]any{"node": cfg.Name, "overlay": cfg.Overlay.Name,
		"answered_by": c.server.String(), "size_estimate": info.Size, "reachability": info.Reachability}
	if len(info.Relayed) > 0 {
		out["relayed_addrs"] = info.Relayed
	}
	return printJSON(stdout, out)
}

func cmdRelays(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath, timeout := clientFlags("relays", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return fail(2, "relays: want --config FILE")
	}
	ctx, _, c, done, err := connect(ctx, *cfgPath, *timeout, false)
	if err != nil {
		return err
	}
	defer done()
	relays, err := c.lsp.Relays(ctx)
	if err != nil {
		return err
	}
	type entry struct {
		Peer string   `json:"peer"`
		URIs []string `json:"uris"`
	}
	out := []entry{}
	for id, uris := range relays {
		out = append(out, entry{id, uris})
	}
	slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.Peer, b.Peer) })
	return printJSON(stdout, out)
}
