// Command lsnode runs a node of the lsnode P2P location service, a local
// testnet, and location-service client commands. See README.md. Each
// command is a file of its own that parses flags, calls one library
// function and prints; internal/cli holds the plumbing (flags, exit
// codes, JSON output).
package main

import (
	"context"
	_ "embed"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lsnode/lsnode/internal/cli"
)

// version and commit are set at link time by 'make build' (git describe,
// git rev-parse); empty in a plain 'go build', where the module's build
// information is used.
var version, commit string

// usage is 'lsnode help'.
//
//go:embed usage.txt
var usage string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command of args and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, commands, usage, args, stdout, stderr)
}

var commands = cli.Commands{
	"run": cmdRun, "testnet": cmdTestnet, "testbed": cmdTestbed, "chaos": cmdChaos,
	"lookup": cmdLookup, "publish": cmdPublish, "remove": cmdRemove, "status": cmdStatus, "relays": cmdRelays,
	"ca": cmdCA, "domain": cmdDomain, "ua": cmdUA, "user": cmdUser, "id": cmdID, "config": cmdConfig, "version": cmdVersion, "--version": cmdVersion,
}
