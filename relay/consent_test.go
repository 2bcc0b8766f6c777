package relay

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// TestAttackMediaReflect: an INVITE (any SIP sender's) whose SDP names a
// victim's address, answered by the attacker's callee, which then streams
// at the relay: the victim, which never sent a packet, gets at most
// unheardBudget of them, not the stream. Once it sends one (a real party
// does), it gets everything.
func TestAttackMediaReflect(t *testing.T) {
	victim, attacker := udpOn(t, "127.0.0.1"), udpOn(t, "127.0.0.1")
	m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 43600, MaxPort: 43699, Allow: loopback(), AllowSelf: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	va, aa := victim.LocalAddr().(*net.UDPAddr), attacker.LocalAddr().(*net.UDPAddr)
	_, calleeSendsTo, err := m.Offer(ctx, "c1|t", va.IP, va.Port) // the "caller" receives at the victim; the callee sends here
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Answer(ctx, "c1|t", aa.IP, aa.Port); err != nil {
		t.Fatal(err)
	}
	relayed := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: calleeSendsTo}
	stream := func(n int) {
		pkt := make([]byte, 172)
		pkt[0] = 0x80
		for i := 0; i < n; i++ {
			binary.BigEndian.PutUint16(pkt[2:], uint16(i))
			_, _ = attacker.WriteToUDP(pkt, relayed)
		}
	}
	stream(200)
	if got := countIn(victim); got > unheardBudget || got == 0 {
		t.Fatalf("the victim, which never sent a packet, received %d of 200 relayed packets, want 1 to %d", got, unheardBudget)
	}
	// The victim sends (it is a party after all): now it gets the stream.
	_, callerSendsTo, _ := m.Answer(ctx, "c1|t", aa.IP, aa.Port)
	_, _ = victim.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: callerSendsTo})
	time.Sleep(100 * time.Millisecond)
	stream(50)
	if got := countIn(victim); got < 45 {
		t.Fatalf("a party that has sent received %d of 50 packets", got)
	}
}

func countIn(c *net.UDPConn) int {
	got, buf := 0, make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			return got
		}
		got++
	}
}

// TestAttackMediaConsentPerSocket: the attacker's callee answers with its
// own address (a 183), latches only the RTCP socket with one packet, then
// answers again (the 200) naming a victim: the RTP socket, which no
// packet of the party's latched, still sends the victim at most
// unheardBudget packets (consent was per leg: 200 of 200).
func TestAttackMediaConsentPerSocket(t *testing.T) {
	caller, callee, victim := udpOn(t, "127.0.0.2"), udpOn(t, "127.0.0.2"), udpOn(t, "127.0.0.3")
	m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 43700, MaxPort: 43799, Allow: loopback(), AllowSelf: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	ca, ce, va := caller.LocalAddr().(*net.UDPAddr), callee.LocalAddr().(*net.UDPAddr), victim.LocalAddr().(*net.UDPAddr)
	_, calleeSendsTo, err := m.Offer(ctx, "c|t", ca.IP, ca.Port)
	if err != nil {
		t.Fatal(err)
	}
	_, callerSendsTo, err := m.Answer(ctx, "c|t", ce.IP, ce.Port)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = callee.WriteToUDP([]byte("rtcp"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: calleeSendsTo + 1})
	time.Sleep(50 * time.Millisecond)
	if _, _, err := m.Answer(ctx, "c|t", va.IP, va.Port); err != nil {
		t.Fatal(err)
	}
	pkt := make([]byte, 172)
	for i := 0; i < 200; i++ {
		_, _ = caller.WriteToUDP(pkt, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: callerSendsTo})
	}
	if got := countIn(victim); got > unheardBudget {
		t.Fatalf("the victim, which never sent a packet, received %d of 200, budget %d", got, unheardBudget)
	}
}

// TestUnheardBudgetSaturates: the count of packets sent before a socket
// latched stops at the budget; it does not wrap after 2^31 drops.
func TestUnheardBudgetSaturates(t *testing.T) {
	var l leg
	l.unheard[0].Store(unheardBudget - 1)
	if !l.spend(0) || l.spend(0) {
		t.Fatal("the last packet of the budget, then none")
	}
	for range 1000 {
		l.spend(0)
	}
	if n := l.unheard[0].Load(); n != unheardBudget {
		t.Fatalf("count %d after the budget ran out, want it held at %d", n, unheardBudget)
	}
}

// TestMediaRecvonlyParty: a party that never sends RTP (a recvonly
// recorder, a paging speaker) but sends RTCP from its SDP's address has
// consented: it gets the whole stream, not unheardBudget packets.
func TestMediaRecvonlyParty(t *testing.T) {
	caller := udpOn(t, "127.0.0.2")
	cRTP, cRTCP := pairOn(t, "127.0.0.3")
	m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 43800, MaxPort: 43899, Allow: loopback(), AllowSelf: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	ca := caller.LocalAddr().(*net.UDPAddr)
	_, calleeSendsTo, err := m.Offer(ctx, "r|t", ca.IP, ca.Port)
	if err != nil {
		t.Fatal(err)
	}
	_, callerSendsTo, err := m.Answer(ctx, "r|t", net.ParseIP("127.0.0.3"), portOf(cRTP))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = cRTCP.WriteToUDP([]byte("rtcp-rr"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: calleeSendsTo + 1})
	time.Sleep(50 * time.Millisecond)
	pkt := make([]byte, 172)
	for i := range 200 {
		_, _ = caller.WriteToUDP(pkt, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: callerSendsTo})
		if i%20 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if got := countIn(cRTP); got < 150 {
		t.Fatalf("a recvonly party that sends RTCP from its SDP's address got %d of 200 RTP packets", got)
	}
}

// pairOn binds an RTP socket on ip and its RTCP one at the next port.
func pairOn(t *testing.T, ip string) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	for range 50 {
		rtp := udpOn(t, ip)
		if rtcp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: portOf(rtp) + 1}); err == nil {
			t.Cleanup(func() { rtcp.Close() })
			return rtp, rtcp
		}
	}
	t.Fatalf("no RTP/RTCP port pair free on %s", ip)
	return nil, nil
}
