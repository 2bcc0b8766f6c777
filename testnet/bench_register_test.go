package testnet_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

const benchPassword = "benchpass"

// sippLoad runs a sipp load scenario at rate calls/s for dur and reports
// whether every call succeeded.
func sippLoad(b *testing.B, target, scenario, csv string, port, rate int, dur time.Duration, extra ...string) bool {
	b.Helper()
	calls := int(float64(rate) * dur.Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), dur+40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", target, "-sf", scenario, "-inf", csv, "-r", fmt.Sprint(rate), "-m", fmt.Sprint(calls),
		"-i", "127.0.0.1", "-p", fmt.Sprint(port), "-auth_uri", "a.example", "-buff_size", "4194304",
		"-nostdin", "-timeout", fmt.Sprintf("%ds", int(dur.Seconds())+30), "-trace_err", "-error_file", "errors.log")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Dir = b.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(cmd.Dir, "errors.log"))
		b.Logf("sipp at %d/s for %v against %s failed: %v\n%s\nwhy: %s", rate, dur, target, err, tail(out), failureKinds(errs))
	}
	return err == nil
}

// maxRate probes rising rates for 5 s each, then confirms the best over
// `hold` with zero failed calls (stepping down if the long run fails).
func maxRate(b *testing.B, target, scenario, csv string, port int, hold time.Duration, extra ...string) int {
	rates := []int{250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 16000}
	if v := os.Getenv("LSNODE_BENCH_RATES"); v != "" { // e.g. "3000" or "2000,4000": probe only these
		rates = nil
		for _, f := range strings.Split(v, ",") {
			if r, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && r > 0 {
				rates = append(rates, r)
			}
		}
	}
	best := -1
	for i, r := range rates {
		if !sippLoad(b, target, scenario, csv, port, r, 5*time.Second, extra...) {
			break
		}
		best = i
	}
	for ; best >= 0; best-- {
		if sippLoad(b, target, scenario, csv, port, rates[best], hold, extra...) {
			return rates[best]
		}
	}
	return 0
}

type kamailio struct{ cmd *exec.Cmd }

func startKamailio(b *testing.B, addr string, auth bool) *kamailio {
	return startKamailioWith(b, "registrar.cfg", addr, auth)
}

func startKamailioWith(b *testing.B, cfgName, addr string, auth bool) *kamailio {
	b.Helper()
	cfg, _ := filepath.Abs(filepath.Join("testdata/kamailio", cfgName))
	dir := b.TempDir()
	args := []string{"-f", cfg, "-l", "udp:" + addr, "-A", `PASSWORD="` + benchPassword + `"`, "-DD", "-E",
		"-m", "512", "-M", "64", "-w", dir}
	if auth {
		args = append(args, "-A", "WITH_AUTH")
	}
	cmd := exec.Command("kamailio", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	return &kamailio{cmd: cmd}
}

func (k *kamailio) stop() {
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { k.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// visibleLatency sends REGISTERs for new AORs to a registrar over UDP and
// measures until a node of another domain returns the binding.
func visibleLatency(b *testing.B, nw *testnet.Network, sipAddr string, readerIdx, n int) *stats {
	s := &stats{name: "REGISTER→visible"}
	conn, err := net.Dial("udp", sipAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	reader := nw.Node(readerIdx).Location()
	buf := make([]byte, 65535)
	for i := 0; i < n; i++ {
		aor := fmt.Sprintf("sip:vis%d-%d@a.example", i, time.Now().UnixNano())
		contact := fmt.Sprintf("sip:vis%d@%s", i, local)
		msg := "REGISTER sip:a.example SIP/2.0\r\n" +
			fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bKvis%d%d;rport\r\n", local, i, time.Now().UnixNano()) +
			"Max-Forwards: 70\r\nTo: <" + aor + ">\r\nFrom: <" + aor + ">;tag=v\r\n" +
			fmt.Sprintf("Call-ID: vis-%d-%d\r\nCSeq: 1 REGISTER\r\n", i, time.Now().UnixNano()) +
			"Contact: <" + contact + ">\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
		t0 := time.Now()
		if _, err := conn.Write([]byte(msg)); err != nil {
			b.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		nr, err := conn.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:nr]), "SIP/2.0 200") {
			s.errs++
			continue
		}
		for {
			bs, err := reader.Lookup(context.Background(), aor)
			if err == nil && len(bs) == 1 {
				break
			}
			if time.Since(t0) > 5*time.Second {
				s.errs++
				break
			}
		}
		s.seq = append(s.seq, time.Since(t0))
	}
	return s
}

// BenchmarkRegister measures sustained sipp REGISTER throughput (≥20 s, 0
// failed calls; LSNODE_BENCH_HOLD overrides) against one stateless
// registrar of a 10-node testnet (R=3) and against Kamailio (in-memory
// usrloc) on the same machine in the same run, digest off and on; and the
// REGISTER→visible-from-another-domain latency.
func BenchmarkRegister(b *testing.B) {
	for _, tool := range []string{"sipp", "kamailio"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not installed (Debian: sip-tester, kamailio)", tool)
		}
	}
	hold := time.Duration(envInt("LSNODE_BENCH_HOLD", 20)) * time.Second
	dir := b.TempDir()
	if _, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 10, PerDomain: 2, Overlay: "bench-reg"}); err != nil {
		b.Fatal(err)
	}
	// Bench users: 10000 per realm, one password (Kamailio gets the same).
	usersPath, csvPath := benchUsers(b, dir, 10000)
	log := benchLogger(b)
	nw, err := testnet.Start(context.Background(), dir, testnet.RunOptions{Logger: log, Tweak: func(c *node.Config) {
		fastGossip(c)
		c.Registrar.DigestAlgorithms = []string{"MD5", "SHA-256"} // sipp speaks MD5 only
		switch c.Name {
		case "node0":
			c.Registrar.UsersFile = usersPath
		case "node2":
			c.Registrar.UsersFile, c.Registrar.Open = "", true // digest off
			c.HTTP = ""                                        // (TURN credentials need the users file)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer nw.Close()
	waitDHTRefresh(nw, 10)
	authAddr, openAddr := nw.Node(0).SIPAddr(), nw.Node(2).SIPAddr()
	noauth, _ := filepath.Abs("testdata/sipp/load_register.xml")
	withauth, _ := filepath.Abs("testdata/sipp/load_register_auth.xml")

	vis := visibleLatency(b, nw, openAddr, 1, 300)
	// Every sipp run uses one local port, so a user's Contact is the same in
	// every run: runs refresh one binding per AOR, as real UAs do, instead of
	// piling up a binding per run.
	port := freeUDPPort(b)
	ours := map[bool]int{false: maxRate(b, openAddr, noauth, csvPath, port, hold), true: maxRate(b, authAddr, withauth, csvPath, port, hold)}
	var regs, batches int64
	for _, i := range []int{0, 2} {
		r, bt := nw.Node(i).Location().RegisterStats()
		regs, batches = regs+r, batches+bt
	}
	kam := map[bool]int{}
	for _, auth := range []bool{false, true} {
		if os.Getenv("LSNODE_BENCH_SKIP_KAMAILIO") != "" {
			break
		}
		addr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(b))
		k := startKamailio(b, addr, auth)
		scen := noauth
		if auth {
			scen = withauth
		}
		kam[auth] = maxRate(b, addr, scen, csvPath, port, hold)
		k.stop()
	}
	ratio := func(a, k int) float64 { return float64(a) / float64(max(k, 1)) }
	b.ReportMetric(float64(ours[false]), "lsnode-reg/s")
	b.ReportMetric(float64(kam[false]), "kamailio-reg/s")
	fmt.Printf("\nlsnode register bench: sustained %v with 0 failed calls, 10-node testnet R=3 | "+
		"digest off: lsnode %d/s vs Kamailio %d/s (%.2fx) | digest on: lsnode %d/s vs Kamailio %d/s (%.2fx) | "+
		"REGISTER->visible from b.example p50 %s p99 %s (%d errors of %d) | %d registrations in %d batches\n",
		hold, ours[false], kam[false], ratio(ours[false], kam[false]), ours[true], kam[true], ratio(ours[true], kam[true]),
		ms(vis.p(0.5)), ms(vis.p(0.99)), vis.errs, len(vis.seq)+vis.errs, regs, batches)
}

// failureKinds summarises a sipp error file: unexpected responses by status
// line, and other events by their first words.
func failureKinds(errs []byte) string {
	counts := map[string]int{}
	for _, line := range strings.Split(string(errs), "\n") {
		switch {
		case strings.Contains(line, "Dead call"):
			continue // late answers to calls already counted
		case strings.Contains(line, "Aborting call"), strings.Contains(line, "timeout"), strings.Contains(line, "Timeout"):
			if i := strings.Index(line, "received '"); i >= 0 {
				counts[strings.SplitN(line[i+10:], "\r", 2)[0]]++
			} else {
				counts[line[min(len(line), strings.LastIndex(line, ": ")+2):]]++
			}
		}
	}
	return fmt.Sprint(counts)
}

// benchLogger discards node logs unless LSNODE_BENCH_LOG names a file for
// every node's warnings (for diagnosis).
func benchLogger(b *testing.B) *slog.Logger {
	path := os.Getenv("LSNODE_BENCH_LOG")
	if path == "" {
		return quiet()
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
