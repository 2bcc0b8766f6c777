package testnet

import (
	"context"
	"io"
	"time"
)

// BedHost is where one host of a running testbed is, and the node it runs.
type BedHost struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	NAT       int    `json:"nat"` // -1: public
	Node      string `json:"node,omitempty"`
	Config    string `json:"config,omitempty"`
}

// StartTestbed builds a network-namespace testbed of spec (root only),
// creates a testnet for it in dir and runs its nodes there as processes of
// exe (an lsnode binary): public hosts as members and relays, one node
// behind each NAT (see StartBedNet); their logs go to logs. It returns once
// the first node counts every public member, with every host and router
// and the node each runs. Close the bed to remove every namespace and
// process it made (StartTestbed does so itself when it fails).
func StartTestbed(ctx context.Context, dir, exe string, spec BedSpec, logs io.Writer) (*Bed, []BedHost, error) {
	bed, err := NewBed(ctx, spec)
	if err != nil {
		return nil, nil, err
	}
	nw, err := StartBedNet(ctx, bed, dir, exe, Spec{Overlay: "testbed"}, logs, nil)
	if err == nil {
		err = nw.WaitSize(ctx, 0, len(bed.Public()), time.Minute)
	}
	if err != nil {
		bed.Close()
		return nil, nil, err
	}
	nodeOf := map[string]int{}
	for i, h := range nw.Hosts {
		nodeOf[h.NS] = i
	}
	var hosts []BedHost
	for _, h := range append(append([]Host{}, bed.Hosts...), bed.Routers...) {
		o := BedHost{Name: h.Name, Namespace: h.NS, IP: h.IP, NAT: h.NAT}
		if i, ok := nodeOf[h.NS]; ok {
			o.Node, o.Config = nw.Manifest.Nodes[i].Name, nw.Configs[i]
		}
		hosts = append(hosts, o)
	}
	return bed, hosts, nil
}
