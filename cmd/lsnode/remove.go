package main

import (
	"context"
	"fmt"
	"io"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/lsp"
)

func cmdRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newClientFlags("remove", stderr)
	aor := fs.String("aor", "", "address of record")
	contact := fs.String("contact", "", "contact URI or instance to remove (default: all)")
	if err := fs.Parse(args); err != nil || *fs.config == "" || *aor == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "remove: want --config FILE --aor AOR [--contact URI]")
	}
	canon, err := lsp.Canonical(*aor)
	if err != nil {
		return err
	}
	ctx, c, done, err := fs.connect(ctx, true)
	if err != nil {
		return err
	}
	defer done()
	var ids []string
	if *contact != "" {
		ids = []string{*contact}
	}
	if err := c.Remove(ctx, canon, ids...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s\n", canon)
	return nil
}
