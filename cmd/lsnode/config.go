package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/node"
)

// cmdConfig, 'config check', loads config files as 'run' does
// (node.CheckConfig, LSNODE_* variables and --set overrides applied, the
// files they name read) and reports every problem with its line.
func cmdConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return cli.Fail(2, "config: want 'config check FILE' (see 'lsnode help config')")
	}
	fs := cli.NewFlags("config check", stderr)
	var sets cli.StringList
	fs.Var(&sets, "set", "override a config key, key=value; repeatable")
	if err := fs.ParseAnywhere(args[1:]); err != nil || fs.NArg() == 0 {
		return cli.UsageErr(err, "config check: want one or more config files")
	}
	overrides := append(node.EnvOverrides(os.Environ()), sets...)
	bad := 0
	var cfgs []*node.Config
	for _, p := range fs.Args() {
		cfg, err := node.CheckConfig(p, overrides)
		if err != nil {
			bad++
			fmt.Fprintln(stdout, err)
			continue
		}
		cfgs = append(cfgs, cfg)
		fmt.Fprintf(stdout, "%s: ok (node %q, overlay %q)\n", p, cfg.Name, cfg.Overlay.Name)
	}
	// As 'run --config A --config B' would: one process, one store each.
	if err := node.CheckStores(fs.Args(), cfgs); bad == 0 && err != nil {
		fmt.Fprintln(stdout, err)
		return cli.Fail(1, "config check: these files cannot run in one process")
	}
	if bad > 0 {
		return cli.Fail(1, "config check: %d of %d files have errors", bad, fs.NArg())
	}
	return nil
}
