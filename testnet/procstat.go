package testnet

import (
	"fmt"
	"os"
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
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name (which may hold spaces).
	end := strings.LastIndexByte(string(b), ')')
	if end < 0 || end+2 > len(b) {
		return 0, 0, fmt.Errorf("testnet: /proc/%s/stat unreadable", pid)
	}
	f := strings.Fields(string(b[end+2:]))
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("testnet: /proc/%s/stat unreadable", pid)
	}
	var t [4]float64
	for k := range t {
		if t[k], err = strconv.ParseFloat(f[11+k], 64); err != nil {
			return 0, 0, fmt.Errorf("testnet: /proc/%s/stat: %w", pid, err)
		}
	}
	const userHZ = 100
	return (t[0] + t[1]) / userHZ, (t[2] + t[3]) / userHZ, nil
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
