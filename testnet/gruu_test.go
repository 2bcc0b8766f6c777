package testnet_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// request waits up to timeout for a request on u's socket; it returns its
// text ("" if none came) and answers it with code, its Via, From, To,
// Call-ID and CSeq copied (RFC 3261 §8.2.6.2), so the transaction ends.
func (u *rawUA) request(timeout time.Duration, code int) string {
	buf := make([]byte, 65535)
	_ = u.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, from, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		msg := string(buf[:n])
		if strings.HasPrefix(msg, "SIP/2.0") || strings.HasPrefix(msg, "ACK ") {
			continue
		}
		res := fmt.Sprintf("SIP/2.0 %d Answered\r\n", code)
		for _, line := range strings.Split(msg, "\r\n") {
			name, _, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "via", "v", "from", "f", "call-id", "i", "cseq":
				res += line + "\r\n"
			case "to", "t":
				if !strings.Contains(line, "tag=") { // an initial request
					line += ";tag=callee"
				}
				res += line + "\r\n"
			}
		}
		_, _ = u.conn.WriteToUDP([]byte(res+"Content-Length: 0\r\n\r\n"), from)
		return msg
	}
}

var (
	pubGRUUAttr  = regexp.MustCompile(`pub-gruu="([^"]+)"`)
	tempGRUUAttr = regexp.MustCompile(`temp-gruu="([^"]+)"`)
)

// TestGRUUThroughOverlay: two devices of bob@b.example register with sipp
// (digest, Supported: gruu, RFC 5626 instance IDs) and get GRUUs (RFC
// 5627). A caller of a.example reaches each device by its public GRUU and
// the phone by its temporary GRUU through a.example's proxy alone: the
// overlay lookup finds exactly that instance, and no node of b.example
// (the registrar that issued them) sees the calls. Once the phone
// unregisters, its temporary GRUU gives 404 and its public GRUU 480, at
// a proxy that never cached them.
func TestGRUUThroughOverlay(t *testing.T) {
	m, nw := startCallNet(t, nil)
	aNodes, bNodes := domainNodes(nw, "a.example"), domainNodes(nw, "b.example")
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	phone, desk := newRawUA(t), newRawUA(t)
	instances := map[*rawUA]string{phone: "<urn:uuid:00000000-0000-1000-8000-0000000000a1>", desk: "<urn:uuid:00000000-0000-1000-8000-0000000000a2>"}
	reg := func(ua *rawUA, expires int) (pub, temp string) {
		t.Helper()
		addr := ua.conn.LocalAddr().String()
		var msgs string
		run := sippRun{registrar: nw.Node(bNodes[0]).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
			domain: "b.example", contact: fmt.Sprintf(`<sip:%s@%s>;+sip.instance="%s"`, user, addr, instances[ua]),
			expires: expires, final: 200, headers: []string{"Supported: gruu"}, messages: &msgs}
		if err := run.run(t); err != nil {
			t.Fatal(err)
		}
		// The last 200's Contact of this device.
		for _, line := range strings.Split(msgs, "\n") {
			if strings.HasPrefix(strings.ToLower(line), "contact:") && strings.Contains(line, addr) {
				pub, temp = "", ""
				if m := pubGRUUAttr.FindStringSubmatch(line); m != nil {
					pub = m[1]
				}
				if m := tempGRUUAttr.FindStringSubmatch(line); m != nil {
					temp = m[1]
				}
			}
		}
		return pub, temp
	}
	phonePub, phoneTemp := reg(phone, 600)
	deskPub, deskTemp := reg(desk, 600)
	if phonePub == "" || phoneTemp == "" || deskPub == "" || deskTemp == "" || phonePub == deskPub || phoneTemp == deskTemp {
		t.Fatalf("GRUUs: phone %q %q, desk %q %q", phonePub, phoneTemp, deskPub, deskTemp)
	}
	if strings.Contains(phoneTemp, user) {
		t.Fatalf("temporary GRUU %q shows the AOR", phoneTemp)
	}
	before := map[int]int64{}
	for _, i := range bNodes {
		before[i] = nw.Node(i).Proxy().Stats().Requests
	}
	call := func(via int, ruri string, callee *rawUA, other *rawUA, want int) {
		t.Helper()
		caller := newRawUA(t)
		caller.send(nw.Node(via).SIPAddr(), caller.invite(ruri))
		if callee != nil {
			if got := callee.request(10*time.Second, 486); !strings.HasPrefix(got, "INVITE sip:"+user+"@"+callee.conn.LocalAddr().String()) {
				t.Fatalf("INVITE %s: the device got %q", ruri, firstLine(got))
			}
		}
		if code := caller.final(t, 15*time.Second); code != want {
			t.Fatalf("INVITE %s via node %d: %d, want %d", ruri, via, code, want)
		}
		if got := other.request(200*time.Millisecond, 486); got != "" {
			t.Fatalf("INVITE %s also reached the other device: %q", ruri, firstLine(got))
		}
	}
	call(aNodes[0], deskPub, desk, phone, 486)
	call(aNodes[0], phonePub, phone, desk, 486)
	call(aNodes[0], phoneTemp, phone, desk, 486)
	for _, i := range bNodes {
		if got := nw.Node(i).Proxy().Stats().Requests; got != before[i] {
			t.Errorf("b.example node %d saw %d requests of the calls to GRUUs", i, got-before[i])
		}
	}
	// The phone unregisters (another sipp run: another Call-ID).
	reg(phone, 0)
	call(aNodes[1], phoneTemp, nil, desk, 404)
	call(aNodes[1], phonePub, nil, desk, 480)
	call(aNodes[1], deskTemp, desk, phone, 486)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// TestGRUUBaresip: baresip (RFC 5626 outbound, so it registers an
// instance and asks for GRUUs) registers bob at b.example and gives its
// public GRUU as its Contact in dialogs. baresip alice calls bob's public
// and then temporary GRUU through a.example's node: each call is set up,
// its ACK and BYE (addressed to the GRUU: a name only the overlay
// resolves) reach bob through a.example's proxy, which record-routed the
// dialog, and no node of b.example sees any of it.
func TestGRUUBaresip(t *testing.T) {
	m, nw := startCallNet(t, nil)
	aReg := nw.Node(domainNodes(nw, "a.example")[0]).SIPAddr()
	bNodes := domainNodes(nw, "b.example")
	alice, bob := domainUser(m, "a.example", 0), domainUser(m, "b.example", 1)
	callee := baresipWith(t, bob, nw.Node(bNodes[0]).SIPAddr(), ";sipnat=outbound", "-t", "60")
	callee.await(t, `temp-gruu="[^"]+"`, 20*time.Second, nil)
	out := string(callee.out.Bytes())
	pub, temp := pubGRUUAttr.FindStringSubmatch(out)[1], tempGRUUAttr.FindStringSubmatch(out)[1]
	before := map[int]int64{}
	for _, i := range bNodes {
		before[i] = nw.Node(i).Proxy().Stats().Requests
	}
	for n, gruu := range []string{pub, temp} {
		caller := baresip(t, alice, aReg, "-e", "/dial "+gruu, "-t", "6")
		caller.await(t, `Call established: `+regexp.QuoteMeta(gruu), 20*time.Second, nil)
		// The callee's side is established when the ACK came.
		callee.await(t, fmt.Sprintf(`(?s)(Call established.*){%d}`, n+1), 10*time.Second, nil)
		// caller quits at 6 s: its BYE goes to the GRUU.
		callee.await(t, fmt.Sprintf(`(?s)(Call with [^\n]* terminated.*){%d}`, n+1), 20*time.Second, nil)
	}
	if strings.Contains(string(callee.out.Bytes()), "timeout") {
		t.Errorf("bob's baresip saw a timeout:\n%s", tail(callee.out.Bytes()))
	}
	for _, i := range bNodes {
		if got := nw.Node(i).Proxy().Stats().Requests; got != before[i] {
			t.Errorf("b.example node %d saw %d requests of the calls to GRUUs", i, got-before[i])
		}
	}
}
