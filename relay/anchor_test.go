package relay

import (
	"net"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
)

func controlRequest(op int, callID, ip string, port int) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(op))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, callID)
	if ip != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, ip)
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(port))
	}
	return b
}

func TestDecodeControl(t *testing.T) {
	if op, id, ip, port, err := decodeControl(controlRequest(opOffer, "c1", "192.0.2.1", 4000)); err != nil ||
		op != opOffer || id != "c1" || ip.String() != "192.0.2.1" || port != 4000 {
		t.Fatalf("offer: %d %q %v %d %v", op, id, ip, port, err)
	}
	if _, _, _, _, err := decodeControl(controlRequest(opEnd, "c1", "", 0)); err != nil {
		t.Fatalf("end without an address: %v", err)
	}
	for name, b := range map[string][]byte{
		"unknown op":        controlRequest(9, "c1", "192.0.2.1", 4000),
		"no call id":        controlRequest(opOffer, "", "192.0.2.1", 4000),
		"offer without ip":  controlRequest(opOffer, "c1", "", 0),
		"bad ip":            controlRequest(opAnswer, "c1", "host", 4000),
		"port out of range": controlRequest(opOffer, "c1", "192.0.2.1", 70000),
		"truncated":         controlRequest(opOffer, "c1", "192.0.2.1", 4000)[:5],
	} {
		if _, _, _, _, err := decodeControl(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeControl: the media control decoder never panics and accepts
// only complete requests.
func FuzzDecodeControl(f *testing.F) {
	f.Add(controlRequest(opOffer, "c1", "192.0.2.1", 4000))
	f.Add(controlRequest(opEnd, "c1", "", 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		op, id, ip, port, err := decodeControl(b)
		if err != nil {
			return
		}
		if op < opOffer || op > opEnd || id == "" || op != opEnd && (ip == nil || port <= 0 || port > 65535) {
			t.Fatalf("accepted %d %q %v %d", op, id, ip, port)
		}
	})
}

// TestMediaEndpoint: what a relay announces reads back, and AtRelay finds
// an address inside an announced range only.
func TestMediaEndpoint(t *testing.T) {
	for _, c := range []struct {
		ip     string
		lo, hi int
		want   string
	}{
		{"192.0.2.50", 40000, 40999, "rtp-relay:192.0.2.50:40000-40999"},
		{"2001:db8::5", 41000, 41999, "rtp-relay:[2001:db8::5]:41000-41999"},
	} {
		s := MediaEndpoint(net.ParseIP(c.ip), c.lo, c.hi)
		if s != c.want {
			t.Fatalf("MediaEndpoint = %q, want %q", s, c.want)
		}
		ip, lo, hi, ok := ParseMediaEndpoint(s)
		if !ok || !ip.Equal(net.ParseIP(c.ip)) || lo != c.lo || hi != c.hi {
			t.Fatalf("ParseMediaEndpoint(%q) = %v %d %d %v", s, ip, lo, hi, ok)
		}
	}
	for _, bad := range []string{"rtp-relay", "turn:192.0.2.50:3478?transport=udp", "rtp-relay:192.0.2.50:40999-40000",
		"rtp-relay:192.0.2.50:0-10", "rtp-relay:192.0.2.50:1-70000", "rtp-relay:host.example:1-2", "rtp-relay:192.0.2.50:01-2",
		"rtp-relay:192.0.2.50:1-2x", "rtp-relay:192.0.2.50"} {
		if _, _, _, ok := ParseMediaEndpoint(bad); ok {
			t.Errorf("ParseMediaEndpoint(%q) accepted", bad)
		}
	}
	svcs := map[peer.ID][]string{"a": {"turn:192.0.2.50:3478?transport=udp", MediaService}, "b": {MediaEndpoint(net.ParseIP("192.0.2.50"), 40000, 40999)}}
	for _, c := range []struct {
		ip   string
		port int
		want bool
	}{{"192.0.2.50", 40000, true}, {"192.0.2.50", 40999, true}, {"192.0.2.50", 41000, false}, {"192.0.2.50", 3478, false}, {"192.0.2.51", 40010, false}} {
		if got := AtRelay(svcs, net.ParseIP(c.ip), c.port); got != c.want {
			t.Errorf("AtRelay(%s:%d) = %v, want %v", c.ip, c.port, got, c.want)
		}
	}
}

// FuzzMediaEndpoint: a service string from the overlay either reads as an
// endpoint that announces itself back the same way, or is refused.
func FuzzMediaEndpoint(f *testing.F) {
	for _, s := range []string{"rtp-relay:192.0.2.50:40000-40999", "rtp-relay:[2001:db8::5]:1-2", "rtp-relay", "rtp-relay:[::ffff:1.2.3.4]:5-6", "rtp-relay:1.2.3.4:+5-6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, lo, hi, ok := ParseMediaEndpoint(s)
		if !ok {
			return
		}
		if ip == nil || lo < 1 || hi > 65535 || lo > hi {
			t.Fatalf("accepted %q as %v %d-%d", s, ip, lo, hi)
		}
		ip2, lo2, hi2, ok2 := ParseMediaEndpoint(MediaEndpoint(ip, lo, hi))
		if !ok2 || !ip2.Equal(ip) || lo2 != lo || hi2 != hi {
			t.Fatalf("%q does not read back: %v %d-%d", s, ip2, lo2, hi2)
		}
	})
}
