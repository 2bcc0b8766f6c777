package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkForwardMarks: what prepare and record-routing compute per
// forwarded INVITE besides the copy: the loop key (RFC 3261 §16.6 item
// 8), the Via branch's MAC and the caller's Record-Route token.
func BenchmarkForwardMarks(b *testing.B) {
	raw := "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc;rport\r\n" +
		"Max-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: \"Alice\" <sip:alice@a.example>;tag=a1\r\n" +
		"Call-ID: c0ffee@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1:5070>\r\n" +
		"User-Agent: bench\r\nAllow: INVITE, ACK, BYE, CANCEL\r\nContent-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("192.0.2.1:5070")
	p := &Proxy{rrKey: make([]byte, 32)}
	b.ReportAllocs()
	for b.Loop() {
		_ = loopKey(req)
		_ = p.branchMAC("0123456789ab")
		_ = p.rrToken(callID(req), contactHop(req), req.Source())
	}
}

// TestMACStable: the tokens and branch MACs are what they were before the
// HMACs were reused (front-ends of a domain share RouteSecret and may run
// different versions, and dialogs outlive restarts), the same from a
// reused HMAC as from a new one, and the same from many goroutines.
func TestMACStable(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p := &Proxy{rrKey: key}
	want := func(n int, parts ...string) string {
		m := hmac.New(sha256.New, key)
		for _, s := range parts {
			m.Write([]byte(s))
		}
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:n])
	}
	long := strings.Repeat("c", 300) // past macOf's stack buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if got, w := p.hopMAC("call@x", "Host.Example:5060"), want(8, "rr\x00", "call@x", "\x00", "host.example:5060"); got != w {
					t.Errorf("hopMAC %q, want %q", got, w)
				}
				if got, w := p.hopMAC(long, "h"), want(8, "rr\x00", long, "\x00", "h"); got != w {
					t.Errorf("hopMAC of a long Call-ID %q, want %q", got, w)
				}
				if got, w := p.branchMAC("0123456789ab"), want(6, "branch\x00", "0123456789ab"); got != w {
					t.Errorf("branchMAC %q, want %q", got, w)
				}
			}
		}()
	}
	wg.Wait()
}
