package main

import (
	"context"
	"io"

	"github.com/lsnode/lsnode/internal/cli"
)

func cmdRelays(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newClientFlags("relays", stderr)
	if err := fs.Parse(args); err != nil || *fs.config == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "relays: want --config FILE")
	}
	ctx, c, done, err := fs.connect(ctx, false)
	if err != nil {
		return err
	}
	defer done()
	relays, err := c.RelayList(ctx)
	if err != nil {
		return err
	}
	return cli.PrintJSON(stdout, relays)
}
