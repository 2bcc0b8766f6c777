package relay

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestRewriteSDP(t *testing.T) {
	in := "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n" +
		"m=audio 5004 RTP/AVP 0 8\r\na=rtcp:5005\r\nm=video 5006 RTP/AVP 96\r\nc=IN IP4 192.0.2.6\r\na=rtcp:5007\r\n" +
		"m=text 0 RTP/AVP 98\r\n"
	out, streams, err := RewriteSDP([]byte(in), "198.51.100.1", []int{40000, 40002, 40004})
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 3 || !streams[0].IP.Equal(net.ParseIP("192.0.2.5")) || streams[0].Port != 5004 || streams[0].Media != "audio" ||
		!streams[1].IP.Equal(net.ParseIP("192.0.2.6")) || streams[1].Port != 5006 || streams[1].Media != "video" || streams[2].Port != 0 {
		t.Fatalf("streams %+v", streams)
	}
	// Both active streams at the relay, the declined one still declined.
	want := "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 8\r\na=rtcp:40001\r\nm=video 40002 RTP/AVP 96\r\nc=IN IP4 198.51.100.1\r\na=rtcp:40003\r\n" +
		"m=text 0 RTP/AVP 98\r\n"
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	// A stream without a relay port is declined.
	if out, _, err := RewriteSDP([]byte(in), "198.51.100.1", []int{40000}); err != nil || !strings.Contains(string(out), "m=video 0 ") {
		t.Fatalf("video without a session:\n%s %v", out, err)
	}
	// A media-level address wins over the session's.
	in2 := "v=0\nc=IN IP4 192.0.2.5\nm=audio 7000 RTP/AVP 0\nc=IN IP4 10.0.0.9\n"
	if _, st, err := RewriteSDP([]byte(in2), "2001:db8::1", []int{40002}); err != nil || !st[0].IP.Equal(net.ParseIP("10.0.0.9")) || st[0].Port != 7000 {
		t.Fatalf("media-level address: %+v %v", st, err)
	}
	for _, bad := range []string{"", "v=0\r\nm=video 0 RTP/AVP 96\r\n", "m=audio x RTP/AVP 0\r\n", "c=IN IP4 host.example\r\nm=audio 1 RTP/AVP 0\r\n",
		"m=audio 1 RTP/AVP 0\r\n", "c=IN IP4 192.0.2.1\r\nm=audio 1\r\n"} {
		if _, _, err := RewriteSDP([]byte(bad), "192.0.2.1", []int{40000}); err == nil {
			t.Errorf("%q rewritten without error", bad)
		}
	}
}

// FuzzRewriteSDP: any body either fails with an error or yields an SDP
// whose every active stream within MaxStreams points at the relay, every
// other one declined, and whose streams are those read back from the input.
func FuzzRewriteSDP(f *testing.F) {
	f.Add([]byte("v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 5004 RTP/AVP 0\r\na=rtcp:5005\r\n"))
	f.Add([]byte("v=0\nm=audio 7000 RTP/AVP 0\nc=IN IP6 2001:db8::2\nm=video 1 RTP/AVP 96\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ports := []int{40000, 40002, 40004, 40006, 40008}
		out, streams, err := RewriteSDP(b, "198.51.100.1", ports)
		if err != nil {
			return
		}
		_, again, err := RewriteSDP(out, "198.51.100.1", nil)
		if err != nil || len(again) != len(streams) || !strings.Contains(string(out), "c=IN IP4 198.51.100.1") {
			t.Fatalf("rewrite does not read back (%v): %+v vs %+v\n%q", err, streams, again, out)
		}
		for k, s := range streams {
			want := 0
			if s.Port != 0 && k < MaxStreams {
				want = ports[k]
			}
			if s.Port < 0 || s.Port > 65535 || again[k].Port != want || s.Port != 0 && s.IP == nil {
				t.Fatalf("stream %d %+v became %+v\n%q", k, s, again[k], out)
			}
		}
	})
}

// TestMediaSessions: sessions take port pairs, end on End and when idle,
// and their ports are used again.
func TestMediaSessions(t *testing.T) {
	m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 42000, MaxPort: 42007, Idle: 200 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := m.Session("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Session("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Session("c"); err == nil {
		t.Fatal("a third session in a range of four port pairs (two per session)")
	}
	if a.Port(0)%2 != 0 || a.Port(0) == b.Port(0) {
		t.Fatalf("ports %d %d", a.Port(0), b.Port(0))
	}
	m.End("a")
	if _, err := m.Session("c"); err != nil {
		t.Fatalf("ports of an ended session not reused: %v", err)
	}
	for i := 0; i < 50 && m.Sessions() > 0; i++ {
		sleepMS(20)
	}
	if n := m.Sessions(); n != 0 {
		t.Fatalf("%d idle sessions not reaped", n)
	}
}

func sleepMS(n int) { <-time.After(time.Duration(n) * time.Millisecond) }

// TestMediaPortsUnpredictable: a session's ports do not follow from the
// last one's (a leg latches the first packet that reaches it: in order, a
// sender spraying the next ports took a fresh call's media). Ten sessions
// in a range of 500 pairs: in order they would be 20 consecutive pairs.
func TestMediaPortsUnpredictable(t *testing.T) {
	m, err := NewMedia(MediaConfig{IP: "127.0.0.1", MinPort: 43200, MaxPort: 44199, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var ports []int
	for i := range 10 {
		s, err := m.Session(fmt.Sprint("s", i))
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, s.Port(0), s.Port(1))
	}
	next := 0
	for i := 1; i < len(ports); i++ {
		if ports[i] == ports[i-1]+2 {
			next++
		}
	}
	if next == len(ports)-1 {
		t.Fatalf("ports allocated in order: %v", ports)
	}
}
