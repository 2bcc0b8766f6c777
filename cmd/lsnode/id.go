package main

import (
	"context"
	"fmt"
	"io"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/node"
)

// cmdID prints a node's peer ID, creating its identity key if missing (what
// a federation CA needs to enrol it).
func cmdID(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("id", stderr)
	cfgPath := fs.String("config", "", "node config file")
	if err := fs.Parse(args); err != nil || *cfgPath == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "id: want --config FILE")
	}
	_, id, err := node.LoadPeerID(*cfgPath)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}
