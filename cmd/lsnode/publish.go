package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/lsp"
)

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newClientFlags("publish", stderr)
	aor := fs.String("aor", "", "address of record")
	contact := fs.String("contact", "", "contact URI")
	expires := fs.Int("expires", 3600, "lifetime in seconds")
	q := fs.Float64("q", 0, "q value 0..1 (0: unspecified)")
	instance := fs.String("instance", "", "RFC 5626 +sip.instance")
	regID := fs.Uint("reg-id", 0, "RFC 5626 reg-id")
	if err := fs.Parse(args); err != nil || *fs.config == "" || *aor == "" || *contact == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "publish: want --config FILE --aor AOR --contact URI [--expires S]")
	}
	if *expires <= 0 {
		return cli.Fail(2, "publish: --expires must be positive (use 'lsnode remove' to remove)")
	}
	if *regID > 1<<31 {
		return cli.Fail(2, "publish: --reg-id out of range")
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
	b := lsp.Binding{Contact: *contact, Expires: time.Now().Add(time.Duration(*expires) * time.Second),
		Q: *q, Instance: *instance, RegID: uint32(*regID)}
	if err := c.Publish(ctx, canon, b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s -> %s (expires in %ds)\n", canon, *contact, *expires)
	return nil
}
