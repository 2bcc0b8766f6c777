package testnet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// uaProc is a real SIP UA (baresip, linphonec) run by a test.
type uaProc struct {
	name  string
	cmd   *exec.Cmd
	out   *lockedBuffer
	stdin io.WriteCloser
	done  chan struct{}
}

func startUA(t *testing.T, name, dir string, args ...string) *uaProc {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		t.Fatalf("%s not installed (Debian packages baresip-core, linphone-cli; scripts/deps test installs them)", args[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir) // linphonec keeps its state under HOME
	p := &uaProc{name: name, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		cancel()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.out.Bytes()))
		}
	})
	return p
}

// await polls the UA's output until re matches, or fails the test.
func (p *uaProc) await(t *testing.T, re string, timeout time.Duration, poke func()) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for !rx.Match(p.out.Bytes()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within %v", p.name, re, timeout)
		}
		select {
		case <-p.done:
			if !rx.Match(p.out.Bytes()) {
				t.Fatalf("%s exited without %q", p.name, re)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if poke != nil {
			poke()
		}
	}
}

func (p *uaProc) say(line string) { _, _ = io.WriteString(p.stdin, line+"\n") }

// freeSIPPort returns a port p with UDP and TCP p and p+1 free on
// 127.0.0.1 (baresip listens on all three transports, TLS on p+1).
func freeSIPPort(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := freeUDPPort(t)
		var closers []io.Closer
		ok := true
		for _, port := range []int{p, p + 1} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, l)
			u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u)
		}
		for _, c := range closers {
			c.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free SIP port pair")
	return 0
}

// baresip runs baresip 1.0 as user u through registrar reg (its outbound
// proxy), answering calls itself, with SIP tracing on.
func baresip(t *testing.T, u testnet.User, reg string, extra ...string) *uaProc {
	t.Helper()
	return baresipWith(t, u, reg, "", extra...)
}

// baresipWith is baresip with more account parameters (";regid=1").
func baresipWith(t *testing.T, u testnet.User, reg, params string, extra ...string) *uaProc {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
net_interface 127.0.0.1
audio_player aubridge,nil
audio_source ausine,440
audio_alert aubridge,nil
module_path /usr/lib/baresip/modules
module opus.so
module g711.so
module ausine.so
module aubridge.so
module uuid.so
module account.so
module menu.so
`, freeSIPPort(t))
	user := strings.TrimPrefix(u.AOR, "sip:")
	account := fmt.Sprintf("<%s>;auth_user=%s;auth_pass=%s;outbound=\"sip:%s\";regint=600;answermode=auto;audio_codecs=opus/48000/2,PCMU%s\n",
		u.AOR, u.Username, u.Password, reg, params)
	for name, body := range map[string]string{"config": config, "accounts": account} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return startUA(t, "baresip "+user, dir, append([]string{"baresip", "-f", dir, "-s"}, extra...)...)
}

// linphonec runs linphonec 5 as user u through registrar reg, answering
// calls itself (-a), driven on its standard input.
func linphonec(t *testing.T, u testnet.User, domain, reg string) *uaProc {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".local/share/linphone"), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=0
default_proxy=0
bind_address=127.0.0.1
[rtp]
audio_rtp_port=%d
[proxy_0]
reg_proxy=<sip:%s>
reg_route=<sip:%s;lr>
reg_identity=%s
reg_expires=600
reg_sendregister=1
publish=0
[auth_info_0]
username=%s
passwd=%s
realm=%s
domain=%s
`, freeUDPPort(t), freeUDPPort(t), reg, reg, u.AOR, u.Username, u.Password, domain, domain)
	if err := os.WriteFile(filepath.Join(dir, "rc"), []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	// -d 6 writes the SIP trace (with the Authorization) to the log file.
	return startUA(t, "linphonec "+u.AOR, dir, "linphonec", "-c", filepath.Join(dir, "rc"), "-a", "-d", "6", "-l", filepath.Join(dir, "log"))
}

// TestRealUAs: baresip (a.example) and linphonec (b.example) register with
// the shipped digest defaults (SHA-256 and MD5 offered in one challenge;
// MD5 alone to baresip, which fails on any challenge it cannot answer) and
// call each other across the two domains through the overlay. linphone
// answers SHA-256, baresip MD5.
func TestRealUAs(t *testing.T) {
	m, nw := startCallNet(t, nil)
	aReg := nw.Node(domainNodes(nw, "a.example")[0]).SIPAddr()
	bReg := nw.Node(domainNodes(nw, "b.example")[0]).SIPAddr()
	alice, bob := domainUser(m, "a.example", 0), domainUser(m, "b.example", 1)

	lp := linphonec(t, bob, "b.example", bReg)
	lp.await(t, `registered, identity=`+regexp.QuoteMeta(bob.AOR), 20*time.Second, func() { lp.say("status register") })
	lpLog := func() string {
		b, _ := os.ReadFile(filepath.Join(lp.cmd.Dir, "log"))
		return string(b)
	}
	t.Cleanup(func() {
		if t.Failed() {
			var sip []string
			for _, l := range strings.Split(lpLog(), "\n") {
				if strings.HasPrefix(l, "SIP/2.0 ") || strings.HasPrefix(l, "INVITE ") || strings.Contains(l, "error") {
					sip = append(sip, l)
				}
			}
			t.Logf("linphonec's SIP:\n%s", tail([]byte(strings.Join(sip, "\n"))))
		}
	})
	if !regexp.MustCompile(`Authorization: +Digest [^\n]*algorithm=SHA-256`).MatchString(lpLog()) {
		t.Fatalf("linphone did not answer with SHA-256:\n%s", tail([]byte(lpLog())))
	}

	// alice (baresip) calls bob (linphonec) through a.example's node: the
	// overlay has bob's Contact.
	bs := baresip(t, alice, aReg, "-e", "/dial "+bob.AOR, "-t", "10")
	bs.await(t, `\{0/UDP/v4\} 200 OK`, 20*time.Second, nil)
	bs.await(t, `Call established: `+regexp.QuoteMeta(bob.AOR), 20*time.Second, nil)
	out := string(bs.out.Bytes())
	// baresip is challenged with MD5 alone and answers it (no algorithm
	// parameter: MD5, a 32-digit response).
	if !regexp.MustCompile(`Authorization: Digest [^\n]*response="[0-9a-f]{32}"`).MatchString(out) ||
		strings.Contains(out, "algorithm=SHA-256") || strings.Contains(out, "Function not implemented") {
		t.Fatalf("baresip did not register with MD5:\n%s", tail(bs.out.Bytes()))
	}
	bs.await(t, `terminated`, 30*time.Second, nil)

	// bob calls alice: baresip answers by itself.
	callee := baresip(t, alice, aReg, "-t", "30")
	callee.await(t, `\{0/UDP/v4\} 200 OK`, 20*time.Second, nil)
	lp.say("call " + alice.AOR)
	callee.await(t, `Call established`, 20*time.Second, nil)
	lp.say("terminate")
	callee.await(t, `session closed|terminated`, 20*time.Second, nil) // baresip got the BYE
}
