package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/testnet"
)

// cmdTestbed runs testnet.StartTestbed, prints where everything is and
// runs until interrupted; then it removes every namespace and process it
// made.
func cmdTestbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("testbed", stderr)
	dir := fs.String("dir", "", "directory for the testnet's files (created)")
	var spec testnet.BedSpec
	fs.IntVar(&spec.Public, "public", 4, "public hosts (one member node each)")
	nats := fs.String("nats", "1,1", "hosts behind each NAT router, comma-separated (the first of each runs a node, private by AutoNAT)")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "testbed: want --dir DIR")
	}
	var err error
	if spec.NATs, err = cli.SplitInts(*nats, 0, 200); err != nil {
		return cli.Fail(2, "testbed: --nats %q: want counts 0-200", *nats)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	t0 := time.Now()
	bed, hosts, err := testnet.StartTestbed(ctx, *dir, exe, spec, stderr)
	if err != nil {
		return err
	}
	defer bed.Close()
	if err := cli.PrintJSON(stdout, map[string]any{"started_seconds": time.Since(t0).Seconds(), "hosts": hosts,
		"try": "ip netns exec <namespace> lsnode lookup --config <config> sip:alice@a.example"}); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "lsnode testbed: running; Ctrl-C removes every namespace and process")
	<-ctx.Done()
	return bed.Close()
}
