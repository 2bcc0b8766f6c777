package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/relay"
)

// TestSourceGroup: a source counts against its IPv4 /24 or IPv6 /64.
func TestSourceGroup(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.2:5060":          "127.0.0.0/24",
		"203.0.113.77:1":          "203.0.113.0/24",
		"[::ffff:203.0.113.77]:1": "203.0.113.0/24",
		"[2001:db8:1:2:3::4]:5":   "2001:db8:1::/56",
		"garbage":                 "garbage",
	} {
		if got := sourceGroup(in); got != want {
			t.Errorf("sourceGroup(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAttackMediaQuotaPerNetwork: unauthenticated INVITEs from several
// addresses of one /24 (one host, or spoofed over UDP) hold at most
// maxAnchoredPerSource relay sessions together; a caller from another
// network is still anchored. Counted per address, three addresses held
// three shares (four took a default relay's 250 sessions).
func TestAttackMediaQuotaPerNetwork(t *testing.T) {
	tp, media := alwaysAnchoring(t, 43000, 43999, 0, func(c *Config) {
		c.TrustedNetworks = []*net.IPNet{{IP: net.IPv4(192, 0, 2, 0), Mask: net.CIDRMask(24, 32)}} // loopback is not trusted
	})
	callee := newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + callee.addr(), Received: callee.addr(), Expires: time.Now().Add(time.Hour)})
	sdp := "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
	invite := func(u *ua, id string) bool {
		t.Helper()
		msg := withBody(u.request("INVITE", "sip:alice@a.example", "Call-ID: "+id), sdp)
		u.send(tp.addr, msg)
		for {
			m := callee.recv(3 * time.Second)
			if inv, ok := m.(*sip.Request); ok && inv.CallID().Value() == id {
				return streamPorts(inv.Body())["audio"] != 5004
			}
		}
	}
	from := func(ip net.IP) *ua {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &ua{t: t, conn: c}
	}
	anchored := 0
	for src := 2; src <= 4; src++ {
		u := from(net.IPv4(127, 0, 0, byte(src)))
		for i := 0; i < maxAnchoredPerSource; i++ {
			if invite(u, fmt.Sprintf("flood-%d-%d", src, i)) {
				anchored++
			}
		}
	}
	if anchored != maxAnchoredPerSource || media.Sessions() != maxAnchoredPerSource {
		t.Fatalf("three addresses of 127.0.0.0/24: %d calls anchored, %d relay sessions, want %d", anchored, media.Sessions(), maxAnchoredPerSource)
	}
	if !invite(from(net.IPv4(127, 0, 1, 2)), "other-network") {
		t.Fatal("a caller from another network is not anchored")
	}
}

// slowAnchor is a relay whose Offer takes a round trip (relay.Remote, an
// overlay member's relay over the control protocol).
type slowAnchor struct {
	*relay.Media
	d time.Duration
}

func (s slowAnchor) Offer(ctx context.Context, id string, ip net.IP, port int) (string, int, error) {
	time.Sleep(s.d)
	return s.Media.Offer(ctx, id, ip, port)
}

// slowAnchoring starts a proxy anchoring every call on a relay of ports
// lo..lo+999 whose offers take 100 ms (slowAnchor), with alice registered
// at the returned callee.
func slowAnchoring(t *testing.T, lo int) (*testProxy, *relay.Media, *ua) {
	t.Helper()
	media, err := relay.NewMedia(relay.MediaConfig{IP: "127.0.0.1", MinPort: lo, MaxPort: lo + 999,
		Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}}, AllowSelf: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	tp := startProxy(t, Proxying, func(c *Config) {
		c.Media, c.MediaPolicy = slowAnchor{media, 100 * time.Millisecond}, "always"
		c.TrustedNetworks = []*net.IPNet{{IP: net.IPv4(192, 0, 2, 0), Mask: net.CIDRMask(24, 32)}} // loopback is not trusted
	})
	callee := newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example",
		lsp.Binding{Contact: "sip:alice@" + callee.addr(), Received: callee.addr(), Expires: time.Now().Add(time.Hour)})
	return tp, media, callee
}

// TestAttackMediaQuotaInFlight: INVITEs from one address in flight
// together, on a relay a round trip away, hold no more than the share
// together: it is taken before the offer, not counted after it (48 of 48
// sessions were made when each saw 16 free).
func TestAttackMediaQuotaInFlight(t *testing.T) {
	tp, media, callee := slowAnchoring(t, 44000)
	sdp := "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n"
	u := newUA(t)
	const n = 48
	for i := range n {
		msg := withBody(u.request("INVITE", "sip:alice@a.example", fmt.Sprintf("Call-ID: race-%d", i)), sdp)
		u.send(tp.addr, msg)
	}
	anchored := 0
	for seen := map[string]bool{}; len(seen) < n; {
		if inv, ok := callee.recv(5 * time.Second).(*sip.Request); ok && inv.Method == sip.INVITE && !seen[inv.CallID().Value()] {
			seen[inv.CallID().Value()] = true
			if streamPorts(inv.Body())["audio"] != 5004 {
				anchored++
			}
		}
	}
	if s := media.Sessions(); s != maxAnchoredPerSource || anchored != maxAnchoredPerSource {
		t.Fatalf("%d INVITEs in flight from one address: %d anchored, %d relay sessions, want %d", n, anchored, s, maxAnchoredPerSource)
	}
}

// TestMediaQuotaReservesActiveStreams: an offer reserves the share of the
// streams it may anchor (active, at its first stream's address), not of
// every m= line: sixteen calls in flight from one network, each with one
// audio stream and three declined ones, are all anchored (each reserved
// four of the sixteen: four were).
func TestMediaQuotaReservesActiveStreams(t *testing.T) {
	tp, _, callee := slowAnchoring(t, 45000)
	sdp := "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n" +
		"m=video 0 RTP/AVP 96\r\nm=text 0 RTP/AVP 98\r\nm=audio 0 RTP/AVP 0\r\n"
	u := newUA(t)
	for i := range maxAnchoredPerSource {
		msg := withBody(u.request("INVITE", "sip:alice@a.example", fmt.Sprintf("Call-ID: one-of-four-%d", i)), sdp)
		u.send(tp.addr, msg)
	}
	anchored := 0
	for seen := map[string]bool{}; len(seen) < maxAnchoredPerSource; {
		if inv, ok := callee.recv(5 * time.Second).(*sip.Request); ok && inv.Method == sip.INVITE && !seen[inv.CallID().Value()] {
			seen[inv.CallID().Value()] = true
			if !strings.Contains(string(inv.Body()), "m=audio 5004 ") {
				anchored++
			}
		}
	}
	if anchored != maxAnchoredPerSource {
		t.Fatalf("%d of %d one-stream calls (three m= lines declined) in flight from one network anchored", anchored, maxAnchoredPerSource)
	}
}
