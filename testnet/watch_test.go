package testnet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestProxyCacheFollowsChanges: a proxy that cached bob's Contact (its
// cache lives 30 s) routes the next call to the Contact bob moved to
// right after the move: the location service told it of the change.
func TestProxyCacheFollowsChanges(t *testing.T) {
	m, nw := startCallNet(t, nil)
	aNode, bNodes := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	old, moved := newRawUA(t), newRawUA(t)
	reg := func(ua *rawUA, expires int) {
		t.Helper()
		if err := (sippRun{registrar: nw.Node(bNodes[0]).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
			domain: "b.example", contact: fmt.Sprintf("<sip:%s@%s>", user, ua.conn.LocalAddr().String()),
			expires: expires, final: 200}).run(t); err != nil {
			t.Fatal(err)
		}
	}
	call := func(to, not *rawUA) {
		t.Helper()
		caller := newRawUA(t)
		caller.send(nw.Node(aNode).SIPAddr(), caller.invite(bob.AOR))
		if got := to.request(10*time.Second, 486); !strings.HasPrefix(got, "INVITE sip:"+user+"@"+to.conn.LocalAddr().String()) {
			t.Fatalf("the INVITE did not reach %s: %q", to.conn.LocalAddr(), firstLine(got))
		}
		if code := caller.final(t, 15*time.Second); code != 486 {
			t.Fatalf("caller got %d", code)
		}
		if got := not.request(200*time.Millisecond, 486); got != "" {
			t.Fatalf("the INVITE also reached %s", not.conn.LocalAddr())
		}
	}
	reg(old, 600)
	call(old, moved) // the proxy now holds bob's Contact for 30 s
	reg(moved, 600)
	reg(old, 0)
	// The registrations' 200s came after the writes reached W replicas,
	// and each replica told the proxy at once: wait for its reads to
	// settle (the first delivery and at least one per change), well
	// within the cache's 30 s.
	pushed, since := int64(0), time.Now()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := nw.Node(aNode).Proxy().Stats().Pushed; n != pushed {
			pushed, since = n, time.Now()
		} else if n >= 3 && time.Since(since) > 300*time.Millisecond {
			break
		}
	}
	call(moved, old)
	st := nw.Node(aNode).Proxy().Stats()
	if st.Pushed < 2 || st.Lookups != 1 {
		t.Errorf("proxy: %d changes pushed, %d lookups; want ≥2 and 1 (the second call from the cache)", st.Pushed, st.Lookups)
	}
	t.Logf("a.example proxy: %+v", st)
}
