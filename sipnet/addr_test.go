package sipnet

import (
	"net"
	"testing"
)

func TestBehindNAT(t *testing.T) {
	for _, c := range []struct {
		host, source string
		want         bool
	}{
		{"192.168.1.2", "198.51.100.7:1", true},
		{"10.1.2.3", "198.51.100.7:1", true},
		{"172.16.0.9", "198.51.100.7:1", true},
		{"100.64.1.1", "198.51.100.7:1", true}, // RFC 6598 shared space
		{"[fd00::1]", "[2001:db8::1]:1", true},
		{"192.168.1.2", "192.168.1.2:5060", false}, // no NAT between
		{"198.51.100.8", "198.51.100.7:1", false},  // public
		{"100.128.0.1", "198.51.100.7:1", false},   // just past 100.64/10
		{"host.example", "198.51.100.7:1", false},
		{"192.168.1.2", "garbage", false},
	} {
		if got := BehindNAT(c.host, c.source); got != c.want {
			t.Errorf("BehindNAT(%q, %q) = %v", c.host, c.source, got)
		}
	}
}

func TestInNetworks(t *testing.T) {
	_, n10, _ := net.ParseCIDR("10.0.0.0/8")
	nets := append(Loopback(), n10)
	for _, c := range []struct {
		source string
		want   bool
	}{
		{"127.0.0.1:5060", true},
		{"127.9.9.9:1", true},
		{"[::1]:5060", true},
		{"10.2.3.4:5060", true},
		{"11.2.3.4:5060", false},
		{"[2001:db8::1]:5060", false},
		{"127.0.0.1", false}, // no port: not a source
		{"localhost:5060", false},
	} {
		if got := InNetworks(c.source, nets); got != c.want {
			t.Errorf("InNetworks(%q) = %v", c.source, got)
		}
	}
	if InNetworks("127.0.0.1:1", nil) {
		t.Error("no networks trusted 127.0.0.1")
	}
}

func TestHostOrLink(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"0.0.0.0", true}, {"::", true},
		{"169.254.169.254", true}, {"fe80::1", true}, {"224.0.0.1", true}, {"ff02::1", true},
		{"192.168.1.1", false}, {"198.51.100.7", false}, {"2001:db8::1", false},
	} {
		if got := HostOrLink(net.ParseIP(c.ip)); got != c.want {
			t.Errorf("HostOrLink(%s) = %v", c.ip, got)
		}
	}
}
