package testnet_test

import (
	"net"
	"testing"

	"github.com/lsnode/lsnode/testnet"
)

// TestUDPDrops: datagrams sent to a socket whose receive buffer is full
// and that nobody reads are counted at its port, and at no other.
func TestUDPDrops(t *testing.T) {
	full, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	quiet, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	_ = full.SetReadBuffer(4096) // the kernel's minimum
	port := full.LocalAddr().(*net.UDPAddr).Port
	before, err := testnet.UDPDrops(port)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := net.DialUDP("udp", nil, full.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	for i := 0; i < 200; i++ {
		_, _ = sender.Write(make([]byte, 1000))
	}
	after, err := testnet.UDPDrops(port)
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 100 {
		t.Fatalf("%d drops counted at port %d after 200 KB sent to a 4 KB buffer, want most of 200", after-before, port)
	}
	if n, err := testnet.UDPDrops(quiet.LocalAddr().(*net.UDPAddr).Port); err != nil || n != 0 {
		t.Fatalf("the untouched socket: %d drops, %v", n, err)
	}
}
