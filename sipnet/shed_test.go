package sipnet

import (
	"bytes"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestRawReject: the 503 built from a request's bytes echoes its Via
// lines, From, To (with a tag of ours unless it has one), Call-ID and
// CSeq, as sipgo reads them, and goes where RFC 3261 §18.2.2 / RFC 3581
// send a response; a request not in the plain form is left to the usual
// path.
func TestRawReject(t *testing.T) {
	plain := register("UDP 192.0.2.1:5070", "r1")
	src := &net.UDPAddr{IP: net.IPv4(198, 51, 100, 9), Port: 40000}
	for _, tc := range []struct {
		name, req string
		port      int // 0: not answered here
		toTag     string
	}{
		{"plain", plain, 5070, "ab12"},
		{"rport", strings.Replace(plain, ";branch", ";rport;branch", 1), 40000, "ab12"},
		{"no port", register("UDP host.example", "r2"), 5060, "ab12"},
		{"IPv6", register("UDP [2001:db8::1]:5072", "r3"), 5072, "ab12"},
		{"IPv6 no port", register("UDP [2001:db8::1]", "r4"), 5060, "ab12"},
		{"compact", "REGISTER sip:a.example SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1:5071;branch=z9hG4bKc\r\n" +
			"t: <sip:x@a.example>;tag=theirs\r\nf: <sip:x@a.example>;tag=1\r\ni: c-test\r\nCSeq: 7 REGISTER\r\nl: 0\r\n\r\n", 5071, "theirs"},
		{"two Vias", strings.Replace(plain, "Max-Forwards", "Via: SIP/2.0/UDP 198.51.100.1:5080;branch=z9hG4bKp\r\nMax-Forwards", 1), 5070, "ab12"},
		{"tag in the URI only", strings.Replace(plain, "To: <sip:x@a.example>", "To: <sip:x@a.example;tag=uri>", 1), 5070, "ab12"},
		{"folded", strings.Replace(plain, "Max-Forwards: 70\r\n", "Max-Forwards:\r\n 70\r\n", 1), 0, ""},
		{"no Call-ID", strings.Replace(plain, "Call-ID: r1-test\r\n", "", 1), 0, ""},
		{"two Froms", strings.Replace(plain, "Max-Forwards", "From: <sip:y@a.example>;tag=2\r\nMax-Forwards", 1), 0, ""},
		{"bare LF", strings.Replace(plain, "Max-Forwards: 70\r\n", "Max-Forwards: 70\n", 1), 0, ""},
		{"no Via", strings.Replace(plain, "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKr1\r\n", "", 1), 0, ""},
		{"bad Via port", register("UDP 192.0.2.1:99999", "r5"), 0, ""},
		{"not SIP/2.0", strings.Replace(plain, " SIP/2.0\r\n", " SIP/3.0\r\n", 1), 0, ""},
		{"no blank line", strings.TrimSuffix(plain, "\r\n"), 0, ""},
		// What the attacker's review sent: nothing of it is echoed.
		{"control byte", strings.Replace(plain, "Call-ID: r1", "Call-ID: \x1br1", 1), 0, ""},
		{"CSeq of another method", strings.Replace(plain, "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1), 0, ""},
		{"CSeq without a number", strings.Replace(plain, "CSeq: 1 REGISTER", "CSeq: REGISTER", 1), 0, ""},
		{"quoted Via parameter", strings.Replace(plain, ";branch", `;x="a,b";rport;branch`, 1), 0, ""},
		{"signed port", register("UDP 192.0.2.1:+53", "r6"), 0, ""},
		{"IPv6 without brackets", register("UDP 2001:db8::1", "r7"), 0, ""},
		{"quoted To parameter", strings.Replace(plain, "To: <sip:x@a.example>", `To: <sip:x@a.example>;tag=1;p=">"`, 1), 0, ""},
		{"many To parameters", strings.Replace(plain, "To: <sip:x@a.example>", "To: <sip:x@a.example>"+strings.Repeat(";", 4000), 1), 0, ""},
		{"nine Vias", strings.Replace(plain, "Max-Forwards", strings.Repeat("Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKp\r\n", 8)+"Max-Forwards", 1), 0, ""},
	} {
		out, port, _, ok := rawReject(nil, []byte(tc.req), src, "503 Service Unavailable", 5, mintAB12)
		if !ok {
			if tc.port != 0 {
				t.Errorf("%s: not answered", tc.name)
			}
			continue
		}
		if tc.port == 0 {
			t.Errorf("%s: answered %q, want it left to the usual path", tc.name, out)
			continue
		}
		if port != tc.port {
			t.Errorf("%s: to port %d, want %d", tc.name, port, tc.port)
		}
		req := parseRequest(t, tc.req)
		res := parseResponse(t, out)
		if res.StatusCode != 503 || res.GetHeader("Retry-After") == nil || res.GetHeader("Retry-After").Value() != "5" {
			t.Errorf("%s: %q, want 503 with Retry-After: 5", tc.name, out)
		}
		echoes(t, tc.name, req, res)
		// RFC 3261 §18.2.1, RFC 3581 §4: the source address in the top Via.
		if got, _ := res.Via().Params.Get("received"); got != "198.51.100.9" {
			t.Errorf("%s: received=%q in %q", tc.name, got, res.Via().Value())
		}
		if _, asked := req.Via().Params.Get("rport"); asked {
			if got, _ := res.Via().Params.Get("rport"); got != "40000" {
				t.Errorf("%s: rport=%q in %q", tc.name, got, res.Via().Value())
			}
		}
		if tag, _ := res.To().Params.Get("tag"); tag != tc.toTag {
			t.Errorf("%s: To tag %q, want %q", tc.name, tag, tc.toTag)
		}
	}
}

// countOf is how many responses of code to method counts holds.
func countOf(counts *StatusCounts, method string, code int) int64 {
	var total int64
	counts.Each(func(m string, c int, n int64) {
		if m == method && c == code {
			total += n
		}
	})
	return total
}

// mintAB12 mints the tag "ab12" whatever the Call-ID.
func mintAB12(dst, _ []byte) []byte { return append(dst, "ab12"...) }

func parseRequest(t *testing.T, s string) *sip.Request {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(s))
	if err != nil {
		t.Fatalf("sipgo cannot read the request: %v", err)
	}
	return m.(*sip.Request)
}

func parseResponse(t *testing.T, b []byte) *sip.Response {
	t.Helper()
	m, err := sip.NewParser().ParseSIP(b)
	res, ok := m.(*sip.Response)
	if err != nil || !ok {
		t.Fatalf("sipgo cannot read %q as a response: %v", b, err)
	}
	return res
}

// echoes checks res carries what a response to req must echo.
func echoes(t *testing.T, name string, req *sip.Request, res *sip.Response) {
	t.Helper()
	rv, qv := res.GetHeaders("Via"), req.GetHeaders("Via")
	if len(rv) != len(qv) {
		t.Errorf("%s: %d Via headers, want %d", name, len(rv), len(qv))
	}
	for i := range min(len(rv), len(qv)) {
		if bareVia(rv[i].Value()) != bareVia(qv[i].Value()) {
			t.Errorf("%s: Via %d is %q, want %q", name, i, rv[i].Value(), qv[i].Value())
		}
	}
	if res.CallID().Value() != req.CallID().Value() || res.CSeq().Value() != req.CSeq().Value() ||
		res.From().Value() != req.From().Value() || res.To().Address.String() != req.To().Address.String() {
		t.Errorf("%s: Call-ID, CSeq, From or To differ: %q", name, res.String())
	}
}

// bareVia is a Via value without its received and rport parameters
// (which a response sets in its top Via).
func bareVia(v string) string {
	first, more, _ := strings.Cut(v, ",")
	var keep []string
	for i, p := range strings.Split(first, ";") {
		k, _, _ := strings.Cut(p, "=")
		if i == 0 || !strings.EqualFold(k, "received") && !strings.EqualFold(k, "rport") {
			keep = append(keep, p)
		}
	}
	if more != "" {
		return strings.Join(keep, ";") + "," + more
	}
	return strings.Join(keep, ";")
}

// TestShedStateless: while the hook says busy, a REGISTER over UDP is
// answered 503 with the hook's Retry-After without its handler running,
// and counted; once not busy, the same request is handled.
func TestShedStateless(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var calls atomic.Int64
	var busy atomic.Bool
	var counts StatusCounts
	var held atomic.Pointer[chan struct{}]
	var seen atomic.Int64
	s.HandleStateless(sip.REGISTER, func(req *sip.Request, _ bool) *sip.Response {
		calls.Add(1)
		if h := held.Swap(nil); h != nil {
			<-*h
		}
		return sip.NewResponseFromRequest(req, 200, "OK", nil)
	})
	s.ShedStateless(sip.REGISTER, func(in ShedInfo) time.Duration {
		seen.Store(int64(in.InHand))
		if busy.Load() {
			return 7 * time.Second
		}
		return 0
	}, &counts)
	s.Serve()
	c := udpPeer(t, s.udp.LocalAddr().String())
	local := c.LocalAddr().String()
	busy.Store(true)
	req := register("UDP "+local, "s1")
	res := parseResponse(t, []byte(roundTrip(t, c, req)))
	if res.StatusCode != 503 || res.GetHeader("Retry-After").Value() != "7" || calls.Load() != 0 {
		t.Fatalf("busy: %d (Retry-After %v), handler ran %d times; want 503, 7, 0", res.StatusCode, res.GetHeader("Retry-After"), calls.Load())
	}
	echoes(t, "busy", parseRequest(t, req), res)
	if st := s.StatelessStats(); st.Shed != 1 {
		t.Fatalf("shed count %d, want 1", st.Shed)
	}
	n503 := countOf(&counts, "REGISTER", 503)
	if n503 != 1 {
		t.Fatalf("%d 503s to REGISTER counted, want 1", n503)
	}
	// Busy, a request the reader cannot answer from its bytes is dropped,
	// not queued in front of the handler: a real UA sends it again.
	if _, err := c.Write([]byte(strings.Replace(register("UDP "+local, "s4"), "Max-Forwards: 70\r\n", "Max-Forwards:\r\n 70\r\n", 1))); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); s.StatelessStats().Dropped == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.StatelessStats(); st.Dropped != 1 || st.Shed != 1 || calls.Load() != 0 {
		t.Fatalf("a folded request while busy: %+v, handler ran %d times; want 1 dropped, 1 shed, 0", st, calls.Load())
	}
	// Nor is a 503 longer than its request sent (a spoofed source's
	// amplifier): the shortest request answerable is dropped.
	tiny := "REGISTER a SIP/2.0\r\nv:SIP/2.0/UDP " + local + "\r\nf:a\r\nt:b\r\ni:c\r\nCSeq:1 REGISTER\r\n\r\n"
	if _, port, _, ok := rawReject(nil, []byte(tiny), c.LocalAddr().(*net.UDPAddr), "503 Service Unavailable", 7, mintAB12); !ok || port < 1 {
		t.Fatal("the tiny request is not answerable")
	}
	if _, err := c.Write([]byte(tiny)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); s.StatelessStats().Dropped == 1 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.StatelessStats(); st.Dropped != 2 || st.Shed != 1 {
		t.Fatalf("a request shorter than its 503 while busy: %+v; want 2 dropped, 1 shed", st)
	}
	busy.Store(false)
	if res := parseResponse(t, []byte(roundTrip(t, c, req))); res.StatusCode != 200 || calls.Load() != 1 {
		t.Fatalf("not busy: %d, handler ran %d times; want 200, 1", res.StatusCode, calls.Load())
	}
	// The hook is told what is in hand: one request its handler holds.
	hold := make(chan struct{})
	held.Store(&hold)
	if _, err := c.Write([]byte(register("UDP "+local, "s2"))); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); calls.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	res = parseResponse(t, []byte(roundTrip(t, c, register("UDP "+local, "s3"))))
	close(hold)
	if res.StatusCode != 200 || seen.Load() != 1 {
		t.Fatalf("with one request in hand: %d, the hook was told %d in hand; want 200, 1", res.StatusCode, seen.Load())
	}
}

// FuzzRawReject: whatever the bytes, rawReject does not panic; what it
// answers, sipgo reads as a 503 echoing what a response must, no bigger
// than the request and some fixed lines (it amplifies nothing).
func FuzzRawReject(f *testing.F) {
	f.Add([]byte(register("UDP 192.0.2.1:5070", "f1")))
	f.Add([]byte(register("UDP [::1]", "f2")))
	f.Add([]byte("REGISTER sip:a SIP/2.0\r\nv: SIP/2.0/UDP h;rport\r\nf: a\r\nt: b\r\ni: c\r\nCSeq: 1 REGISTER\r\n\r\n"))
	f.Add([]byte("REGISTER sip:a SIP/2.0\r\n\r\n"))
	src := &net.UDPAddr{IP: net.ParseIP("2001:db8::9"), Port: 40000}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, port, _, ok := rawReject(nil, data, src, "503 Service Unavailable", 5, mintAB12)
		if !ok {
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("port %d", port)
		}
		if len(out) > len(data)+160 { // shedRaw sends nothing longer than data
			t.Fatalf("%d bytes answered to %d", len(out), len(data))
		}
		if !plain(bytes.ReplaceAll(out, []byte("\r\n"), nil)) {
			t.Fatalf("a control character echoed in %q", out)
		}
		m, err := sip.NewParser().ParseSIP(data)
		req, isReq := m.(*sip.Request)
		if err != nil || !isReq || req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.Via() == nil {
			return // sipgo reads the request otherwise; the bytes echoed are still its
		}
		res, err := sip.NewParser().ParseSIP(out)
		if err != nil {
			t.Fatalf("sipgo reads a request it cannot answer %q: %v", out, err)
		}
		if r, isRes := res.(*sip.Response); !isRes || r.StatusCode != 503 || r.CallID() == nil || r.CallID().Value() != req.CallID().Value() {
			t.Fatalf("%q answered %q", data, out)
		}
	})
}

// TestHasAuthorization: an Authorization line in the header section, in
// any ASCII case, with blanks before its colon; not Proxy-Authorization
// (a proxy's), not in a folded line, another header's value or the body.
func TestHasAuthorization(t *testing.T) {
	base := "REGISTER sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 REGISTER\r\n"
	for _, c := range []struct {
		extra, body string
		want        bool
	}{
		{"", "", false},
		{"Authorization: Digest username=\"a\"\r\n", "", true},
		{"authorization : Digest\r\n", "", true},
		{"AUTHORIZATION:Digest\r\n", "", true},
		{"Proxy-Authorization: Digest\r\n", "", false},
		{"Authorization: Digest\n", "", true},
		{"X-Authorization: Digest\r\n", "", false},
		{"Subject: x\r\n Authorization: Digest\r\n", "", false},
		{"Subject: Authorization: Digest\r\n", "", false},
		{"", "Authorization: Digest\r\n", false},
	} {
		msg := base + c.extra + "\r\n" + c.body
		if got := hasAuthorization([]byte(msg)); got != c.want {
			t.Errorf("%q: %v, want %v", msg, got, c.want)
		}
	}
}

// FuzzHasAuthorization: where sipgo reads a request whose lines all end in
// CRLF, unfolded, hasAuthorization agrees with it on whether an
// Authorization header is there (with bare LFs and
// CRs sipgo has readings of its own: "\r\n\nAuthorization:" is a header
// to it; hasAuthorization then only errs towards "no credentials", which
// under load costs the sender a 503 it would have had as a challenge).
func FuzzHasAuthorization(f *testing.F) {
	f.Add([]byte(register("UDP 192.0.2.1:5070", "f1")))
	f.Add([]byte("REGISTER sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nAuthorization: Digest a=b\r\n\r\n"))
	f.Add([]byte("REGISTER sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nproxy-authorization : x\r\nauthorization : y\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := hasAuthorization(data)
		m, err := sip.NewParser().ParseSIP(data)
		req, isReq := m.(*sip.Request)
		crlf := bytes.Count(data, []byte("\r\n"))
		if err != nil || !isReq || bytes.Count(data, []byte("\n")) != crlf || bytes.Count(data, []byte("\r")) != crlf ||
			bytes.Contains(data, []byte("\r\n ")) || bytes.Contains(data, []byte("\r\n\t")) {
			return
		}
		if want := req.GetHeader("Authorization") != nil; got != want {
			t.Fatalf("%q: hasAuthorization %v, sipgo %v", data, got, want)
		}
	})
}
