package testnet_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// sippGen drives a target with several sipp processes at once, each with
// its share of the users (a CSV of its own) and its own local port, so
// one sipp thread is never the ceiling of a measured rate.
type sippGen struct {
	target, scenario string
	csvs             []string // one per process
	port             int      // process k sends from port+k
	extra            []string
	// hard: the processes stop at the run's end, calls in progress and
	// all, instead of finishing their calls: an overload ends when it is
	// meant to, not when the last of its retransmitted calls gives up.
	hard bool
	// overloadProfile: a CPU profile of the process during overload's
	// run at twice the maximum, when not empty.
	overloadProfile string
	// peer, when set, reads the generator's other half (the call bench's
	// sipp UAS, which answers every call): run reports what it used and
	// saw over the run.
	peer func() (peerReading, error)
	// ackWait: run waits uasAckWait after the calls for the peer's count
	// of calls never ACKed (the rate search's runs, which ok judges; a
	// run's CPU and run statistics would count the wait).
	ackWait bool
}

// sippResult is what one run of a sippGen saw.
type sippResult struct {
	calls, success, failed int
	// perSec: successful calls in each second, all processes together.
	perSec []int
	// rtt: start to final response of each successful call, for
	// scenarios that mark it (start_rtd / rtd).
	rtt []time.Duration
	// cpu: the generator's CPU over the run, in cores (its processes
	// together); cpuMax: its busiest process's (sipp is one thread).
	cpu, cpuMax float64
	peer        peerReading // sippGen.peer's change over the run
	// dropped: datagrams the kernel dropped over the run at the server's
	// socket and at the callers' (a receive buffer full: that side fell
	// behind); -1 when not read.
	dropped struct{ server, callers int64 }
	why     string         // what failed calls got, when some did
	kinds   map[string]int // failureCounts of all processes together
}

// ok: every call succeeded at the callers, and, with a UAS, every call's
// ACK reached it. A BYE before the ACK is answered (uas_load.xml), so a
// call whose ACK the server lost (its socket overflowed) still succeeds
// at the caller; the callee would end it when the ACK never came (RFC
// 3261 §13.3.1.4). Kamailio "held" 3000 calls/s with 0 failed calls
// while its socket dropped 32 494 datagrams and 1556 calls were never
// ACKed: a loss, not a sustained rate.
func (r sippResult) ok() bool {
	return r.calls > 0 && r.success == r.calls && r.failed == 0 && r.peer.noAck == 0
}

// splitUsers writes the users of the CSV at path (after its first line,
// the order) into k CSVs, user i into file i%k, and returns their paths.
func splitUsers(tb testing.TB, path string, k int) []string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	parts := make([]strings.Builder, k)
	for j := range parts {
		parts[j].WriteString(lines[0] + "\n")
	}
	for i, l := range lines[1:] {
		parts[i%k].WriteString(l + "\n")
	}
	out := make([]string, k)
	for j := range parts {
		out[j] = filepath.Join(tb.TempDir(), fmt.Sprintf("users%d.csv", j))
		if err := os.WriteFile(out[j], []byte(parts[j].String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// run offers rate calls a second for dur, shared by the processes, and
// waits until every call has ended.
func (g sippGen) run(tb testing.TB, rate int, dur time.Duration) sippResult {
	tb.Helper()
	k := len(g.csvs)
	type one struct {
		dir string
		cmd *exec.Cmd
		err error
	}
	procs := make([]one, k)
	timeout, kill := dur+40*time.Second, dur+60*time.Second
	if g.hard {
		// sipp's global timeout only stops new calls: it then waits for
		// those in progress, and a sipp starved of CPU runs behind its
		// clock. Killed 2 s after the end (its statistics file is
		// written each second).
		timeout, kill = dur, dur+2*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), kill)
	defer cancel()
	peer0, peerOK := g.readPeer()
	drops0 := g.drops(k)
	t0 := time.Now()
	var wg sync.WaitGroup
	for j := range procs {
		share := rate / k
		if j < rate%k {
			share++
		}
		if share == 0 {
			continue
		}
		p := &procs[j]
		p.dir = tb.TempDir()
		p.cmd = exec.CommandContext(ctx, "sipp", g.target, "-sf", g.scenario, "-inf", g.csvs[j], "-r", fmt.Sprint(share),
			"-m", fmt.Sprint(int(float64(share)*dur.Seconds())), "-i", "127.0.0.1", "-p", fmt.Sprint(g.port+j),
			"-auth_uri", "a.example", "-buff_size", "4194304", "-nostdin", "-timeout", fmt.Sprintf("%ds", int(timeout.Seconds())),
			"-trace_err", "-error_file", "errors.log", "-trace_stat", "-fd", "1", "-stf", "stat.csv",
			"-trace_rtt", "-rtt_freq", "1",
			// No default behaviours: sipp ends a failed call with a BYE
			// to the server, which Kamailio's bench config answers 405
			// at once and our proxy forwards to the (silent) sipp
			// Contact, retransmitting it for 32 s: overload measured
			// those BYEs. The scenarios end on a failure answer themselves.
			"-nd")
		p.cmd.Args = append(p.cmd.Args, g.extra...)
		p.cmd.Dir = p.dir
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := p.cmd.CombinedOutput()
			if err != nil {
				p.err = fmt.Errorf("%v: %s", err, tail(out))
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	var r sippResult
	if peer1, ok := g.readPeer(); ok && peerOK {
		r.peer = peer1.since(peer0, secs)
		if g.ackWait {
			// The UAS logs a call never ACKed uasAckWait after its
			// BYE: this run's last ones are counted in this run.
			time.Sleep(uasAckWait + 500*time.Millisecond)
			if peer2, ok := g.readPeer(); ok {
				r.peer.byeFirst, r.peer.noAck = peer2.byeFirst-peer0.byeFirst, peer2.noAck-peer0.noAck
			}
		}
	}
	r.dropped = g.drops(k)
	if r.dropped.server >= 0 && drops0.server >= 0 {
		r.dropped.server -= drops0.server
	}
	if r.dropped.callers >= 0 && drops0.callers >= 0 {
		r.dropped.callers -= drops0.callers
	}
	var whys []string
	for _, p := range procs {
		if p.cmd == nil {
			continue
		}
		if st := p.cmd.ProcessState; st != nil {
			c := (st.UserTime() + st.SystemTime()).Seconds() / secs
			r.cpu, r.cpuMax = r.cpu+c, max(r.cpuMax, c)
		}
		calls, success, failed, perSec := sippStats(filepath.Join(p.dir, "stat.csv"))
		r.calls, r.success, r.failed = r.calls+calls, r.success+success, r.failed+failed
		for i, n := range perSec {
			if i == len(r.perSec) {
				r.perSec = append(r.perSec, 0)
			}
			r.perSec[i] += n
		}
		r.rtt = append(r.rtt, sippRTTs(p.dir)...)
		if failed > 0 || p.err != nil {
			errs, _ := os.ReadFile(filepath.Join(p.dir, "errors.log"))
			if keep := os.Getenv("LSNODE_BENCH_KEEPERR"); keep != "" {
				_ = os.WriteFile(filepath.Join(keep, fmt.Sprintf("errors-%d-%d.log", rate, time.Now().UnixMilli())), errs, 0o644)
			}
			kinds := failureCounts(errs, g.scenario)
			for k, n := range kinds {
				if r.kinds == nil {
					r.kinds = map[string]int{}
				}
				r.kinds[k] += n
			}
			if len(kinds) == 0 { // no line we classify: show sipp's own words
				kinds = map[string]int{"errors.log: " + firstLines(errs, 3): 1}
				whys = append(whys, fmt.Sprintf("%v %v", p.err, kinds))
				continue
			}
			// Classified: sipp's exit status without its screen (which
			// filled the benchmark's log, truncating what followed).
			status := ""
			if p.err != nil {
				status, _, _ = strings.Cut(p.err.Error(), ":")
			}
			whys = append(whys, fmt.Sprintf("%s %v", status, kinds))
		}
	}
	if r.peer.noAck > 0 {
		whys = append(whys, fmt.Sprintf("%d calls never ACKed at the UAS", r.peer.noAck))
	}
	r.why = strings.Join(whys, "; ")
	if len(whys) > 0 {
		r.why += "; " + r.droppedText(g.peer != nil)
	}
	return r
}

// drops reads the kernel's drop counts at the server's socket and at the
// k callers' (-1: not read).
func (g sippGen) drops(k int) (d struct{ server, callers int64 }) {
	d.server, d.callers = -1, -1
	if _, port, err := net.SplitHostPort(g.target); err == nil {
		if p, err := strconv.Atoi(port); err == nil {
			if n, err := testnet.UDPDrops(p); err == nil {
				d.server = n
			}
		}
	}
	var sum int64
	for j := 0; j < k; j++ {
		n, err := testnet.UDPDrops(g.port + j)
		if err != nil {
			return d
		}
		sum += n
	}
	d.callers = sum
	return d
}

// droppedText says what the kernel dropped over the run, at each side's
// sockets (the UAS's too, with one).
func (r sippResult) droppedText(uas bool) string {
	s := fmt.Sprintf("datagrams dropped at the server's socket %d, the callers' %d", r.dropped.server, r.dropped.callers)
	if uas {
		s += fmt.Sprintf(", the UAS's %d", r.peer.dropped)
	}
	return s
}

// peerReading is what a sippGen's peer has used and seen: CPU seconds (a
// run's change: cores), and the calls it logged whose BYE came before the
// ACK or that were never ACKed (uas_load.xml; "never" is logged uasAckWait
// after the BYE: run waits for it before its last reading).
type peerReading struct {
	cpu             float64
	byeFirst, noAck int
	dropped         int64 // datagrams the kernel dropped at its socket
}

// since is what the peer used (in cores over secs) and saw after p0.
func (p peerReading) since(p0 peerReading, secs float64) peerReading {
	return peerReading{cpu: (p.cpu - p0.cpu) / secs, byeFirst: p.byeFirst - p0.byeFirst, noAck: p.noAck - p0.noAck, dropped: p.dropped - p0.dropped}
}

// readPeer is g.peer's reading; false without one.
func (g sippGen) readPeer() (peerReading, bool) {
	if g.peer == nil {
		return peerReading{}, false
	}
	p, err := g.peer()
	return p, err == nil
}

// sippStats reads sipp's statistics file (-trace_stat -fd 1): the calls
// created, succeeded and failed, and the successes of each period.
func sippStats(path string) (calls, success, failed int, perSec []int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, nil
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return 0, 0, 0, nil
	}
	col := map[string]int{}
	for i, h := range strings.Split(lines[0], ";") {
		col[h] = i
	}
	get := func(f []string, name string) int {
		i, ok := col[name]
		if !ok || i >= len(f) {
			return 0
		}
		n, _ := strconv.Atoi(f[i])
		return n
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ";")
		perSec = append(perSec, get(f, "SuccessfulCall(P)"))
		calls, success, failed = get(f, "TotalCallCreated"), get(f, "SuccessfulCall(C)"), get(f, "FailedCall(C)")
	}
	return calls, success, failed, perSec
}

// sippRTTs reads the response times sipp wrote with -trace_rtt.
func sippRTTs(dir string) []time.Duration {
	files, _ := filepath.Glob(filepath.Join(dir, "*_rtt.csv"))
	var out []time.Duration
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Split(l, ";")
			if len(f) < 2 {
				continue
			}
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out = append(out, time.Duration(v*float64(time.Millisecond)))
			}
		}
	}
	return out
}

// freeUDPPorts returns the first of n consecutive UDP ports on loopback
// that are free now.
func freeUDPPorts(tb testing.TB, n int) int {
	tb.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		base := freeUDPPort(tb)
		free := true
		for k := 1; k < n && free; k++ {
			c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", base+k))
			if err != nil {
				free = false
				continue
			}
			c.Close()
		}
		if free {
			return base
		}
	}
	tb.Fatalf("no %d consecutive free UDP ports", n)
	return 0
}

// firstLines is b's first n lines, joined by " | ".
func firstLines(b []byte, n int) string {
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], " | ")
}
