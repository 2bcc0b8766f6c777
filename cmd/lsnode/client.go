package main

import (
	"context"
	"io"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/node"
)

// clientFlags is the FlagSet of a client command, with its --config and
// --timeout.
func clientFlags(name string, stderr io.Writer) (*cli.FlagSet, *string, *time.Duration) {
	fs := cli.NewFlags(name, stderr)
	return fs, fs.String("config", "", "config file of the node to ask"), fs.Duration("timeout", 10*time.Second, "overall timeout")
}

// connect dials the node of the config at cfgPath (node.Connect), all
// within timeout; call the returned function when done.
func connect(ctx context.Context, cfgPath string, timeout time.Duration, withCred bool) (context.Context, *node.Client, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	c, err := node.Connect(ctx, cfgPath, withCred)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, c, func() { c.Close(); cancel() }, nil
}
