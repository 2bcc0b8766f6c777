package relay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func loopback() []*net.IPNet {
	return []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}}
}

func startTURN(t *testing.T, allow []*net.IPNet, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Realm: "a.example", Secret: []byte("0123456789abcdef-turn"), Allow: allow, AllowSelf: true, Logger: quiet()}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// echoPeer runs coturn's turnutils_peer, a UDP echo server, on a free port.
func echoPeer(t *testing.T) int {
	t.Helper()
	need(t, "turnutils_peer")
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	time.Sleep(200 * time.Millisecond)
	return port
}

func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Fatalf("%s not installed (Debian package coturn; scripts/deps test installs it)", tool)
	}
}

type uclientResult struct {
	sent, received, lost int
	out                  string
	err                  error
}

var (
	reSent = regexp.MustCompile(`tot_send_msgs=(\d+)`)
	reRecv = regexp.MustCompile(`tot_recv_msgs=(\d+)`)
	reLost = regexp.MustCompile(`Total lost packets (\d+)`)
)

// uclient runs coturn's turnutils_uclient against s: clients allocations,
// n messages of size bytes each to the peer through the relay.
func uclient(t *testing.T, s *Server, user, pass string, peerPort, clients, n, size int) uclientResult {
	t.Helper()
	need(t, "turnutils_uclient")
	_, port, _ := net.SplitHostPort(s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "turnutils_uclient", "-u", user, "-w", pass, "-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
		"-p", port, "-m", strconv.Itoa(clients), "-n", strconv.Itoa(n), "-l", strconv.Itoa(size), "-c", "-z", "5", "127.0.0.1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := uclientResult{out: out.String(), err: err}
	atoi := func(re *regexp.Regexp) int {
		m := re.FindAllStringSubmatch(r.out, -1)
		if len(m) == 0 {
			return -1
		}
		v, _ := strconv.Atoi(m[len(m)-1][1])
		return v
	}
	r.sent, r.received, r.lost = atoi(reSent), atoi(reRecv), atoi(reLost)
	return r
}

func TestTURNWithCoturnClient(t *testing.T) {
	s := startTURN(t, loopback(), nil)
	pp := echoPeer(t)
	user, pass := s.Credentials("alice", time.Hour)
	r := uclient(t, s, user, pass, pp, 2, 20, 160)
	if r.err != nil || r.sent != 40 || r.received != r.sent || r.lost != 0 {
		t.Fatalf("uclient: err %v, sent %d, received %d, lost %d\n%s", r.err, r.sent, r.received, r.lost, r.out)
	}

	bad := []struct{ name, user, pass string }{
		{"wrong password", user, "bm9wZQ=="},
		{"expired", func() string { u, _ := s.Credentials("alice", -time.Minute); return u }(), ""},
		{"not a REST username", "alice", pass},
	}
	bad[1].pass = restPassword(s.cfg.Secret, bad[1].user) // valid signature, past expiry
	for _, b := range bad {
		r := uclient(t, s, b.user, b.pass, pp, 1, 5, 160)
		if r.err == nil || r.received > 0 {
			t.Errorf("%s: uclient %v, %d messages relayed\n%s", b.name, r.err, r.received, r.out)
		}
	}
	if n := s.Allocations(); n > 2 {
		t.Errorf("%d allocations live after refused clients", n)
	}
}

// TestTURNPeerPolicy: by default a permission to a loopback peer is refused
// (and counted); the testnet's explicit allowance admits it.
func TestTURNPeerPolicy(t *testing.T) {
	pp := echoPeer(t)
	s := startTURN(t, nil, nil)
	user, pass := s.Credentials("alice", time.Hour)
	r := uclient(t, s, user, pass, pp, 1, 5, 160)
	if r.err == nil || r.received > 0 || s.Denied() == 0 {
		t.Fatalf("default policy relayed %d messages to 127.0.0.1 (denied %d)", r.received, s.Denied())
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
		"224.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "fc00::1", "fe80::1"} {
		if !Restricted(net.ParseIP(ip)) {
			t.Errorf("%s is not restricted", ip)
		}
	}
	for _, ip := range []string{"192.0.2.1", "8.8.8.8", "2001:db8::1"} {
		if Restricted(net.ParseIP(ip)) {
			t.Errorf("%s is restricted", ip)
		}
	}
}

// TestTURNQuota: a user's client allocations count against MaxPerUser
// while they live (two uclient clients hold four); one more is refused,
// another user is not.
func TestTURNQuota(t *testing.T) {
	pp := echoPeer(t)
	s := startTURN(t, loopback(), func(c *Config) { c.MaxPerUser = 4 })
	user, pass := s.Credentials("alice", time.Hour)
	if r := uclient(t, s, user, pass, pp, 2, 5, 160); r.err != nil || r.received != 10 {
		t.Fatalf("two allocations within a quota of 2: %v, %d received\n%s", r.err, r.received, r.out)
	}
	if r := uclient(t, s, user, pass, pp, 1, 5, 160); r.err == nil || r.received > 0 {
		t.Fatalf("a third allocation of the same user: %v, %d received", r.err, r.received)
	}
	bobUser, bobPass := s.Credentials("bob", time.Hour)
	if r := uclient(t, s, bobUser, bobPass, pp, 1, 5, 160); r.err != nil || r.received != 5 {
		t.Fatalf("another user: %v, %d received\n%s", r.err, r.received, r.out)
	}
}

// TestTURNOverTLS: coturn's client allocates over TLS (-S) and relays.
func TestTURNOverTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.a.example"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	s := startTURN(t, loopback(), func(c *Config) {
		c.TLSAddr = "127.0.0.1:0"
		c.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	})
	pp := echoPeer(t)
	user, pass := s.Credentials("alice", time.Hour)
	_, port, _ := net.SplitHostPort(s.TLSAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "turnutils_uclient", "-S", "-t", "-u", user, "-w", pass, "-e", "127.0.0.1",
		"-r", strconv.Itoa(pp), "-p", port, "-n", "10", "-l", "160", "-c", "-z", "5", "127.0.0.1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tot_send_msgs=10, tot_recv_msgs=10") {
		t.Fatalf("uclient over TLS: %v\n%s", err, out)
	}
}
