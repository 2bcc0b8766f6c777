package main

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
)

// cmdCA runs a federation CA: init, sign (enrol a node), revoke.
func cmdCA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fail(2, "ca: want 'init', 'sign' or 'revoke' (see 'lsnode help')")
	}
	switch args[0] {
	case "init":
		return cmdCAInit(args[1:], stdout, stderr)
	case "sign":
		return cmdCASign(args[1:], stdout, stderr)
	case "revoke":
		return cmdCARevoke(args[1:], stdout, stderr)
	}
	return fail(2, "ca: unknown subcommand %q (want init, sign or revoke)", args[0])
}

func cmdCAInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca init", stderr)
	dir := fs.String("dir", "", "directory to create the CA in")
	name := fs.String("name", "lsnode federation CA", "the CA's common name")
	days := fs.Int("days", 3650, "validity of the CA certificate in days")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 || *days <= 0 {
		return fail(2, "ca init: want --dir DIR (and --days > 0)")
	}
	if err := overlay.InitCA(*dir, *name, time.Duration(*days)*24*time.Hour); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "federation CA created in %s: give members %s (overlay.member_ca), %s (overlay.psk_file) and %s (overlay.crl_file); keep %s secret\n",
		*dir, overlay.CACertFile, overlay.PSKFile, overlay.CRLFile, overlay.CAKeyFile)
	return nil
}

// cmdCASign enrols a node: by peer ID (the node's operator sends it, from
// 'lsnode id'), or straight from a node config on this machine, whose
// member_cert path then receives the certificate.
func cmdCASign(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca sign", stderr)
	dir := fs.String("dir", "", "the CA's directory (lsnode ca init)")
	pid := fs.String("peer", "", "peer ID of the node to enrol")
	cfgPath := fs.String("config", "", "or: config of the node to enrol (its identity is created if missing)")
	ov := fs.String("overlay", "", "overlay name (default: the config's)")
	out := fs.String("out", "", "certificate file to write (default: the config's overlay.member_cert)")
	days := fs.Int("days", 365, "validity in days")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 || (*pid == "") == (*cfgPath == "") || *days <= 0 {
		return fail(2, "ca sign: want --dir DIR and one of --peer ID or --config FILE")
	}
	var id peer.ID
	if *cfgPath != "" {
		cfg, pid, err := configPeerID(*cfgPath)
		if err != nil {
			return err
		}
		id = pid
		if *ov == "" {
			*ov = cfg.Overlay.Name
		}
		if *out == "" {
			*out = cfg.Path(cfg.Overlay.MemberCert)
		}
	} else {
		var err error
		if id, err = peer.Decode(*pid); err != nil {
			return fail(2, "ca sign: --peer %q: %v", *pid, err)
		}
	}
	if *ov == "" || *out == "" {
		return fail(2, "ca sign: want --overlay NAME and --out FILE (or a --config that names them)")
	}
	cert, err := overlay.SignMember(*dir, id, *ov, time.Duration(*days)*24*time.Hour, *out)
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{"peer": id.String(), "overlay": *ov, "serial": cert.SerialNumber.String(),
		"not_after": cert.NotAfter.UTC().Format(time.RFC3339), "file": *out})
}

func cmdCARevoke(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca revoke", stderr)
	dir := fs.String("dir", "", "the CA's directory")
	cert := fs.String("cert", "", "member certificate to revoke")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *cert == "" || fs.NArg() > 0 {
		return fail(2, "ca revoke: want --dir DIR --cert FILE")
	}
	serial, err := overlay.Revoke(*dir, *cert)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked serial %s; members refuse it once they load the new %s\n", serial, filepath.Join(*dir, overlay.CRLFile))
	return nil
}

// cmdID prints a node's peer ID, creating its identity key if missing (what
// a federation CA needs to enrol it).
func cmdID(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("id", stderr)
	cfgPath := fs.String("config", "", "node config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return fail(2, "id: want --config FILE")
	}
	_, id, err := configPeerID(*cfgPath)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

// configPeerID loads a node config and the peer ID of its identity key,
// creating the key if it does not exist yet.
func configPeerID(path string) (*node.Config, peer.ID, error) {
	cfg, err := node.LoadConfig(path)
	if err != nil {
		return nil, "", err
	}
	key, err := overlay.LoadOrCreateIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return nil, "", err
	}
	id, err := overlay.PeerIDOf(key)
	return cfg, id, err
}
