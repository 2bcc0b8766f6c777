package testnet_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// kamCluster is Kamailio run as a replicated registrar: several instances
// of registrar-dmq.cfg whose usrloc dmq_usrloc copies to one another. The
// register bench drives the first; the others only take its copies.
type kamCluster struct {
	ks   []*kamailio
	ctls []string // each instance's binrpc socket
	addr string   // the first instance's, the one sipp drives
}

// startKamCluster starts n instances on fresh ports and waits until each
// lists all n in its DMQ node list.
func startKamCluster(b *testing.B, n int, auth bool) *kamCluster {
	b.Helper()
	dir := b.TempDir()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", freeUDPPort(b))
	}
	c := &kamCluster{}
	for i, addr := range addrs {
		peer := addrs[(i+1)%n] // each knows one other; DMQ spreads the rest
		ctl := filepath.Join(dir, fmt.Sprintf("ctl%d", i))
		// 2 GB of shared memory each: every copy is a tm transaction kept
		// until its timers end. With 512 MB, 64000 REGISTERs at 8000/s
		// ran the first instance out ("short of cell shmem": 8703 copies
		// never sent, every REGISTER still answered 200), so its figures
		// were those of a cluster that replicates less.
		k := startKamailioWith(b, "registrar-dmq.cfg", addr, auth, 2048,
			`DMQ_SELF="sip:`+addr+`"`, `DMQ_PEER="sip:`+peer+`"`, `CTL="unix:`+ctl+`"`)
		c.ks, c.ctls = append(c.ks, k), append(c.ctls, ctl)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		formed := true
		for _, ctl := range c.ctls {
			out, _ := exec.Command("kamcmd", "-s", "unix:"+ctl, "dmq.list_nodes").Output()
			formed = formed && strings.Count(string(out), "host:") >= n
		}
		if formed {
			break
		}
		if time.Now().After(deadline) {
			c.stop()
			b.Fatalf("Kamailio DMQ cluster of %d did not form in 20 s", n)
		}
	}
	c.addr = addrs[0]
	return c
}

// contacts is how many contacts instance i holds (usrloc's count).
func (c *kamCluster) contacts(b *testing.B, i int) int {
	out, err := exec.Command("kamcmd", "-s", "unix:"+c.ctls[i], "stats.get_statistics", "usrloc:").Output()
	if err != nil {
		b.Fatalf("kamcmd on instance %d: %v", i, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if name, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(name) == "usrloc:location_contacts" {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	b.Fatalf("kamcmd on instance %d: no usrloc:location_contacts in %q", i, out)
	return 0
}

// cpu is the CPU time of every instance's process group, in seconds.
func (c *kamCluster) cpu() (float64, error) {
	var sum float64
	for _, k := range c.ks {
		s, err := testnet.GroupCPU(k.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

func (c *kamCluster) stop() {
	for _, k := range c.ks {
		k.stop()
	}
}

// kamClusterFigures: the replicated Kamailio's sustained rate, CPU per
// REGISTER (all instances) at the bench's fixed rate, and the contacts each
// instance held after the runs.
type kamClusterFigures struct {
	max      int
	genCPU   float64
	cpu      time.Duration
	contacts []int
}

func (f kamClusterFigures) String() string {
	held := make([]string, len(f.contacts))
	for i, n := range f.contacts {
		held[i] = strconv.Itoa(n)
	}
	return fmt.Sprintf("%d/s (sipp %.0f%% CPU), %.0fµs CPU per REGISTER, contacts held %s", f.max, 100*f.genCPU,
		float64(f.cpu)/1e3, strings.Join(held, "/"))
}

// measureKamCluster measures a cluster of n (its sustained maximum and,
// unless that is all cpuOnly wants, its CPU per REGISTER at cpuRate) and
// counts the contacts every instance holds after: the copies.
func measureKamCluster(b *testing.B, n int, g func(addr string) sippGen, auth, cpuOnly bool, cpuRate int, hold time.Duration) kamClusterFigures {
	c := startKamCluster(b, n, auth)
	defer c.stop()
	var f kamClusterFigures
	if !cpuOnly {
		var atMax sippResult
		f.max, atMax = maxRate(b, g(c.addr), hold)
		f.genCPU = atMax.cpu
	}
	d, res := cpuPerCall(b, g(c.addr), cpuRate, hold, c.cpu)
	if res.ok() {
		f.cpu = d
	} else {
		b.Logf("Kamailio cluster at %d/s for %v (digest %v): %d of %d REGISTERs failed: %s", cpuRate, hold, auth, res.calls-res.success, res.calls, res.why)
	}
	time.Sleep(time.Second) // the last copies
	for i := range c.ks {
		f.contacts = append(f.contacts, c.contacts(b, i))
	}
	return f
}
