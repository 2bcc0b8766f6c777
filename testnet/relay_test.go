package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/testnet"
)

// TestRelayCredentials: a SIP user fetches ephemeral TURN credentials from
// a domain node's HTTP endpoint with digest (their SIP password), and
// coturn's turnutils_uclient relays through that node's TURN server with
// them; no or wrong credentials get 401.
func TestRelayCredentials(t *testing.T) {
	for _, tool := range []string{"turnutils_uclient", "turnutils_peer"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian package coturn; scripts/deps test installs it)", tool)
		}
	}
	m, nw := startCallNet(t, nil)
	idx := domainNodes(nw, "a.example")[0]
	url := "http://" + nw.Node(idx).HTTPAddr() + "/turn/credentials"
	alice := domainUser(m, "a.example", 0)

	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("without credentials: %d, want 401 with a challenge", res.StatusCode)
	}
	wrong := &http.Client{Transport: &digest.Transport{Username: alice.Username, Password: "not-the-password"}}
	if res, err = wrong.Get(url); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("wrong password: %d, want 401", res.StatusCode)
	}
	client := &http.Client{Transport: &digest.Transport{Username: alice.Username, Password: alice.Password}}
	if res, err = client.Get(url); err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var creds struct {
		Username, Password string
		TTL                int
		URIs               []string
	}
	if err := json.NewDecoder(res.Body).Decode(&creds); err != nil || res.StatusCode != 200 {
		t.Fatalf("credentials: %d %v", res.StatusCode, err)
	}
	if !strings.HasSuffix(creds.Username, ":"+strings.TrimPrefix(alice.AOR, "sip:")) || len(creds.URIs) != 2 {
		t.Fatalf("credentials %+v", creds)
	}

	// A UDP echo peer, and coturn's client through the node's relay.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerPort := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	peer := exec.CommandContext(ctx, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = peer.Process.Kill(); _ = peer.Wait() }()
	time.Sleep(200 * time.Millisecond)
	_, turnPort, _ := net.SplitHostPort(nw.Node(idx).Relay().Addr())
	var out bytes.Buffer
	uc := exec.CommandContext(ctx, "turnutils_uclient", "-u", creds.Username, "-w", creds.Password, "-e", "127.0.0.1",
		"-r", strconv.Itoa(peerPort), "-p", turnPort, "-n", "10", "-l", "160", "-c", "-z", "5", "127.0.0.1")
	uc.Stdout, uc.Stderr = &out, &out
	if err := uc.Run(); err != nil || !strings.Contains(out.String(), "tot_send_msgs=10, tot_recv_msgs=10") {
		t.Fatalf("turnutils_uclient with the fetched credentials: %v\n%s", err, out.String())
	}
}

// startSippText is startSipp with a scenario given as text (a variant of
// one in testdata/sipp).
func startSippText(t *testing.T, name, scenario string, port int, args ...string) *sippProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".xml")
	if err := os.WriteFile(path, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/sipp")
	rel, err := filepath.Rel(abs, path)
	if err != nil {
		t.Fatal(err)
	}
	return startSipp(t, name, rel, port, args...)
}

// TestProxyAnchorsMedia: with proxy.media "always" a sipp call through
// a.example's proxy has both SDPs pointing at a.example's RTP relay (sipp
// checks the m= port of the offer it receives and of the answer), RTP
// crosses it both ways, and the relay session is gone after the BYE.
func TestProxyAnchorsMedia(t *testing.T) { anchoredCall(t, false) }

// TestProxyUsesOverlayRelay: the same call when a.example's node has no
// media relay: its proxy anchors the call on the one an overlay-only node
// announces, over the overlay's media control protocol.
func TestProxyUsesOverlayRelay(t *testing.T) { anchoredCall(t, true) }

func anchoredCall(t *testing.T, remote bool) {
	base := 44000 + 2*(os.Getpid()%400)
	relayNode := ""
	m, nw := startCallNet(t, func(_ *testnet.Manifest, c *node.Config) {
		local := c.Domain == "a.example" && !remote
		if remote && c.Domain == "" && relayNode == "" {
			local, relayNode = true, c.Name
		}
		if local {
			c.Relay.MediaIP, c.Relay.MediaPorts = "127.0.0.1", fmt.Sprintf("%d-%d", base, base+99)
			// The sipp parties are on loopback, on this host, which the
			// media policy denies.
			c.Relay.Allow, c.Relay.AllowSelf = []string{"127.0.0.0/8"}, true
			base += 100
		}
		if c.Domain == "a.example" {
			c.Proxy.Media = "always"
		}
	})
	aIdx, bIdx := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")[0]
	mIdx := aIdx
	if remote {
		for i, n := range m.Nodes {
			if n.Name == relayNode {
				mIdx = i
			}
		}
		waitFor(t, 10*time.Second, "the relay's announcement", func() error {
			for _, svcs := range nw.Node(aIdx).Overlay().Services() {
				for _, s := range svcs {
					if s == relay.MediaService {
						return nil
					}
				}
			}
			return fmt.Errorf("not announced")
		})
	}
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	relayPorts := `m=audio 4[4-5][0-9][0-9][0-9] `
	check := func(scenario, recv string) string {
		b, err := os.ReadFile(filepath.Join("testdata/sipp", scenario))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if !strings.Contains(s, recv) {
			t.Fatalf("%s has no %s", scenario, recv)
		}
		open := strings.TrimSuffix(recv, "/>") + ">"
		s = strings.Replace(s, recv, open+`
    <action><ereg regexp="`+relayPorts+`" search_in="body" check_it="true" assign_to="relayed"/></action>
  </recv>`, 1)
		return strings.Replace(s, "</scenario>", `  <Reference variables="relayed"/>
</scenario>`, 1)
	}
	uasPort := freeUDPPort(t)
	uas := startSippText(t, "uas-media", check("uas.xml", `<recv request="INVITE" crlf="true"/>`), uasPort, "-m", "1", "-timeout", "40s",
		"-rtp_echo", "-mp", fmt.Sprint(freeUDPPort(t)))
	if err := (sippRun{registrar: nw.Node(bIdx).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	// The caller streams one second of PCMU (50 packets) after its ACK; the
	// callee (sipp -rtp_echo) sends every packet back: both directions
	// cross the relay.
	wav := filepath.Join(t.TempDir(), "silence.wav")
	if err := os.WriteFile(wav, pcmuWAV(8000), 0o644); err != nil {
		t.Fatal(err)
	}
	uacScen := strings.Replace(check("uac.xml", `<recv response="200" rtd="true" rrs="true" timeout="10000"/>`),
		`<pause milliseconds="200"/>`, `<nop><action><exec rtp_stream="`+wav+`,1,0"/></action></nop>
  <pause milliseconds="1500"/>`, 1)
	uac := startSippText(t, "uac-media", uacScen, freeUDPPort(t), nw.Node(aIdx).SIPAddr(),
		"-s", user, "-key", "domain", "b.example", "-m", "1", "-timeout", "30s", "-mp", fmt.Sprint(freeUDPPort(t)))
	if err := uac.wait(45 * time.Second); err != nil {
		t.Fatal(err, "\ncallee:", uas.wait(time.Second))
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	media := nw.Node(mIdx).Media()
	if st := nw.Node(aIdx).Proxy().Stats(); st.Anchored != 1 || media.Sessions() != 0 {
		t.Fatalf("anchored %d calls, %d sessions left after BYE", st.Anchored, media.Sessions())
	}
	// 50 packets out and their echoes back, all through the relay (some
	// echoes may still be in flight when the caller hangs up).
	if f := media.Forwarded(); f < 80 {
		t.Fatalf("relay forwarded %d RTP packets, want the caller's 50 and most echoes", f)
	}
	t.Logf("relay forwarded %d packets, dropped %d", media.Forwarded(), media.Dropped())
}

// pcmuWAV is n samples of PCMU silence in a WAV file (sipp rtp_stream).
func pcmuWAV(n int) []byte {
	var b bytes.Buffer
	le := func(v uint32, size int) {
		for i := 0; i < size; i++ {
			b.WriteByte(byte(v >> (8 * i)))
		}
	}
	b.WriteString("RIFF")
	le(uint32(38+n), 4)
	b.WriteString("WAVEfmt ")
	le(18, 4)   // fmt chunk size
	le(7, 2)    // WAVE_FORMAT_MULAW
	le(1, 2)    // mono
	le(8000, 4) // sample rate
	le(8000, 4) // byte rate
	le(1, 2)    // block align
	le(8, 2)    // bits per sample
	le(0, 2)    // extension size
	b.WriteString("data")
	le(uint32(n), 4)
	b.Write(bytes.Repeat([]byte{0xff}, n))
	return b.Bytes()
}
