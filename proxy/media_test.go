package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/relay"
)

// avSDP is an offer or answer with an audio and a video stream at
// 127.0.0.1 and a text stream at textPort (0: declined).
func avSDP(audio, video, textPort int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"+
		"m=text %d RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\n", audio, video, textPort)
}

// streamPorts reads the port of each m= line of an SDP body, by media.
func streamPorts(body []byte) map[string]int {
	out := map[string]int{}
	for _, l := range strings.Split(string(body), "\r\n") {
		if f := strings.Fields(strings.TrimPrefix(l, "m=")); strings.HasPrefix(l, "m=") && len(f) > 1 {
			var p int
			fmt.Sscanf(f[1], "%d", &p)
			out[f[0]] = p
		}
	}
	return out
}

// TestMediaAllStreams: every stream of an anchored offer goes through the
// relay, video as well as audio (speermint-flows §8: the SBE relays the
// call's media, not its first stream); a stream the callee declines is
// declined to the caller; video RTP flows both ways through the relay;
// BYE ends every session of the call.
func TestMediaAllStreams(t *testing.T) {
	tp, media := alwaysAnchoring(t, 41200, 41299, 0, nil)
	caller, callee := newUA(t), newUA(t)
	audioA, videoA, textA, audioB, videoB := newUA(t), newUA(t), newUA(t), newUA(t), newUA(t)
	port := func(u *ua) int { return u.conn.LocalAddr().(*net.UDPAddr).Port }
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})

	body := avSDP(port(audioA), port(videoA), port(textA))
	msg := withBody(caller.request("INVITE", "sip:bob@b.example"), body)
	caller.send(tp.addr, msg)
	inv := callee.recv(3 * time.Second).(*sip.Request)
	offered := streamPorts(inv.Body())
	for m, orig := range map[string]int{"audio": port(audioA), "video": port(videoA), "text": port(textA)} {
		if offered[m] == 0 || offered[m] == orig {
			t.Fatalf("%s stream not anchored (port %d, the caller's %d):\n%s", m, offered[m], orig, inv.Body())
		}
	}
	if n := media.Sessions(); n != 3 {
		t.Fatalf("%d relay sessions for a three-stream offer", n)
	}
	ok := sip.NewResponseFromRequest(inv, 200, "OK", []byte(avSDP(port(audioB), port(videoB), 0)))
	ok.To().Params.Add("tag", "b")
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	callee.send(tp.addr, ok.String())
	ans := caller.status(3 * time.Second)
	answered := streamPorts(ans.Body())
	if ans.StatusCode != 200 || answered["video"] == 0 || answered["video"] == port(videoB) || answered["text"] != 0 {
		t.Fatalf("answer: %d\n%s", ans.StatusCode, ans.Body())
	}
	if n := media.Sessions(); n != 3 {
		// The declined stream's session waits for a later answer (another
		// fork's, the 200 after a 183); BYE ends it.
		t.Fatalf("%d relay sessions after the callee declined the text stream, want 3 until BYE", n)
	}
	relayA := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: answered["video"]}
	relayB := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: offered["video"]}
	expect := func(to *ua, payload string) {
		t.Helper()
		buf := make([]byte, 1500)
		_ = to.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := to.conn.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != payload {
			t.Fatalf("want %q, got %q (%v)", payload, buf[:n], err)
		}
	}
	_, _ = videoA.conn.WriteToUDP([]byte("video a->b"), relayA)
	expect(videoB, "video a->b")
	_, _ = videoB.conn.WriteToUDP([]byte("video b->a"), relayB)
	expect(videoA, "video b->a")

	bye := caller.request("BYE", "sip:bob@"+callee.addr(), "To: <sip:bob@b.example>;tag=b", "Call-ID: "+inv.CallID().Value(), "CSeq: 2 BYE")
	caller.send(tp.addr, bye)
	if r, ok := callee.recv(3 * time.Second).(*sip.Request); !ok || r.Method != sip.BYE {
		t.Fatal("BYE not forwarded")
	}
	for deadline := time.Now().Add(3 * time.Second); media.Sessions() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d media sessions after BYE", media.Sessions())
		}
	}
}

// TestMediaWebRTCNotAnchored: a browser's offer (ICE, DTLS-SRTP) keeps
// its media off the RTP relay even when the policy anchors every call; a
// plain RTP offer in the same setup is anchored (the test can fail).
func TestMediaWebRTCNotAnchored(t *testing.T) {
	tp, media := alwaysAnchoring(t, 41300, 41399, 0, nil)
	caller, callee := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})
	webrtc := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\n" +
		"a=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=candidate:1 1 udp 2122260223 10.0.0.5 50000 typ host\r\n"
	plain := avSDP(40100, 0, 0)
	for i, body := range []string{webrtc, plain} {
		msg := withBody(caller.request("INVITE", "sip:bob@b.example", fmt.Sprintf("Call-ID: webrtc-%d", i)), body)
		caller.send(tp.addr, msg)
		inv := callee.recv(3 * time.Second).(*sip.Request)
		if anchored := string(inv.Body()) != body; anchored != (i == 1) {
			t.Errorf("offer %d anchored %v (sessions %d):\n%s", i, anchored, media.Sessions(), inv.Body())
		}
	}
	if !webRTC([]byte(webrtc)) || webRTC([]byte(plain)) || !webRTC([]byte("m=audio 5 RTP/SAVP 0\r\n")) {
		t.Error("webRTC misreads an offer")
	}
}

// TestMediaStreamsRefused: what an offer or answer cannot make the relay
// do with its streams. A stream at another address than the party's first
// is declined (the relay would stream the callee's video to a third
// party); a port count ("5000/2") is declined, not an unreadable offer; a
// From tag with '#' (StreamKey's separator, in no valid tag) is not
// anchored; a 183 declining video does not take it from the 200 that
// accepts it; an answer declining its first stream still gets its other
// streams at the relay.
func TestMediaStreamsRefused(t *testing.T) {
	tp, media := alwaysAnchoring(t, 41300, 41399, 0, nil)
	caller, callee := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})
	invite := func(body string, hdrs ...string) *sip.Request {
		t.Helper()
		msg := withBody(caller.request("INVITE", "sip:bob@b.example", hdrs...), body)
		caller.send(tp.addr, msg)
		for {
			// Skip the ACKs the proxy sends for an earlier call's 486.
			if r, ok := callee.recv(3 * time.Second).(*sip.Request); ok && r.Method == sip.INVITE {
				return r
			}
		}
	}
	answer := func(inv *sip.Request, code int, body string) *sip.Response {
		t.Helper()
		res := sip.NewResponseFromRequest(inv, code, "", []byte(body))
		res.To().Params.Add("tag", "b")
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		callee.send(tp.addr, res.String())
		return caller.status(3 * time.Second)
	}

	// Video aimed at a third party (a media-level address of its own).
	third := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n" +
		"m=video 5006 RTP/AVP 96\r\nc=IN IP4 127.0.0.99\r\na=rtcp:5007 IN IP4 127.0.0.99\r\nm=video 5000/2 RTP/AVP 96\r\n"
	inv := invite(third, "Call-ID: refused-1")
	got := streamPorts(inv.Body())
	if got["audio"] == 0 || got["audio"] == 5004 || strings.Contains(string(inv.Body()), "m=video 5006") || strings.Contains(string(inv.Body()), "127.0.0.99") {
		t.Fatalf("offer with a third party's video:\n%s", inv.Body())
	}
	if n := media.Sessions(); n != 1 {
		t.Fatalf("%d sessions for an offer with one relayable stream", n)
	}
	answer(inv, 486, "")

	// '#' in the From tag: not anchored at all.
	inv = invite(avSDP(5004, 5006, 0), "Call-ID: refused-2", "From: <sip:carol@c.example>;tag=x#1")
	if streamPorts(inv.Body())["audio"] != 5004 {
		t.Fatalf("an offer from a tag with '#' was anchored:\n%s", inv.Body())
	}
	answer(inv, 486, "")

	// A 183 declining video, then a 200 taking it; an answer declining
	// audio still relays video.
	inv = invite(avSDP(5004, 5006, 0), "Call-ID: refused-3")
	ringing := answer(inv, 183, avSDP(6004, 0, 0))
	if streamPorts(ringing.Body())["video"] != 0 {
		t.Fatalf("183 declining video:\n%s", ringing.Body())
	}
	ok := answer(inv, 200, avSDP(0, 6006, 0))
	if p := streamPorts(ok.Body()); p["audio"] != 0 || p["video"] == 0 || p["video"] == 6006 {
		t.Fatalf("200 taking video (declined by the 183) and declining audio:\n%s", ok.Body())
	}
	if n := media.Sessions(); n != 2 {
		t.Fatalf("%d sessions, want the call's two", n)
	}
}

// TestMediaQuotaPerSource: calls from one untrusted source hold at most
// maxAnchoredPerSource relay sessions (a stream each): past it, a call's
// further streams, then whole calls, are not anchored; a trusted network's
// proxy is not counted.
func TestMediaQuotaPerSource(t *testing.T) {
	tp, media := alwaysAnchoring(t, 42000, 42999, 500, func(c *Config) {
		c.TrustedNetworks = []*net.IPNet{{IP: net.IPv4(192, 0, 2, 0), Mask: net.CIDRMask(24, 32)}} // loopback is not trusted
	})
	caller, callee := newUA(t), newUA(t)
	_ = tp.loc.Publish(context.Background(), "sip:alice@a.example", // registered from this host: the proxy may send there
		lsp.Binding{Contact: "sip:alice@" + callee.addr(), Received: callee.addr(), Expires: time.Now().Add(time.Hour)})
	calls := maxAnchoredPerSource/3 + 2 // three streams a call
	anchored := 0
	for i := range calls {
		body := avSDP(5004, 5006, 5008)
		msg := withBody(caller.request("INVITE", "sip:alice@a.example", fmt.Sprintf("Call-ID: quota-%d", i)), body)
		caller.send(tp.addr, msg)
		inv := callee.recv(3 * time.Second).(*sip.Request)
		if streamPorts(inv.Body())["audio"] != 5004 {
			anchored++
		}
	}
	if n := media.Sessions(); n != maxAnchoredPerSource {
		t.Fatalf("%d calls of three streams from one source hold %d relay sessions, want %d", calls, n, maxAnchoredPerSource)
	}
	if anchored != calls-1 {
		t.Fatalf("%d of %d calls anchored, want all but the last (whose source holds its share)", anchored, calls)
	}
}

// alwaysAnchoring starts a proxy whose media policy is "always", on a relay
// of ports lo..hi that may send to loopback; mutate changes its config.
func alwaysAnchoring(t *testing.T, lo, hi, sessions int, mutate func(*Config)) (*testProxy, *relay.Media) {
	t.Helper()
	media, err := relay.NewMedia(relay.MediaConfig{IP: "127.0.0.1", MinPort: lo, MaxPort: hi, MaxSessions: sessions,
		Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}}, AllowSelf: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	tp := startProxy(t, Proxying, func(c *Config) {
		c.Media, c.MediaPolicy = media, "always"
		if mutate != nil {
			mutate(c)
		}
	})
	return tp, media
}
