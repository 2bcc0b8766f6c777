package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What the kernel counts for a process and for loopback (Linux /proc),
// for the cost figures of the benchmarks and of Chaos.

// ProcRSS returns the resident set of process pid ("self" for this one),
// in bytes.
func ProcRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("testnet: no VmRSS in /proc/%s/status", pid)
}

// ProcCPU returns the CPU seconds process pid ("self") has used (user +
// system) and those of its children it has waited for.
func ProcCPU(pid string) (own, children float64, err error) {
	st, err := procStat(pid)
	return st.own, st.children, err
}

// GroupCPU returns the CPU seconds the live processes of process group
// pgid have used (user + system; e.g. a server and the workers it forked,
// none of which exit).
func GroupCPU(pgid int) (float64, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, path := range stats {
		st, err := procStat(filepath.Base(filepath.Dir(path)))
		if err == nil && st.pgrp == pgid { // (one gone since the glob is skipped)
			sum += st.own
		}
	}
	return sum, nil
}

// stat is what procStat reads of a process.
type stat struct {
	pgrp          int
	own, children float64 // CPU seconds, user + system
}

// procStat reads /proc/pid/stat.
func procStat(pid string) (stat, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return stat{}, err
	}
	// The fields after the command name (which may hold spaces).
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 || end+2 > len(b) {
		return stat{}, fmt.Errorf("testnet: /proc/%s/stat unreadable", pid)
	}
	f := strings.Fields(string(b[end+2:]))
	if len(f) < 15 {
		return stat{}, fmt.Errorf("testnet: /proc/%s/stat unreadable", pid)
	}
	var st stat
	if st.pgrp, err = strconv.Atoi(f[2]); err != nil {
		return stat{}, fmt.Errorf("testnet: /proc/%s/stat: %w", pid, err)
	}
	var t [4]float64 // utime, stime, cutime, cstime
	for k := range t {
		if t[k], err = strconv.ParseFloat(f[11+k], 64); err != nil {
			return stat{}, fmt.Errorf("testnet: /proc/%s/stat: %w", pid, err)
		}
	}
	const userHZ = 100
	st.own, st.children = (t[0]+t[1])/userHZ, (t[2]+t[3])/userHZ
	return st, nil
}

// LoopbackSent returns the bytes sent on the loopback interface so far
// (/proc/net/dev): all the traffic between local nodes.
func LoopbackSent() (int64, error) {
	b, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || name != "lo" {
			continue
		}
		if f := strings.Fields(rest); len(f) > 8 {
			return strconv.ParseInt(f[8], 10, 64)
		}
	}
	return 0, fmt.Errorf("testnet: no loopback interface in /proc/net/dev")
}

// UDPDrops returns the datagrams the kernel dropped so far at the UDP
// sockets bound to port (/proc/net/udp and udp6, their last column): a
// receive buffer that overflowed. A bench reads it around a run to say
// which side could not keep up.
func UDPDrops(port int) (int64, error) {
	var n int64
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, line := range lines[1:] {
			fs := strings.Fields(line)
			if len(fs) < 13 {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err != nil || int(p) != port {
				continue
			}
			d, err := strconv.ParseInt(fs[len(fs)-1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("testnet: %s: drops %q: %v", f, fs[len(fs)-1], err)
			}
			n += d
		}
	}
	return n, nil
}
