package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// cmdTestbed builds a network-namespace testbed, runs a testnet's nodes on
// it as processes (public hosts as members and relays, one node behind each
// NAT), prints where everything is and runs until interrupted; then it
// removes every namespace and process it made.
func cmdTestbed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("testbed", stderr)
	dir := fs.String("dir", "", "directory for the testnet's files (created)")
	public := fs.Int("public", 4, "public hosts (one member node each)")
	nats := fs.String("nats", "1,1", "hosts behind each NAT router, comma-separated (the first of each runs a node, private by AutoNAT)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return fail(2, "testbed: want --dir DIR")
	}
	var spec testnet.BedSpec
	spec.Public = *public
	for _, f := range strings.Split(*nats, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 200 {
			return fail(2, "testbed: --nats %q: want counts 0-200", *nats)
		}
		spec.NATs = append(spec.NATs, n)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	t0 := time.Now()
	bed, err := testnet.NewBed(ctx, spec)
	if err != nil {
		return err
	}
	defer bed.Close()
	nw, err := testnet.StartBedNet(ctx, bed, *dir, exe, testnet.Spec{Overlay: "testbed"}, stderr, nil)
	if err != nil {
		return err
	}
	if err := nw.WaitSize(ctx, 0, len(bed.Public()), time.Minute); err != nil {
		return err
	}
	type hostOut struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		IP        string `json:"ip"`
		NAT       int    `json:"nat"` // -1: public
		Node      string `json:"node,omitempty"`
		Config    string `json:"config,omitempty"`
	}
	var hosts []hostOut
	nodeOf := map[string]int{}
	for i, h := range nw.Hosts {
		nodeOf[h.NS] = i
	}
	for _, h := range append(append([]testnet.Host{}, bed.Hosts...), bed.Routers...) {
		o := hostOut{Name: h.Name, Namespace: h.NS, IP: h.IP, NAT: h.NAT}
		if i, ok := nodeOf[h.NS]; ok {
			o.Node, o.Config = nw.Manifest.Nodes[i].Name, nw.Configs[i]
		}
		hosts = append(hosts, o)
	}
	if err := printJSON(stdout, map[string]any{"started_seconds": time.Since(t0).Seconds(), "hosts": hosts,
		"try": "ip netns exec <namespace> lsnode lookup --config <config> sip:alice@a.example"}); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "lsnode testbed: running; Ctrl-C removes every namespace and process")
	<-ctx.Done()
	return bed.Close()
}
