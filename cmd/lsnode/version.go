package main

import (
	"context"
	"io"

	"github.com/lsnode/lsnode/internal/cli"
)

// cmdVersion prints the build's module version (or the one 'make build'
// linked in), VCS revision and time (and whether the tree was modified),
// and the Go version.
func cmdVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	v, err := cli.BuildInfo(version, commit)
	if err != nil {
		return err
	}
	return cli.PrintJSON(stdout, v)
}
