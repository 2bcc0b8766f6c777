package main

import (
	"context"
	"io"

	"github.com/lsnode/lsnode/internal/cli"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newClientFlags("status", stderr)
	if err := fs.Parse(args); err != nil || *fs.config == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "status: want --config FILE")
	}
	ctx, c, done, err := fs.connect(ctx, false)
	if err != nil {
		return err
	}
	defer done()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	return cli.PrintJSON(stdout, st)
}
