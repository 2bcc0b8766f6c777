package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/testnet"
)

// cmdTestnet creates a local testnet (testnet.Init) or runs one
// (testnet.Start).
var cmdTestnet = cli.Group("testnet", cli.Sub{Name: "init", Run: cmdTestnetInit}, cli.Sub{Name: "run", Run: cmdTestnetRun},
	cli.Sub{Name: "env", Run: cmdTestnetEnv})

// cmdTestnetEnv prints the testnet's addresses and passwords as shell
// exports (eval "$(lsnode testnet env --dir DIR)").
func cmdTestnetEnv(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("testnet env", stderr)
	dir := fs.String("dir", "", "testnet directory")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "testnet env: want --dir DIR")
	}
	m, err := testnet.LoadManifest(*dir)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, m.Env(*dir))
	return nil
}

func cmdTestnetInit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("testnet init", stderr)
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
	if err := fs.Parse(args); err != nil || spec.Dir == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "testnet init: want --dir DIR and no arguments")
	}
	if spec.Domains = cli.SplitList(*domains); len(spec.Domains) == 0 {
		return cli.Fail(2, "testnet init: --domains is empty")
	}
	m, err := testnet.Init(spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "testnet created in %s: %d nodes, %d domains (%s)\n", spec.Dir, len(m.Nodes), len(m.Domains), filepath.Join(spec.Dir, testnet.ManifestFile))
	return nil
}

func cmdTestnetRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("testnet run", stderr)
	dir, persist := fs.String("dir", "", "testnet directory (from 'lsnode testnet init')"), fs.Bool("persist", false, "keep node stores on disk instead of in memory")
	level, heapprof := fs.String("log-level", "warn", "log level"), fs.String("heapprofile", "", "on each SIGUSR1, write this process's heap profile to this file (and its memory split to stderr)")
	only, stats := fs.String("only", "", "comma-separated node indexes to run here (the others run elsewhere); default all"), fs.Duration("stats", 0, "print the nodes' load (JSON) at this interval (0: never)")
	cpuprof, profFor := fs.String("cpuprofile", "", "write a CPU profile of this process's first --profile-for to this file (then every tenth node's connection use to stderr)"), fs.Duration("profile-for", 2*time.Minute, "how long --cpuprofile profiles, from the start")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 || *stats < 0 || *profFor <= 0 {
		return cli.UsageErr(err, "testnet run: want --dir DIR, a --stats interval ≥ 0, a --profile-for > 0 and no arguments")
	}
	log, err := cli.NewLogger(stderr, *level, "text")
	if err != nil {
		return err
	}
	defer testnet.HeapOnSignal(ctx, *heapprof, stderr)()
	prof, err := testnet.ProfileCPU(*cpuprof, *profFor, stderr)
	if err != nil {
		return cli.Fail(1, "testnet run: --cpuprofile: %v", err)
	}
	defer prof.Stop()
	opts := testnet.RunOptions{Persist: *persist, Logger: log, DisableDHTRefresh: true}
	if opts.Only, err = testnet.ParseNodes(*only); err != nil {
		return cli.Fail(2, "testnet run: --only: %v", err)
	}
	start := time.Now()
	nw, err := testnet.Start(ctx, *dir, opts)
	if err != nil {
		return err
	}
	if m := nw.Manifest; opts.Only != nil {
		fmt.Fprintf(stdout, "testnet nodes started: %d of %d\n", len(opts.Only), len(m.Nodes))
	} else {
		fmt.Fprintf(stdout, "testnet ready: %d nodes, %d domains, overlay %q, started in %v\n%s",
			len(m.Nodes), len(m.Domains), m.Overlay, time.Since(start).Round(time.Millisecond), m.Try(*dir, os.Args[0]))
	}
	prof.Watch(nw)
	nw.PrintLoad(ctx, *stats, stdout)
	fmt.Fprintln(stdout, "stopping testnet")
	return nw.Close()
}
