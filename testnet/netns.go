package testnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BedSpec describes a network-namespace testbed: hosts on one shared
// "internet" segment (a bridge in its own namespace, with no link out of
// the testbed), and private networks behind NAT routers (192.168.N.0/24,
// masquerading to the internet segment with nftables, and dropping what
// arrives from it unasked, as a home router does). Linux only; needs root,
// iproute2 and nft.
//
// The internet segment is 192.0.0.128/25: part of 192.0.0.0/24, which
// IANA reserves for protocol assignments and nobody routes, but outside
// the 192.0.0.0/26 that libp2p counts as unroutable. libp2p's NAT
// machinery (AutoNAT, observed addresses, hole punching) acts on public
// addresses only, so the testbed's internet must look public to it.
type BedSpec struct {
	// Public hosts on the internet segment: 192.0.0.130, .131, ...
	Public int
	// NATs lists, per NAT router, how many hosts sit behind it.
	NATs []int
	// UDPTimeout, when set, is how long the NAT routers keep an idle UDP
	// mapping (conntrack; Linux's default is 30 s, 120 s once both ways
	// have seen traffic), whole seconds.
	UDPTimeout time.Duration
}

// Host is one host of a testbed: a network namespace.
type Host struct {
	Name string // h0, h1, ... public; n0-0, n0-1, ... behind NAT 0
	NS   string // namespace name
	IP   string // its address
	NAT  int    // index of its NAT router; -1 on the internet segment
}

// Bed is a running testbed. Close removes every namespace and stops every
// process it started, even after a failed start.
type Bed struct {
	Hosts   []Host
	Routers []Host // the NAT routers (IP: their internet-side address)
	prefix  string

	mu    sync.Mutex
	ns    []string // every namespace made, in order
	procs []*exec.Cmd
}

// internet is the testbed's internet segment, a /25 (see BedSpec).
const internet = "192.0.0"

// natRules make a NAT router: masquerade out of wan; from wan, only
// replies to what went out (conntrack), nothing unasked, to the router or
// through it. Dropped, not refused: a refusal would end a hole punch's
// early SYN that a home router silently drops.
const natRules = `table ip nat {
 chain post {
  type nat hook postrouting priority 100;
  oifname "wan" masquerade
 }
}
table ip filter {
 chain forward_wan {
  type filter hook forward priority 0; policy accept;
  iifname "wan" ct state established,related accept
  iifname "wan" drop
 }
 chain input_wan {
  type filter hook input priority 0; policy accept;
  iifname "wan" ct state established,related accept
  iifname "wan" drop
 }
}
`

// bedPrefix names a testbed's namespaces after this process, so a sweep can
// tell a dead run's leftovers from a live one's.
const bedPrefix = "lsnbed-"

// NewBed builds the testbed of spec. Leftovers of earlier runs whose
// process is gone are removed first.
func NewBed(ctx context.Context, spec BedSpec) (b *Bed, err error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	SweepBeds(ctx)
	bed := &Bed{prefix: fmt.Sprintf("%s%d-", bedPrefix, os.Getpid())}
	b = bed
	defer func() {
		if err != nil {
			bed.Close() // b itself is already nil here: "return nil, err" set it
			b = nil
		}
	}()
	sw := b.prefix + "sw"
	if err := b.addNS(ctx, sw); err != nil {
		return nil, err
	}
	if err := b.sh(ctx, sw, "ip link add br0 type bridge", "ip link set br0 up"); err != nil {
		return nil, err
	}
	for i := 0; i < spec.Public; i++ {
		h := Host{Name: fmt.Sprintf("h%d", i), NS: b.prefix + fmt.Sprintf("h%d", i), IP: fmt.Sprintf("%s.%d", internet, 130+i), NAT: -1}
		if err := b.addNS(ctx, h.NS); err != nil {
			return nil, err
		}
		if err := b.attach(ctx, h.NS, "eth0", h.IP+"/25"); err != nil {
			return nil, err
		}
		b.Hosts = append(b.Hosts, h)
	}
	for j, n := range spec.NATs {
		if err := b.addNAT(ctx, j, n, spec.UDPTimeout); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// check refuses a testbed that needs what this machine lacks or is larger
// than the address plan allows.
func (spec BedSpec) check() error {
	if os.Geteuid() != 0 {
		return errors.New("testnet: a namespace testbed needs root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("testnet: a namespace testbed needs %s (Debian: iproute2, nftables)", tool)
		}
	}
	if spec.Public < 1 || spec.Public > 70 || len(spec.NATs) > 50 {
		return fmt.Errorf("testnet: testbed wants 1-70 public hosts and at most 50 NATs")
	}
	for _, n := range spec.NATs {
		if n < 0 || n > 200 {
			return fmt.Errorf("testnet: at most 200 hosts behind a NAT")
		}
	}
	return nil
}

// attach links namespace ns to the internet bridge with a veth named dev
// inside, addressed addr.
func (b *Bed) attach(ctx context.Context, ns, dev, addr string) error {
	sw := b.prefix + "sw"
	peer := "v" + strconv.Itoa(len(b.ns))
	return b.sh(ctx, "",
		fmt.Sprintf("ip link add %s netns %s type veth peer name %s netns %s", dev, ns, peer, sw),
		fmt.Sprintf("ip -n %s link set %s master br0 up", sw, peer),
		fmt.Sprintf("ip -n %s addr add %s dev %s", ns, addr, dev),
		fmt.Sprintf("ip -n %s link set %s up", ns, dev))
}

// addNAT adds NAT router j on the internet segment and n hosts on its LAN
// (192.168.j+1.0/24); udpTimeout, when set, is its conntrack UDP timeout.
func (b *Bed) addNAT(ctx context.Context, j, n int, udpTimeout time.Duration) error {
	r := Host{Name: fmt.Sprintf("nat%d", j), NS: b.prefix + fmt.Sprintf("nat%d", j), IP: fmt.Sprintf("%s.%d", internet, 200+j), NAT: j}
	lan := fmt.Sprintf("192.168.%d", j+1)
	if err := b.addNS(ctx, r.NS); err != nil {
		return err
	}
	if err := b.attach(ctx, r.NS, "wan", r.IP+"/25"); err != nil {
		return err
	}
	if err := b.sh(ctx, r.NS, "ip link add lan type bridge", "ip addr add "+lan+".1/24 dev lan", "ip link set lan up",
		"sysctl -qw net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	if sec := int(udpTimeout.Seconds()); sec > 0 {
		if err := b.sh(ctx, r.NS, fmt.Sprintf("sysctl -qw net.netfilter.nf_conntrack_udp_timeout=%d net.netfilter.nf_conntrack_udp_timeout_stream=%d", sec, sec)); err != nil {
			return err
		}
	}
	if err := b.nft(ctx, r.NS, natRules); err != nil {
		return err
	}
	b.Routers = append(b.Routers, r)
	for k := 0; k < n; k++ {
		h := Host{Name: fmt.Sprintf("n%d-%d", j, k), NS: b.prefix + fmt.Sprintf("n%d-%d", j, k), IP: fmt.Sprintf("%s.%d", lan, 10+k), NAT: j}
		if err := b.addNS(ctx, h.NS); err != nil {
			return err
		}
		peer := fmt.Sprintf("l%d", k)
		if err := b.sh(ctx, "",
			fmt.Sprintf("ip link add eth0 netns %s type veth peer name %s netns %s", h.NS, peer, r.NS),
			fmt.Sprintf("ip -n %s link set %s master lan up", r.NS, peer),
			fmt.Sprintf("ip -n %s addr add %s/24 dev eth0", h.NS, h.IP),
			fmt.Sprintf("ip -n %s link set eth0 up", h.NS),
			fmt.Sprintf("ip -n %s route add default via %s.1", h.NS, lan)); err != nil {
			return err
		}
		b.Hosts = append(b.Hosts, h)
	}
	return nil
}

// Public returns the hosts on the internet segment.
func (b *Bed) Public() []Host {
	var out []Host
	for _, h := range b.Hosts {
		if h.NAT < 0 {
			out = append(out, h)
		}
	}
	return out
}

// Behind returns the hosts behind NAT router j.
func (b *Bed) Behind(j int) []Host {
	var out []Host
	for _, h := range b.Hosts {
		if h.NAT == j {
			out = append(out, h)
		}
	}
	return out
}

// Command returns a command that runs in host h's namespace. Start it with
// Start so Close stops it.
func (b *Bed) Command(ctx context.Context, h Host, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// Start starts cmd (from Command) and has Close stop it.
func (b *Bed) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	b.mu.Lock()
	b.procs = append(b.procs, cmd)
	b.mu.Unlock()
	return nil
}

// Close stops the processes it started (SIGTERM, then SIGKILL after 5 s)
// and deletes every namespace, which removes their links.
func (b *Bed) Close() error {
	b.mu.Lock()
	procs, nss := b.procs, b.ns
	b.procs, b.ns = nil, nil
	b.mu.Unlock()
	for _, p := range procs {
		if p.Process != nil && p.ProcessState == nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range procs {
		if p.Process == nil || p.ProcessState != nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	var errs []error
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", nss[i]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", nss[i], err, out))
		}
	}
	return errors.Join(errs...)
}

// SweepBeds deletes the namespaces of testbeds whose process is gone (a run
// that was killed before it could clean up).
func SweepBeds(ctx context.Context) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], bedPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(f[0], bedPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = exec.CommandContext(ctx, "ip", "netns", "del", f[0]).Run()
	}
}

func (b *Bed) addNS(ctx context.Context, name string) error {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: ip netns add %s: %v: %s", name, err, out)
	}
	b.mu.Lock()
	b.ns = append(b.ns, name)
	b.mu.Unlock()
	return b.sh(ctx, name, "ip link set lo up")
}

// sh runs commands, in namespace ns unless it is "".
func (b *Bed) sh(ctx context.Context, ns string, cmds ...string) error {
	for _, c := range cmds {
		args := strings.Fields(c)
		if ns != "" {
			args = append([]string{"ip", "netns", "exec", ns}, args...)
		}
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("testnet: %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func (b *Bed) nft(ctx context.Context, ns, ruleset string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: nft in %s: %v: %s", ns, err, out)
	}
	return nil
}
