package testnet

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lsnode/lsnode/node"
)

// BedNet is a testnet whose nodes run as `lsnode run` processes on a
// namespace testbed: node i on public host i (a member and a relay), then
// one node behind each NAT (on the first host behind it), whose AutoNAT
// finds it private.
type BedNet struct {
	Bed      *Bed
	Dir      string
	Manifest *Manifest
	Hosts    []Host   // the host of each node
	Configs  []string // each node's config file
	// Addrs are each node's overlay multiaddrs on its host, with /p2p/ID.
	Addrs   [][]string
	cmds    []*exec.Cmd
	started []time.Time
	exe     string
}

// StartBedNet creates a testnet in dir for bed (spec's Dir and Nodes are
// set here) and starts its nodes with exe (an lsnode binary); their logs go
// to logs. edit, when set, may change node i's config before it starts.
// Close the bed to stop them.
func StartBedNet(ctx context.Context, bed *Bed, dir, exe string, spec Spec, logs io.Writer, edit func(i int, c *node.Config)) (*BedNet, error) {
	hosts := bed.Public()
	for j := range bed.Routers {
		if behind := bed.Behind(j); len(behind) > 0 {
			hosts = append(hosts, behind[0])
		}
	}
	spec.Dir, spec.Nodes = dir, len(hosts)
	m, err := Init(spec)
	if err != nil {
		return nil, err
	}
	n := &BedNet{Bed: bed, Dir: dir, Manifest: m, Hosts: hosts, exe: exe}
	rewrite := hostAddrs(m, hosts)
	for i, ni := range m.Nodes {
		path := filepath.Join(dir, ni.Config)
		if err := n.placeConfig(i, path, rewrite, edit); err != nil {
			return nil, err
		}
		n.Configs = append(n.Configs, path)
		var addrs []string
		for _, a := range ni.Multiaddrs {
			addrs = append(addrs, rewrite(a))
		}
		n.Addrs = append(n.Addrs, addrs)
		cmd := bed.Command(ctx, hosts[i], exe, "run", "--config", path, "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := bed.Start(cmd); err != nil {
			return nil, err
		}
		n.cmds, n.started = append(n.cmds, cmd), append(n.started, time.Now())
	}
	return n, nil
}

// hostAddrs returns a rewrite of multiaddrs in which every 127.0.0.1
// overlay address of m becomes its host's address.
func hostAddrs(m *Manifest, hosts []Host) func(string) string {
	addrOf := map[string]string{}
	for i, ni := range m.Nodes {
		for _, a := range ni.Multiaddrs {
			port := strings.Split(a, "/")[4]
			addrOf["/ip4/127.0.0.1/tcp/"+port] = "/ip4/" + hosts[i].IP + "/tcp/" + port
		}
	}
	return func(s string) string {
		for from, to := range addrOf {
			if strings.HasPrefix(s, from+"/") || s == from {
				return to + strings.TrimPrefix(s, from)
			}
		}
		return s
	}
}

// placeConfig rewrites node i's config at path for its host: overlay
// addresses through rewrite, SIP/TURN/HTTP on the host's address, media
// anchored on a domain node, relay service on public hosts and AutoNAT
// behind a NAT; edit, when set, changes it before it is saved.
func (n *BedNet) placeConfig(i int, path string, rewrite func(string) string, edit func(int, *node.Config)) error {
	host, m := n.Hosts[i], n.Manifest
	c, err := node.LoadConfig(path)
	if err != nil {
		return err
	}
	c.SetDir(filepath.Dir(path))
	for k := range c.Overlay.Listen {
		c.Overlay.Listen[k] = rewrite(c.Overlay.Listen[k])
	}
	for k := range c.Overlay.Bootstrap {
		c.Overlay.Bootstrap[k] = rewrite(c.Overlay.Bootstrap[k])
	}
	// SIP, TURN and HTTP listen on the host's address; a domain's
	// node anchors the media of NAT'd parties on its RTP relay.
	onHost := func(a string) string {
		if strings.HasPrefix(a, "127.0.0.1:") {
			return host.IP + strings.TrimPrefix(a, "127.0.0.1")
		}
		return a
	}
	c.SIP, c.SIPTLS, c.TURN, c.HTTP = onHost(c.SIP), onHost(c.SIPTLS), onHost(c.TURN), onHost(c.HTTP)
	c.SIPWS, c.SIPWSS = onHost(c.SIPWS), onHost(c.SIPWSS)
	m.Nodes[i].SIP, m.Nodes[i].SIPTLS, m.Nodes[i].TURN, m.Nodes[i].HTTP = c.SIP, c.SIPTLS, c.TURN, c.HTTP
	m.Nodes[i].SIPWS, m.Nodes[i].SIPWSS = c.SIPWS, c.SIPWSS
	if c.Domain != "" && c.SIP != "" {
		c.Relay.MediaIP = host.IP
		// The testbed's internet is in 192.0.0.0/24, a special-purpose
		// block the relay's policy denies (relay.Restricted): its peers
		// are allowed here, explicitly.
		c.Relay.Allow = append(c.Relay.Allow, internet+".0/24")
		if c.Proxy.Media == "" {
			c.Proxy.Media = "auto"
		}
	}
	if edit != nil {
		edit(i, c)
	}
	// Behind a NAT, AutoNAT finds the node private: it reserves a
	// relay on the public members, which serve as relays.
	if host.NAT >= 0 {
		c.Overlay.Reachability = "auto"
	} else {
		c.Overlay.RelayService = true
	}
	return c.Save(path)
}

// Started returns when node i's process was started.
func (n *BedNet) Started(i int) time.Time { return n.started[i] }

// Kill stops node i at once (SIGKILL to its process group), as a crash
// or a pulled cable would.
func (n *BedNet) Kill(i int) error {
	c := n.cmds[i]
	if c.Process == nil {
		return fmt.Errorf("testnet: node %d not started", i)
	}
	return syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
}

// Run runs `lsnode args...` on host h and returns its combined output.
func (n *BedNet) Run(ctx context.Context, h Host, args ...string) (string, error) {
	out, err := n.Bed.Command(ctx, h, n.exe, args...).CombinedOutput()
	return string(out), err
}

// WaitSize waits until node i itself (`lsnode status --strict`: not a
// bootstrap peer answering for it while it starts) counts size members.
func (n *BedNet) WaitSize(ctx context.Context, i, size int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := fmt.Sprintf(`"size_estimate": %d`, size)
	for {
		out, err := n.Run(ctx, n.Hosts[i], "status", "--strict", "--config", n.Configs[i])
		if err == nil && strings.Contains(out, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testnet: node %d on %s does not count %d members: %v %s", i, n.Hosts[i].Name, size, err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
