package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/pki"
)

// cmdDomain makes a domain's credential: with a CA of our own (ca, issue)
// or a request for someone else's (csr).
var cmdDomain = cli.Group("domain", cli.Sub{Name: "ca", Run: cmdDomainCA}, cli.Sub{Name: "issue", Run: cmdDomainIssue},
	cli.Sub{Name: "csr", Run: cmdDomainCSR}, cli.Sub{Name: "aor", Run: cmdDomainAOR})

func cmdDomainCA(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("domain ca", stderr)
	dir := fs.String("dir", "", "directory to create the CA in")
	name := fs.String("name", "lsnode domain CA", "the CA's common name")
	days := fs.Int("days", 3650, "validity in days")
	if err := fs.Parse(args); err != nil || *dir == "" || fs.NArg() > 0 || *days <= 0 {
		return cli.UsageErr(err, "domain ca: want --dir DIR (and --days > 0)")
	}
	if err := pki.InitDomainCA(*dir, *name, time.Duration(*days)*24*time.Hour); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "domain CA created in %s: every node of the overlay lists %s in trust_anchors; keep %s secret\n", *dir, pki.CACertFile, pki.CAKeyFile)
	return nil
}

func cmdDomainIssue(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("domain issue", stderr)
	ca := fs.String("ca", "", "the CA's directory (lsnode domain ca)")
	domain := fs.String("domain", "", "the domain the certificate is for")
	out := fs.String("out", ".", "directory to write DOMAIN.pem and DOMAIN.key to")
	days := fs.Int("days", 365, "validity in days")
	if err := fs.Parse(args); err != nil || *ca == "" || *domain == "" || fs.NArg() > 0 || *days <= 0 {
		return cli.UsageErr(err, "domain issue: want --ca DIR --domain D [--out DIR]")
	}
	cert, key, err := pki.IssueDomainFiles(*ca, *domain, *out, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cert_file: %s\nkey_file: %s\n", cert, key)
	return nil
}

func cmdDomainCSR(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("domain csr", stderr)
	domain := fs.String("domain", "", "the domain the certificate is for")
	key := fs.String("key", "", "the key (ECDSA P-256; created if missing): key_file")
	out := fs.String("out", "", "the request to write (PEM)")
	if err := fs.Parse(args); err != nil || *domain == "" || *key == "" || *out == "" || fs.NArg() > 0 {
		return cli.UsageErr(err, "domain csr: want --domain D --key FILE --out FILE")
	}
	created, err := pki.DomainCSR(*domain, *key, *out)
	if err != nil {
		return err
	}
	verb := "kept"
	if created {
		verb = "created"
	}
	fmt.Fprintf(stdout, "request for %s written to %s (key %s %s); have a CA sign it, e.g. certbot certonly --csr %s\n", *domain, *out, *key, verb, *out)
	return nil
}

// cmdDomainAOR issues an AOR certificate with the domain's credential: a
// UA holding it publishes its own binding (lsnode ua publish).
func cmdDomainAOR(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlags("domain aor", stderr)
	cert := fs.String("cert", "", "the domain's certificate (a node's cert_file)")
	key := fs.String("key", "", "its key (key_file)")
	aor := fs.String("aor", "", "the AOR, sip:USER@DOMAIN")
	out := fs.String("out", ".", "directory to write USER@DOMAIN.pem and USER@DOMAIN.key to")
	days := fs.Int("days", 30, "validity in days (at most 90: nothing revokes it before it expires)")
	if err := fs.Parse(args); err != nil || *cert == "" || *key == "" || *aor == "" || fs.NArg() > 0 || *days <= 0 {
		return cli.UsageErr(err, "domain aor: want --cert FILE --key FILE --aor AOR [--out DIR] [--days N]")
	}
	canon, err := lsp.Canonical(*aor)
	if err != nil {
		return err
	}
	c, k, err := pki.IssueAORFiles(*cert, *key, canon, *out, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "AOR certificate of %s: %s (key %s); publish with: lsnode ua publish --cert %s --key %s --aor %s --contact URI --config NODE.yaml\n",
		canon, c, k, c, k, canon)
	return nil
}
