package testnet_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// subscribe sends a SUBSCRIBE of the reg event package from u to
// registrar for aor with headers in the dialog callID ("": a new one),
// answers the 401 with user's credentials, and returns the final
// response's text.
func (u *rawUA) subscribe(t *testing.T, registrar, aor string, user testnet.User, callID string, headers ...string) string {
	t.Helper()
	return u.subscribeAt(t, registrar, aor, aor, user, callID, headers...)
}

// subscribeAt is subscribe with another Request-URI (a dialog's remote
// target).
func (u *rawUA) subscribeAt(t *testing.T, registrar, ruri, aor string, user testnet.User, callID string, headers ...string) string {
	t.Helper()
	if callID == "" {
		callID = fmt.Sprint("sub-", time.Now().UnixNano())
	}
	msg := func(cseq int, extra ...string) string {
		local := u.conn.LocalAddr().String()
		m := fmt.Sprintf("SUBSCRIBE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport\r\nMax-Forwards: 70\r\n"+
			"From: <%s>;tag=watcher\r\nCall-ID: %s\r\nCSeq: %d SUBSCRIBE\r\nContact: <sip:watcher@%s>\r\nEvent: reg\r\n",
			ruri, local, time.Now().UnixNano(), user.AOR, callID, cseq, local)
		for _, h := range append(headers, extra...) {
			m += h + "\r\n"
		}
		if !strings.Contains(m, "\r\nTo:") {
			m += "To: <" + aor + ">\r\n"
		}
		return m + "Content-Length: 0\r\n\r\n"
	}
	u.cseq++
	u.send(registrar, msg(u.cseq))
	res := u.response(t, 5*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 401") {
		return res
	}
	m := regexp.MustCompile(`(?m)^WWW-Authenticate: (.*)\r$`).FindStringSubmatch(res)
	chal, err := digest.ParseChallenge(m[1])
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "SUBSCRIBE", URI: ruri, Username: user.Username, Password: user.Password, Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	u.cseq++
	u.send(registrar, msg(u.cseq, "Authorization: "+cred.String()))
	return u.response(t, 5*time.Second)
}

// response returns the next final response u gets.
func (u *rawUA) response(t *testing.T, timeout time.Duration) string {
	t.Helper()
	buf := make([]byte, 65535)
	_ = u.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		if s := string(buf[:n]); strings.HasPrefix(s, "SIP/2.0 ") && !strings.HasPrefix(s, "SIP/2.0 1") {
			return s
		}
	}
}

// validReginfo checks a NOTIFY's body against RFC 3680's schema with
// xmllint and returns the body.
func validReginfo(t *testing.T, notify string) string {
	t.Helper()
	_, body, _ := strings.Cut(notify, "\r\n\r\n")
	f := filepath.Join(t.TempDir(), "reginfo.xml")
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Fatal("xmllint not installed (Debian package libxml2-utils; scripts/deps test installs it)")
	}
	if out, err := exec.Command("xmllint", "--noout", "--schema", "testdata/reginfo/reginfo.xsd", f).CombinedOutput(); err != nil {
		t.Fatalf("NOTIFY body does not validate against RFC 3680's schema: %v\n%s\n%s", err, out, body)
	}
	return body
}

// TestRegEvent: bob subscribes to his own registrations (RFC 3680) at
// b.example's node; the NOTIFYs carry reginfo documents that validate
// against RFC 3680's schema: first "init", then bob's Contact once he
// registers through the other front-end (the location service told the
// node), one telling a lapsed Contact expired, and a last one when he
// unsubscribes; a node that stops ends its subscriptions with reason
// deactivated. Another user's credentials get 403, a dialog the node never
// made 481.
func TestRegEvent(t *testing.T) {
	m, nw := startCallNet(t, func(_ *testnet.Manifest, c *node.Config) {
		c.Registrar.MinExpires = node.Duration(time.Second) // a binding that lapses within the test
	})
	bNodes := domainNodes(nw, "b.example")
	bob, carol := domainUser(m, "b.example", 0), domainUser(m, "b.example", 1)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	front := nw.Node(bNodes[0]).SIPAddr()
	w := newRawUA(t)
	if res := w.subscribe(t, front, bob.AOR, carol, ""); !strings.HasPrefix(res, "SIP/2.0 403") {
		t.Fatalf("carol subscribing to bob: %s", firstLine(res))
	}
	res := w.subscribe(t, front, bob.AOR, bob, "", "Expires: 600")
	if !strings.HasPrefix(res, "SIP/2.0 200") || !strings.Contains(res, "Expires: 600") {
		t.Fatalf("SUBSCRIBE: %s", res)
	}
	toTag := regexp.MustCompile(`(?m)^To: .*;tag=([^;\r]+)`).FindStringSubmatch(res)[1]
	callID := regexp.MustCompile(`(?m)^Call-ID: (.*)\r$`).FindStringSubmatch(res)[1]
	target := regexp.MustCompile(`(?m)^Contact: <([^>]+)>`).FindStringSubmatch(res)[1] // the dialog's remote target
	notify := w.request(5*time.Second, 200)
	if !strings.HasPrefix(notify, "NOTIFY ") || !strings.Contains(notify, "Event: reg") || !strings.Contains(notify, "Subscription-State: active") {
		t.Fatalf("first NOTIFY: %q", notify)
	}
	if body := validReginfo(t, notify); !strings.Contains(body, `state="init"`) {
		t.Fatalf("before any REGISTER: %s", body)
	}
	// bob registers through the other front-end.
	contact := fmt.Sprintf("sip:%s@127.0.0.1:%d", user, freeUDPPort(t))
	t0 := time.Now()
	if err := (sippRun{registrar: nw.Node(bNodes[1]).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: "<" + contact + ">", expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	notify = w.request(5*time.Second, 200)
	t.Logf("NOTIFY of the REGISTER %v after sipp started", time.Since(t0))
	if body := validReginfo(t, notify); !strings.Contains(body, "<uri>"+contact+"</uri>") || !strings.Contains(body, `state="active"`) {
		t.Fatalf("after the REGISTER: %s", body)
	}
	// A second device for 2 s: listed, then told expired when it lapses
	// (no write tells that: the notifier's own timer), then gone.
	brief := fmt.Sprintf("sip:%s@127.0.0.1:%d", user, freeUDPPort(t))
	if err := (sippRun{registrar: nw.Node(bNodes[1]).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: "<" + brief + ">", expires: 2, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	if body := validReginfo(t, w.request(5*time.Second, 200)); !strings.Contains(body, brief) || !strings.Contains(body, contact) {
		t.Fatalf("with the second device: %s", body)
	}
	lapsed := time.Now()
	if body := validReginfo(t, w.request(5*time.Second, 200)); !regexp.MustCompile(`state="terminated" event="expired" expires="0"[^>]*><uri>`+regexp.QuoteMeta(brief)).MatchString(body) ||
		!strings.Contains(body, `event="registered" expires="`) || !strings.Contains(body, contact) {
		t.Fatalf("after the second device's registration lapsed: %s", body)
	}
	t.Logf("the lapse's NOTIFY %v after the one listing it", time.Since(lapsed))
	// A dialog the node never made.
	if res := w.subscribeAt(t, front, target, bob.AOR, bob, callID, "To: <"+bob.AOR+">;tag=nosuch"); !strings.HasPrefix(res, "SIP/2.0 481") {
		t.Fatalf("unknown dialog: %s", firstLine(res))
	}
	// A refresh with an older CSeq than the dialog's (a replay): 500.
	last := w.cseq
	w.cseq = 0
	if res := w.subscribeAt(t, front, target, bob.AOR, bob, callID, "To: <"+bob.AOR+">;tag="+toTag, "Expires: 600"); !strings.HasPrefix(res, "SIP/2.0 500") {
		t.Fatalf("a refresh with an old CSeq: %s", firstLine(res))
	}
	w.cseq = last
	// Unsubscribe: within the dialog, Expires: 0.
	res = w.subscribeAt(t, front, target, bob.AOR, bob, callID, "To: <"+bob.AOR+">;tag="+toTag, "Expires: 0")
	if !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("unsubscribe: %s", firstLine(res))
	}
	notify = w.request(5*time.Second, 200)
	if !strings.Contains(notify, "Subscription-State: terminated") {
		t.Fatalf("last NOTIFY: %q", notify)
	}
	if body := validReginfo(t, notify); strings.Contains(body, brief) {
		t.Fatalf("the expired device told again: %s", body)
	}
	if extra := w.request(300*time.Millisecond, 200); extra != "" {
		t.Fatalf("a NOTIFY after the last: %q", firstLine(extra))
	}
	// A node that stops tells its subscribers to subscribe again
	// elsewhere (RFC 6665 §4.2.2).
	if res := w.subscribe(t, front, bob.AOR, bob, "", "Expires: 600"); !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("second SUBSCRIBE: %s", firstLine(res))
	}
	if body := validReginfo(t, w.request(5*time.Second, 200)); !strings.Contains(body, contact) {
		t.Fatalf("second subscription's first NOTIFY: %s", body)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- nw.StopNode(bNodes[0]) }()
	notify = w.request(5*time.Second, 200)
	if !strings.Contains(notify, "Subscription-State: terminated;reason=deactivated") {
		t.Fatalf("NOTIFY of a node stopping: %q", notify)
	}
	validReginfo(t, notify)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}
