package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/pki"
)

// cmdCA runs a federation CA: init, sign (enrol a node), revoke.
var cmdCA = cli.Group("ca", cli.Sub{Name: "init", Run: cmdCAInit}, cli.Sub{Name: "sign", Run: cmdCASign},
	cli.Sub{Name: "revoke", Run: cmdCARevoke})

func cmdCAInit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("ca init", stderr)
	dir := fs.String("dir", "", "directory to create the CA in")
	name := fs.String("name", "lsnode federation CA", "the CA's common name")
	days := fs.Int("days", 3650, "validity of the CA certificate in days")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 || *days <= 0 {
		return cli.UsageErr(err, "ca init: want --dir DIR (and --days > 0)")
	}
	if err := pki.InitCA(*dir, *name, time.Duration(*days)*24*time.Hour); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "federation CA created in %s: give members %s (overlay.member_ca), %s (overlay.psk_file) and %s (overlay.crl_file); keep %s secret\n",
		*dir, pki.CACertFile, pki.PSKFile, pki.CRLFile, pki.CAKeyFile)
	return nil
}

// cmdCASign enrols a node (node.Enrol): by peer ID (the node's operator
// sends it, from 'lsnode id'), or straight from a node config on this
// machine, whose member_cert path then receives the certificate.
func cmdCASign(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("ca sign", stderr)
	dir := fs.String("dir", "", "the CA's directory (lsnode ca init)")
	var e node.Enrolment
	fs.StringVar(&e.Peer, "peer", "", "peer ID of the node to enrol")
	fs.StringVar(&e.Config, "config", "", "or: config of the node to enrol (its identity is created if missing)")
	fs.StringVar(&e.Overlay, "overlay", "", "overlay name (default: the config's)")
	fs.StringVar(&e.Out, "out", "", "certificate file to write (default: the config's overlay.member_cert)")
	days := fs.Int("days", 365, "validity in days")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 || (e.Peer == "") == (e.Config == "") || *days <= 0 {
		return cli.UsageErr(err, "ca sign: want --dir DIR and one of --peer ID or --config FILE")
	}
	e.Validity = time.Duration(*days) * 24 * time.Hour
	signed, err := node.Enrol(*dir, e)
	if err != nil {
		return err
	}
	return cli.PrintJSON(stdout, signed)
}

func cmdCARevoke(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("ca revoke", stderr)
	dir := fs.String("dir", "", "the CA's directory")
	cert := fs.String("cert", "", "member certificate to revoke")
	if err := fs.Parse(args); err != nil || *dir == "" || *cert == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "ca revoke: want --dir DIR --cert FILE")
	}
	serial, err := pki.Revoke(*dir, *cert)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked serial %s; members refuse it once they load the new %s\n", serial, filepath.Join(*dir, pki.CRLFile))
	return nil
}
