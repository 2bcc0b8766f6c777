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
// call's media, not its first stream); a stream the callee declines has
// its session ended; video RTP flows both ways through the relay; BYE
// ends every session of the call.
func TestMediaAllStreams(t *testing.T) {
	media, err := relay.NewMedia(relay.MediaConfig{IP: "127.0.0.1", MinPort: 41200, MaxPort: 41299, Allow: []*net.IPNet{{IP: net.IPv4(127, 0, 0, 0), Mask: net.CIDRMask(8, 32)}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	tp := startProxy(t, Proxying, func(c *Config) { c.Media, c.MediaPolicy = media, "always" })
	caller, callee := newUA(t), newUA(t)
	audioA, videoA, textA, audioB, videoB := newUA(t), newUA(t), newUA(t), newUA(t), newUA(t)
	port := func(u *ua) int { return u.conn.LocalAddr().(*net.UDPAddr).Port }
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@" + callee.addr(), Expires: time.Now().Add(time.Hour)})

	body := avSDP(port(audioA), port(videoA), port(textA))
	msg := strings.Replace(caller.request("INVITE", "sip:bob@b.example"), "Content-Length: 0\r\n\r\n",
		fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(body), body), 1)
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
	if n := media.Sessions(); n != 2 {
		t.Fatalf("%d relay sessions after the callee declined the text stream, want 2", n)
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
