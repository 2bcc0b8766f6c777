package relay

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// turnLoad is one turnutils_uclient run: clients allocations, n messages
// of size bytes each, one every interval ms per client.
type turnLoad struct {
	pps  float64 // messages received back through the relay per second
	sent int
	recv int
	loss float64 // % lost
	dur  time.Duration
	err  error
	out  string
}

func runLoad(b *testing.B, turnPort, peerPort, clients, n, size, interval int, user, pass string) turnLoad {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "turnutils_uclient", "-u", user, "-w", pass, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
		"-p", strconv.Itoa(turnPort), "-m", strconv.Itoa(clients), "-n", strconv.Itoa(n), "-l", strconv.Itoa(size),
		"-z", strconv.Itoa(interval), "-c", "127.0.0.1")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	l := turnLoad{dur: time.Since(t0), err: err, out: string(out)}
	get := func(re string) string {
		m := regexpFind(re, l.out)
		return m
	}
	l.sent, _ = strconv.Atoi(get(`tot_send_msgs=(\d+), tot_recv`))
	l.recv, _ = strconv.Atoi(get(`tot_recv_msgs=(\d+)\n`))
	l.loss, _ = strconv.ParseFloat(get(`Total lost packets \d+ \(([0-9.]+)%\)`), 64)
	// uclient reports its transmit time in whole seconds: the rate is as
	// coarse as that (the loss figure is exact).
	if secs, err := strconv.Atoi(get(`Total transmit time is (\d+)`)); err == nil && secs > 0 {
		l.pps = float64(l.recv) / float64(secs)
	}
	return l
}

// startCoturn runs coturn's turnserver with the same REST secret and realm.
func startCoturn(b *testing.B, port int, secret string) func() {
	b.Helper()
	dir := b.TempDir()
	cmd := exec.Command("turnserver", "-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
		"--listening-port", strconv.Itoa(port), "--use-auth-secret", "--static-auth-secret", secret, "--realm", "a.example",
		"--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--no-stdout-log",
		"--log-file", filepath.Join(dir, "turn.log"), "--total-quota", "1000", "--user-quota", "1000",
		"--pidfile", filepath.Join(dir, "turn.pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// BenchmarkTURN relays UDP through our TURN server and through coturn's
// turnserver (same client, same peer, same machine, same run): 100
// concurrent allocations (LSNODE_BENCH_TURN_CLIENTS), 2000 messages each
// (LSNODE_BENCH_TURN_MSGS) one per ms (LSNODE_BENCH_TURN_INTERVAL_MS),
// 160- and 1200-byte payloads. One-line summary.
func BenchmarkTURN(b *testing.B) {
	for _, tool := range []string{"turnutils_uclient", "turnutils_peer", "turnserver"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not installed (Debian package coturn)", tool)
		}
	}
	secret := "lsnode-bench-turn-secret"
	clients := envInt("LSNODE_BENCH_TURN_CLIENTS", 100)
	n := envInt("LSNODE_BENCH_TURN_MSGS", 2000)
	interval := envInt("LSNODE_BENCH_TURN_INTERVAL_MS", 1)
	s, err := New(Config{Addr: "127.0.0.1:0", Realm: "a.example", Secret: []byte(secret), Logger: quiet(),
		Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}}, AllowSelf: true, MaxAllocations: 1000, MaxPerUser: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	_, p, _ := net.SplitHostPort(s.Addr())
	ours, _ := strconv.Atoi(p)
	peerPort, coturnPort := freePort(b), freePort(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peer := exec.CommandContext(ctx, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	if err := peer.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = peer.Wait() }()
	stop := startCoturn(b, coturnPort, secret)
	defer stop()
	user, pass := s.Credentials("bench", time.Hour)
	var line []string
	for _, size := range []int{160, 1200} {
		o := runLoad(b, ours, peerPort, clients, n, size, interval, user, pass)
		c := runLoad(b, coturnPort, peerPort, clients, n, size, interval, user, pass)
		for name, l := range map[string]turnLoad{"lsnode": o, "coturn": c} {
			if l.err != nil || l.recv <= 0 {
				b.Logf("%s %dB: %v\n%s", name, size, l.err, tail(l.out))
			}
		}
		line = append(line, fmt.Sprintf("%dB: lsnode %.0f msg/s loss %.2f%% (%d/%d) vs coturn %.0f msg/s loss %.2f%% (%d/%d) = %.2fx",
			size, o.pps, o.loss, o.recv, o.sent, c.pps, c.loss, c.recv, c.sent, o.pps/max(c.pps, 1)))
		b.ReportMetric(o.pps, fmt.Sprintf("lsnode-%dB-msg/s", size))
		b.ReportMetric(c.pps, fmt.Sprintf("coturn-%dB-msg/s", size))
	}
	fmt.Printf("\nlsnode turn bench: %d allocations x %d messages every %d ms, echoed by turnutils_peer | %s\n",
		clients, n, interval, strings.Join(line, " | "))
}

func freePort(b *testing.B) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-6):], "\n")
}

func regexpFind(re, s string) string {
	m := regexp.MustCompile(re).FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}
