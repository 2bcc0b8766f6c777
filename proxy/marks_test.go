package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
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
		_ = p.loopKey(req)
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

// TestLoopKeyStable: the loop key written from the parsed headers is the
// hash of their values as sipgo prints them (what it was before it was
// written without a string per header: a request that looped through a
// front-end of another version is still recognised), for compact and
// long header names, parameters and several Routes, reused or not.
func TestLoopKeyStable(t *testing.T) {
	raws := []string{
		"INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\n" +
			"f: \"Alice\" <sip:alice@a.example>;tag=1\r\nt: <sip:bob@b.example>\r\ni: c1@x\r\n" +
			"CSeq: 7 INVITE\r\nRoute: <sip:p1.example;lr>, <sip:p2.example;lr;x=y>\r\nRoute: <sip:p3.example;lr>\r\n" +
			"Proxy-Require: foo\r\nProxy-Authorization: Digest username=\"a\", realm=\"r\"\r\nContent-Length: 0\r\n\r\n",
		"ACK sip:bob@192.0.2.9:5080;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK2\r\n" +
			"From: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>;tag=2\r\nCall-ID: c2@x\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
	}
	p := &Proxy{}
	for _, raw := range raws {
		m, err := sip.NewParser().ParseSIP([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		h := sha256.New()
		h.Write([]byte(req.Recipient.String()))
		for _, name := range []string{"to", "from", "call-id", "proxy-require", "proxy-authorization", "route"} {
			for _, v := range req.GetHeaders(name) {
				h.Write([]byte{0})
				h.Write([]byte(v.Value()))
			}
		}
		h.Write([]byte(strconv.FormatUint(uint64(req.CSeq().SeqNo), 10)))
		want := hex.EncodeToString(h.Sum(nil)[:6])
		for range 3 {
			if got := p.loopKey(req); got != want {
				t.Errorf("%s: loop key %q, want %q", req.Method, got, want)
			}
		}
	}
}

// respondTx is a server transaction that keeps what it is asked to send.
type respondTx struct {
	sip.ServerTransaction
	sent []*sip.Response
}

func (tx *respondTx) Respond(res *sip.Response) error {
	tx.sent = append(tx.sent, res)
	return nil
}

// TestCopiesLeaveOriginals: a branch's request and a relayed response are
// copies sharing header values with what they copy (no deep copy per
// message); making and changing them leaves the original as it was: the
// request its server transaction answers from, the response its client
// transaction holds.
func TestCopiesLeaveOriginals(t *testing.T) {
	p, err := New(Config{Domain: "a.example", Location: &memLocation{aor: map[string][]lsp.Binding{}}, Logger: quiet(), RecordRoute: true})
	if err != nil {
		t.Fatal(err)
	}
	p.self = hostPort{"127.0.0.1", 5060}
	m, err := sip.ParseMessage([]byte("INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@192.0.2.1:5070>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("192.0.2.1:5070")
	before := req.String()
	tg := target{uri: sip.Uri{Scheme: "sip", User: "bob", Host: "192.0.2.9", Port: 5080}, dest: "192.0.2.9:5080", tr: "UDP",
		route: []string{"<sip:edge.b.example;lr>"}}
	out := p.prepare(req, tg)
	out.MaxForwards().Dec()
	out.SetBody([]byte("v=0\nchanged\n"))
	if got := req.String(); got != before {
		t.Errorf("prepare changed the request:\n%s\nnow:\n%s", before, got)
	}
	if mf := out.MaxForwards(); mf == nil || mf.Val() != 68 || req.MaxForwards().Val() != 70 {
		t.Errorf("Max-Forwards: copy %v, request %d", mf, req.MaxForwards().Val())
	}
	if len(out.GetHeaders("Via")) != 2 || out.Route() == nil || len(out.GetHeaders("Record-Route")) != 1 {
		t.Errorf("copy sent to the branch:\n%s", out)
	}

	// The callee's 200, as it comes back: our Via on top, our Record-Route.
	res := sip.NewResponseFromRequest(out, 200, "OK", []byte("v=0\n"))
	res.AppendHeader(sip.NewHeader("Contact", "<sip:bob@192.0.2.9:5080>"))
	resBefore := res.String()
	tx := &respondTx{}
	p.relay(tx, res, &tg)
	if got := res.String(); got != resBefore {
		t.Errorf("relay changed the response:\n%s\nnow:\n%s", resBefore, got)
	}
	if len(tx.sent) != 1 || len(tx.sent[0].GetHeaders("Via")) != 1 || len(res.GetHeaders("Via")) != 2 {
		t.Fatalf("relayed %v", tx.sent)
	}
	rr := tx.sent[0].GetHeaders("Record-Route")
	if len(rr) != 1 || rr[0].Value() == res.GetHeaders("Record-Route")[0].Value() {
		t.Errorf("relayed Record-Route %v: want the token for the callee's side", rr)
	}
}
