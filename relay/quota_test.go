package relay

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v3"
)

// turnClient is pion's TURN client on a fresh local port, over UDP or TCP.
func turnClient(t *testing.T, s *Server, network, user, pass string) *turn.Client {
	t.Helper()
	var conn net.PacketConn
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	case "tcp":
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	}
	quietLog := logging.NewDefaultLoggerFactory()
	quietLog.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: s.Addr(), TURNServerAddr: s.Addr(), Username: user, Password: pass,
		Realm: "a.example", Conn: conn, RTO: 100 * time.Millisecond, LoggerFactory: quietLog})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// TestTURNQuotaAfterIntegrity: allocate attempts with alice's username
// and a wrong password, from more source ports (UDP and TCP) than her
// quota, are refused and charge nothing: alice then allocates up to her
// quota, and one more is refused.
func TestTURNQuotaAfterIntegrity(t *testing.T) {
	s := startTURN(t, loopback(), func(c *Config) { c.MaxPerUser = 2 })
	user, pass := s.Credentials("alice", time.Hour)
	for i := 0; i < 6; i++ {
		network := []string{"udp", "tcp"}[i%2]
		c := turnClient(t, s, network, user, "bm9wZQ==")
		if relayed, err := c.Allocate(); err == nil {
			relayed.Close()
			t.Fatalf("%s attempt %d with a wrong password allocated", network, i)
		}
	}
	if s.BadIntegrity() < 6 {
		t.Fatalf("%d requests failed integrity, want at least 6", s.BadIntegrity())
	}
	for i, network := range []string{"udp", "tcp"} {
		relayed, err := turnClient(t, s, network, user, pass).Allocate()
		if err != nil {
			t.Fatalf("alice's allocation %d over %s after the wrong passwords: %v", i+1, network, err)
		}
		defer relayed.Close()
	}
	if relayed, err := turnClient(t, s, "udp", user, pass).Allocate(); err == nil {
		relayed.Close()
		t.Fatal("a third allocation within alice's quota of 2")
	} else if errors.Is(err, net.ErrClosed) {
		t.Fatalf("refused for another reason: %v", err)
	}
	if n := s.Allocations(); n != 2 {
		t.Fatalf("%d allocations live, want 2", n)
	}
}
