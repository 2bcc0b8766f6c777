package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/node"
)

// clientFlags is the FlagSet of a client command: --config, --timeout and
// --strict.
type clientFlags struct {
	*cli.FlagSet
	config  *string
	timeout *time.Duration
	strict  *bool
	stderr  io.Writer
}

func newClientFlags(name string, stderr io.Writer) clientFlags {
	fs := cli.NewFlags(name, stderr)
	return clientFlags{fs, fs.String("config", "", "config file of the node to ask"), fs.Duration("timeout", 10*time.Second, "overall timeout"),
		fs.Bool("strict", false, "ask the node alone; fail if it does not answer (default: its bootstrap peers next, said on stderr)"), stderr}
}

// connect dials the node of --config (node.Connect), all within
// --timeout; when a bootstrap peer answers for it, stderr says so. Call
// the returned function when done.
func (f clientFlags) connect(ctx context.Context, withCred bool) (context.Context, *node.Client, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	c, err := node.Connect(ctx, *f.config, withCred, *f.strict)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	if c.Fallback {
		fmt.Fprintf(f.stderr, "lsnode: node %s did not answer; its bootstrap peer %s did (--strict: fail instead)\n", c.Config.Name, c.Server().ID)
	}
	return ctx, c, func() { c.Close(); cancel() }, nil
}
