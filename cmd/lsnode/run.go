package main

import (
	"cmp"
	"context"
	"io"
	"os"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/node"
)

func cmdRun(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := cli.NewFlags("run", stderr)
	var paths, sets cli.StringList
	fs.Var(&paths, "config", "node config file (YAML or JSON); repeat to run one node per overlay")
	fs.Var(&sets, "set", "override a config key, key=value (overlay.gossip_interval=1s); repeatable; after LSNODE_* variables")
	level := fs.String("log-level", "", "log level (default: the first config's, or info)")
	format := fs.String("log-format", "", "log format, text or json (default: the first config's, or text)")
	if err := fs.Parse(args); err != nil || len(paths) == 0 || fs.NArg() > 0 {
		return cli.UsageErr(err, "run: want --config FILE and no arguments")
	}
	cfgs, err := node.LoadConfigs(paths, append(node.EnvOverrides(os.Environ()), sets...))
	if err != nil {
		return cli.WithCode(3, err) // refused: a restart would be too (the unit's RestartPreventExitStatus=3)
	}
	log, err := cli.NewLogger(stderr, cmp.Or(*level, cfgs[0].LogLevel, "info"), cmp.Or(*format, cfgs[0].LogFormat))
	if err == nil {
		if err = node.RunAll(ctx, cfgs, node.Options{Logger: log}); node.Refused(err) {
			return cli.WithCode(3, err) // by the federation, or a config it refuses
		}
	}
	return err
}
