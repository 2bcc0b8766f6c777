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
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	attacker, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
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
	count := func() int {
		got, buf := 0, make([]byte, 1500)
		for {
			_ = victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := victim.ReadFromUDP(buf); err != nil {
				return got
			}
			got++
		}
	}
	stream(200)
	if got := count(); got > unheardBudget || got == 0 {
		t.Fatalf("the victim, which never sent a packet, received %d of 200 relayed packets, want 1 to %d", got, unheardBudget)
	}
	// The victim sends (it is a party after all): now it gets the stream.
	_, callerSendsTo, _ := m.Answer(ctx, "c1|t", aa.IP, aa.Port)
	_, _ = victim.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: callerSendsTo})
	time.Sleep(100 * time.Millisecond)
	stream(50)
	if got := count(); got < 45 {
		t.Fatalf("a party that has sent received %d of 50 packets", got)
	}
}
