package testnet_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// registerRaw sends one REGISTER without credentials over UDP and waits for
// a 200 (Kamailio's usrloc in the call bench).
func registerRaw(b *testing.B, registrar, aor, contact string) {
	b.Helper()
	conn, err := net.Dial("udp", registrar)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := "REGISTER sip:" + strings.SplitN(aor, "@", 2)[1] + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bKreg" + fmt.Sprint(time.Now().UnixNano()) + "\r\n" +
		"Max-Forwards: 70\r\nTo: <" + aor + ">\r\nFrom: <" + aor + ">;tag=r\r\n" +
		"Call-ID: reg" + fmt.Sprint(time.Now().UnixNano()) + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <" + contact + ">\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(msg)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		b.Fatalf("REGISTER at %s: %v %q", registrar, err, buf[:n])
	}
}

// uasAckWait is how long uas_load.xml waits for the ACK of a call whose
// BYE came first before it logs the call never ACKed.
const uasAckWait = 4 * time.Second

// startUAS runs a sipp UAS answering every call until the bench ends;
// peer reads what it has used and seen so far (its CPU, and the calls whose
// BYE came before the ACK or that never got one, from its log).
func startUAS(b *testing.B, port int) (stop func(), peer func() (peerReading, error)) {
	b.Helper()
	scen, _ := filepath.Abs("testdata/sipp/uas_load.xml")
	dir := b.TempDir()
	logPath := filepath.Join(dir, "uas.log")
	cmd := exec.Command("sipp", "-sf", scen, "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-nostdin",
		"-buff_size", "4194304", "-trace_logs", "-log_file", logPath)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	stop = func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	return stop, func() (peerReading, error) {
		cpu, err := testnet.GroupCPU(cmd.Process.Pid)
		if err != nil {
			return peerReading{}, err
		}
		dropped, err := testnet.UDPDrops(port)
		if err != nil {
			return peerReading{}, err
		}
		log, _ := os.ReadFile(logPath) // none yet: nothing logged
		return peerReading{cpu: cpu, byeFirst: bytes.Count(log, []byte("BYE before ACK")), noAck: bytes.Count(log, []byte("no ACK")), dropped: dropped}, nil
	}
}

// BenchmarkCall measures sipp call rate (INVITE/100/200/ACK/BYE/200,
// sustained LSNODE_BENCH_HOLD seconds with 0 failed calls) through an
// a.example proxy that finds the callee (a b.example AOR) in the overlay,
// with the lookup cache on (cached) and off (cold: an overlay lookup per
// INVITE), against Kamailio routing the same scenario with
// lookup("location") on its in-memory usrloc, in the same run (first,
// alone on the machine, before the testnet starts), driven by
// LSNODE_BENCH_SIPP sipp callers (2) with their CPU and the callee's; and
// the latency an overlay lookup adds to a call. LSNODE_BENCH_CPUPROFILE: a
// CPU profile of the testnet's runs (not Kamailio's).
func BenchmarkCall(b *testing.B) {
	for _, tool := range []string{"sipp", "kamailio"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not installed (Debian: sip-tester, kamailio)", tool)
		}
	}
	hold := time.Duration(envInt("LSNODE_BENCH_HOLD", 20)) * time.Second
	dir := b.TempDir()
	if _, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 10, PerDomain: 2, Overlay: "bench-call"}); err != nil {
		b.Fatal(err)
	}
	uasPort := freeUDPPort(b)
	stopUAS, uas := startUAS(b, uasPort)
	defer stopUAS()
	aor, contact := "sip:bob@b.example", fmt.Sprintf("sip:bob@127.0.0.1:%d", uasPort)
	uac, _ := filepath.Abs("testdata/sipp/uac.xml")
	csv := filepath.Join(dir, "empty.csv")
	if err := os.WriteFile(csv, []byte("SEQUENTIAL\nx;\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	// LSNODE_BENCH_SIPP callers (2), each from its own port, and their
	// CPU and the UAS's reported: a ratio must not be a sipp limit.
	procs := envInt("LSNODE_BENCH_SIPP", 2)
	port := freeUDPPorts(b, 2*procs)
	args := []string{"-s", "bob", "-key", "domain", "b.example"}
	gen := func(target string) sippGen {
		return sippGen{target: target, scenario: uac, csvs: slices.Repeat([]string{csv}, procs), port: port, extra: args, peer: uas}
	}
	// Kamailio first, alone on the machine (the testnet is not started yet).
	// The servers' CPU per call at one rate both sustain.
	cpuRate := envInt("LSNODE_BENCH_CPURATE", 1000)
	cpuOnly := os.Getenv("LSNODE_BENCH_CPUONLY") != "" // the CPU per call alone, no rate search
	rKam, oKam, cpuKam := 0, "-", "-"
	var atKam, atCached, atCold sippResult // the runs at each one's maximum
	var kamPerCall time.Duration
	if os.Getenv("LSNODE_BENCH_SKIP_KAMAILIO") == "" {
		kaddr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(b))
		k := startKamailioWith(b, "proxy.cfg", kaddr, false, 512)
		registerRaw(b, kaddr, aor, contact)
		if !cpuOnly {
			rKam, atKam = maxRate(b, gen(kaddr), hold)
			oKam = callOverload(b, gen(kaddr), rKam)
		}
		d, res := cpuPerCall(b, gen(kaddr), cpuRate, hold, func() (float64, error) { return testnet.GroupCPU(k.cmd.Process.Pid) })
		kamPerCall, cpuKam = d, perCall(d, res)
		k.stop()
	}
	log := benchLogger(b)
	nw, err := testnet.Start(context.Background(), dir, testnet.RunOptions{Logger: log, Tweak: func(c *node.Config) {
		fastGossip(c)
		c.Proxy.DNSServer = "off"
		if v, err := strconv.ParseFloat(os.Getenv("LSNODE_BENCH_SHED_BACKLOG"), 64); err == nil {
			c.Proxy.ShedBacklog = v // -1: the proxies never shed on the reader
		}
		if c.Name == "node2" {
			c.Proxy.CacheTTL = node.Duration(-1) // every INVITE looks up the overlay
			c.Proxy.NegativeTTL = node.Duration(-1)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer nw.Close()
	waitDHTRefresh(nw, 10)
	cached, cold := nw.Node(0), nw.Node(2)
	if cached.Config().Domain != "a.example" || cold.Config().Domain != "a.example" {
		b.Fatalf("nodes 0 and 2 must be a.example front-ends")
	}
	bNode := nw.Node(domainNodes(nw, "b.example")[0])

	if err := bNode.Location().Publish(context.Background(), aor, lsp.Binding{Contact: contact, Expires: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	// What an overlay lookup adds to a call: the proxy's own lookup, timed.
	look := &stats{name: "lookup"}
	for i := 0; i < 300; i++ {
		t0 := time.Now()
		bs, err := cold.Location().Lookup(context.Background(), aor)
		if err != nil || len(bs) != 1 {
			look.errs++
			continue
		}
		look.seq = append(look.seq, time.Since(t0))
	}
	idle0, err := selfCPU()
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	idle1, _ := selfCPU()
	stop := cpuProfile(b, os.Getenv("LSNODE_BENCH_CPUPROFILE")) // the testnet's runs alone
	// LSNODE_BENCH_HEAPPROFILE: heap profiles before and after the
	// fixed-rate runs (their difference is what the calls allocated).
	heap := os.Getenv("LSNODE_BENCH_HEAPPROFILE")
	if heap != "" {
		writeHeap(b, heap+".before")
	}
	// The runtime's own view of those runs: how long a runnable goroutine
	// (each SIP message is one, in sipgo) waited for a core.
	rs := takeRunStats()
	dCached, bCached, oCached, resCached := allocPerCall(b, gen(cached.SIPAddr()), cpuRate, hold)
	rsCached := takeRunStats()
	dCold, bCold, oCold2, resCold := allocPerCall(b, gen(cold.SIPAddr()), cpuRate, hold)
	rsCold := takeRunStats().since(rsCached)
	if heap != "" {
		writeHeap(b, heap+".after")
	}
	rCached, rCold, oCold := 0, 0, "-"
	if !cpuOnly {
		rCached, atCached = maxRate(b, gen(cached.SIPAddr()), hold)
		rCold, atCold = maxRate(b, gen(cold.SIPAddr()), hold)
		oCold = callOverload(b, gen(cold.SIPAddr()), rCold)
	}
	stop()
	stCached, stCold := cached.Proxy().Stats(), cold.Proxy().Stats()
	ratio := func(a, k int) float64 { return float64(a) / float64(max(k, 1)) }
	cpuRatio := "-"
	if kamPerCall > 0 {
		cpuRatio = fmt.Sprintf("%.2fx", float64(dCold)/float64(kamPerCall))
	}
	b.ReportMetric(float64(rCached), "lsnode-cached-calls/s")
	b.ReportMetric(float64(rCold), "lsnode-cold-calls/s")
	b.ReportMetric(float64(rKam), "kamailio-calls/s")
	fmt.Printf("\nlsnode call bench: sustained %v with 0 failed calls through an a.example proxy, callee in b.example, 10-node testnet | "+
		"cached lookup: %d/s (%.2fx Kamailio, %s) | cold lookup per INVITE: %d/s (%.2fx, %s) | Kamailio lookup(location)+t_relay: %d/s (%s) | "+
		"at 2x load, calls completed: cold %s, Kamailio %s | "+
		"server CPU per call at %d/s: cached %s, cold %s (%s Kamailio's), Kamailio %s; the idle testnet uses %.0f%% of a core, not subtracted; allocated per call: cached %.1f KB in %.0f objects, cold %.1f KB in %.0f; the testnet's process: cached %s, %s; cold %s, %s | "+
		"overlay lookup adds p50 %s p99 %s (%d errors of %d) | proxy stats cached %+v cold lookups %d, INVITEs shed on the reader %d, requests held for their ACK %d (sent on without it %d)\n",
		hold, rCached, ratio(rCached, rKam), genCPU(atCached, procs), rCold, ratio(rCold, rKam), genCPU(atCold, procs), rKam, genCPU(atKam, procs), oCold, oKam,
		cpuRate, perCall(dCached, resCached), perCall(dCold, resCold), cpuRatio, cpuKam, 100*(idle1-idle0)/5, bCached/1e3, oCached, bCold/1e3, oCold2, rsCached.since(rs), acks(resCached), rsCold, acks(resCold),
		ms(look.p(0.5)), ms(look.p(0.99)), look.errs, len(look.seq)+look.errs, stCached, stCold.Lookups, stCold.ReaderShed, stCold.AckHeld, stCold.AckLate)
}

// genCPU is what the generator used at a maximum (the callers' CPU
// together and the busiest one's, in shares of a core; the UAS's) and what
// the UAS saw of its calls' ACKs; "-" without a maximum.
func genCPU(r sippResult, procs int) string {
	if r.calls == 0 {
		return "-"
	}
	return fmt.Sprintf("%d sipp callers %.0f%% CPU together, busiest %.0f%%, UAS %.0f%%; %s; %s",
		procs, 100*r.cpu, 100*r.cpuMax, 100*r.peer.cpu, acks(r), r.droppedText(true))
}

// acks is what the UAS saw of a run's ACKs.
func acks(r sippResult) string {
	return fmt.Sprintf("the UAS got %d BYEs before their ACK, %d calls never ACKed", r.peer.byeFirst, r.peer.noAck)
}

// callOverload is overload's goodput (calls completed a second while
// twice max are offered, over max) and recovery, for the summary.
func callOverload(b *testing.B, g sippGen, max int) string {
	if max == 0 {
		return "-"
	}
	goodput, recovery := overload(b, g, max)
	rec := "never in 10s"
	if recovery >= 0 {
		rec = recovery.String()
	}
	return fmt.Sprintf("%.0f%% of max (recovery %s)", 100*goodput, rec)
}
