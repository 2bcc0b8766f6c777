package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/testnet"
)

// cmdChaos runs testnet.Chaos on a testnet and prints its report (exit 1
// if anything was lost).
func cmdChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("chaos", stderr)
	dir := fs.String("dir", "", "testnet directory (lsnode testnet init)")
	spec := testnet.ChaosSpec{Log: stderr}
	fs.DurationVar(&spec.Duration, "duration", 30*time.Second, "how long to kill and publish")
	fs.DurationVar(&spec.KillEvery, "kill-every", 2*time.Second, "one kill -9 per interval")
	fs.DurationVar(&spec.Down, "down", time.Second, "how long a killed node stays down")
	fs.DurationVar(&spec.Settle, "settle", 5*time.Second, "after the last restart, time for re-replication before reading")
	fs.DurationVar(&spec.Grace, "grace", 15*time.Second, "how long a binding missing at first is looked for again before it counts as lost")
	fs.Float64Var(&spec.KillFraction, "kill-fraction", 1.0/3, "share of the nodes that are killed (each in turn, again and again)")
	fs.IntVar(&spec.PerProcess, "per-process", 1, "run the nodes that are never killed this many to a process")
	fs.DurationVar(&spec.Idle, "idle", 0, "before the kills, measure the idle cost for this long (0: not measured)")
	fs.DurationVar(&spec.Warmup, "warmup", 0, "with --idle: wait this long after every node sees every other before measuring")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 || spec.Duration <= 0 || spec.KillEvery <= 0 ||
		spec.KillFraction <= 0 || spec.KillFraction > 1 || spec.PerProcess < 1 || spec.Idle < 0 || spec.Warmup < 0 {
		return cli.UsageErr(err, "chaos: want --dir DIR, positive --duration and --kill-every, --kill-fraction in (0,1], --per-process ≥ 1, --idle and --warmup ≥ 0")
	}
	var err error
	if spec.Exe, err = os.Executable(); err != nil {
		return err
	}
	rep, err := testnet.Chaos(ctx, *dir, spec)
	if err != nil {
		return err
	}
	if err := cli.PrintJSON(stdout, rep); err != nil {
		return err
	}
	if err := rep.Err(); err != nil {
		return cli.Fail(1, "%v", err)
	}
	return nil
}
