package main

import (
	"context"
	"io"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/lsp"
)

func cmdLookup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newClientFlags("lookup", stderr)
	if err := fs.ParseAnywhere(args); err != nil || *fs.config == "" || fs.NArg() != 1 {
		return cli.UsageErr(err, "lookup: want --config FILE and one AOR")
	}
	aor, err := lsp.Canonical(fs.Arg(0))
	if err != nil {
		return err
	}
	ctx, c, done, err := fs.connect(ctx, false)
	if err != nil {
		return err
	}
	defer done()
	bs, err := c.Lookup(ctx, aor)
	if err != nil {
		return err
	}
	if len(bs) == 0 {
		return cli.Fail(1, "%s: not found", aor)
	}
	return cli.PrintJSON(stdout, map[string]any{"aor": aor, "bindings": bs})
}
