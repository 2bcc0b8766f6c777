package relay

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

// BenchmarkMediaRelay measures the RTP relay: the round trip of a 160-byte
// packet through a session (A → relay → B, B echoes, → relay → A) against
// the same round trip direct, and the forwarding rate of a one-way burst
// (160-byte packets, sent as fast as one socket can for 2 s) with its loss.
func BenchmarkMediaRelay(b *testing.B) {
	m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 43000, MaxPort: 43099, Allow: loopback(), AllowSelf: true, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s, err := m.Session("bench")
	if err != nil {
		b.Fatal(err)
	}
	a, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	c, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer a.Close()
	defer c.Close()
	setBuffers(a)
	setBuffers(c)
	ap, cp := a.LocalAddr().(*net.UDPAddr), c.LocalAddr().(*net.UDPAddr)
	if err := s.SetParty(0, ap.IP, ap.Port); err != nil {
		b.Fatal(err)
	}
	if err := s.SetParty(1, cp.IP, cp.Port); err != nil {
		b.Fatal(err)
	}
	toRelayA := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port(0)} // where A sends
	toRelayC := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port(1)} // where C sends
	// C echoes everything back to whoever sent it.
	stopEcho := make(chan struct{})
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			select {
			case <-stopEcho:
				continue
			default:
			}
			if from.Port == s.Port(1) {
				_, _ = c.WriteToUDP(buf[:n], toRelayC)
			} else {
				_, _ = c.WriteToUDP(buf[:n], from)
			}
		}
	}()
	pkt := make([]byte, 160)
	rtt := func(dst *net.UDPAddr, n int) []time.Duration {
		var out []time.Duration
		buf := make([]byte, 1500)
		for i := 0; i < n; i++ {
			t0 := time.Now()
			_, _ = a.WriteToUDP(pkt, dst)
			_ = a.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := a.ReadFromUDP(buf); err != nil {
				continue
			}
			out = append(out, time.Since(t0))
		}
		slices.Sort(out)
		return out
	}
	const samples = 2000
	direct := rtt(cp, samples)
	relayed := rtt(toRelayA, samples)
	if len(direct) < samples/2 || len(relayed) < samples/2 {
		b.Fatalf("round trips answered: direct %d, relayed %d of %d", len(direct), len(relayed), samples)
	}
	pct := func(d []time.Duration, q float64) time.Duration { return d[int(q*float64(len(d)-1))] }

	// One-way burst: A → relay → C, counted at C (no echo).
	close(stopEcho)
	time.Sleep(50 * time.Millisecond)
	before := m.Forwarded()
	sent := 0
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		for i := 0; i < 64; i++ {
			if _, err := a.WriteToUDP(pkt, toRelayA); err == nil {
				sent++
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	fwd := m.Forwarded() - before
	b.ReportMetric(float64(fwd)/2, "pkt/s")
	fmt.Printf("\nlsnode media bench: 160-byte RTP through one relay session | round trip direct p50 %s p99 %s, relayed p50 %s p99 %s "+
		"(adds p50 %s p99 %s per round trip, two relay hops) | one-way burst: %d sent in 2s, %d forwarded (%.0f pkt/s, loss %.2f%%)\n",
		ms(pct(direct, 0.5)), ms(pct(direct, 0.99)), ms(pct(relayed, 0.5)), ms(pct(relayed, 0.99)),
		ms(pct(relayed, 0.5)-pct(direct, 0.5)), ms(pct(relayed, 0.99)-pct(direct, 0.99)),
		sent, fwd, float64(fwd)/2, 100*float64(int64(sent)-fwd)/float64(max(sent, 1)))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/1e6) }
