package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/ua"
)

// cmdUA is a UA as its own registrar: it publishes its binding with an
// AOR certificate ('lsnode domain aor'), through any overlay member.
var cmdUA = cli.Group("ua", cli.Sub{Name: "publish", Run: cmdUAPublish})

func cmdUAPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("ua publish", stderr)
	cert := fs.String("cert", "", "the AOR certificate, followed by its domain's (lsnode domain aor)")
	key := fs.String("key", "", "its private key")
	aor := fs.String("aor", "", "the AOR (the certificate's)")
	contact := fs.String("contact", "", "the UA's contact URI")
	expires := fs.Int("expires", 3600, "lifetime in seconds")
	refresh := fs.Bool("refresh", false, "keep the binding fresh until interrupted, then remove it")
	cfgPath := fs.String("config", "", "a node config: publish through that node (then its bootstrap peers) of its overlay")
	overlayName := fs.String("overlay", "", "the overlay's name (without --config)")
	var nodes, anchors cli.StringList
	fs.Var(&nodes, "node", "an overlay member, /ip4/HOST/tcp/PORT/p2p/PEER-ID (repeatable; without --config)")
	fs.Var(&anchors, "trust-anchors", "the overlay's trust anchors, PEM (repeatable; without --config)")
	psk := fs.String("psk", "", "the overlay's private-network key file, if it has one (without --config)")
	records := fs.String("records", "", "how the overlay keeps records, private or clear (without --config; default: as the node says)")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of each publication")
	if err := fs.Parse(args); err != nil || *cert == "" || *key == "" || *aor == "" || *contact == "" || fs.NArg() > 0 ||
		(*cfgPath == "") == (*overlayName == "" && len(nodes) == 0) {
		return cli.UsageErr(err, "ua publish: want --cert FILE --key FILE --aor AOR --contact URI and --config FILE or --overlay NAME --node ADDR --trust-anchors FILE")
	}
	if *expires < 60 {
		return cli.Fail(2, "ua publish: --expires must be at least 60 (seconds)")
	}
	cfg, err := uaConfig(*cfgPath, *overlayName, nodes, anchors, *psk)
	if err != nil {
		return err
	}
	if cfg.Credential, err = lsp.LoadCredential(*cert, *key); err != nil {
		return err
	}
	if *records != "" {
		cfg.Records = *records
	}
	cfg.AOR, cfg.Contact, cfg.Expires = *aor, *contact, time.Duration(*expires)*time.Second
	pctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if !*refresh {
		b, err := ua.Publish(pctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s -> %s (expires in %ds)\n", *aor, b.Contact, *expires)
		return nil
	}
	p, err := ua.Start(pctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %s -> %s, refreshed every %ds until interrupted\n", *aor, *contact, *expires/2)
	select {
	case <-ctx.Done():
	case <-p.Stopped(): // the credential expired
		_, err := p.Refreshes()
		return err
	}
	cctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s -> %s\n", *aor, *contact)
	return nil
}

// uaConfig is where the UA publishes: the overlay of a node's config, or
// one given by name, members and trust anchors.
func uaConfig(cfgPath, name string, nodes, anchors []string, pskFile string) (ua.Config, error) {
	if cfgPath == "" {
		return ua.Target(name, nodes, anchors, pskFile)
	}
	dc, err := node.DialConfigOf(cfgPath)
	if err != nil {
		return ua.Config{}, err
	}
	return ua.Config{TrustAnchors: dc.TrustAnchors, Overlay: dc.Overlay, Nodes: dc.Candidates, PSK: dc.PSK, Records: dc.Records}, nil
}
