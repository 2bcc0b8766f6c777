package packaging

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/internal/mdblocks"
)

// walkDocs are the docs whose every sh block walkDocs runs.
var walkDocs = []string{"quickstart-federation.md", "credentials.md", "config.md", "quickstart-registrar-srv.md"}

// The docs' placeholders a reader replaces with their own values.
const (
	bootPlaceholder = "/ip4/198.51.100.10/tcp/4001/p2p/12D3KooWHe1X5455uzPDV2xL3Kkzxa4PNtbBTG9UjDaa8owofqdt"
	peerPlaceholder = "12D3KooW..."
)

// reader is the user the docs' blocks run as: a user with sudo, as the
// docs' reader is.
const reader = "lsnode-doc-reader"

// systemctlShim stands in for systemctl on a machine without systemd
// (CI): 'enable --now U', 'start U' and 'restart U' run the unit's
// ExecStart (its drop-ins' last one wins) as its User and Group in its
// WorkingDirectory, in the background; 'stop U' sends SIGTERM and waits;
// daemon-reload does nothing. Nothing else of the unit (sandboxing,
// restarts) applies. STATE is replaced by the test's directory.
const systemctlShim = `#!/bin/sh
set -eu
state=STATE
cmd=$1; shift
if [ "$cmd" = enable ] && [ "${1:-}" = --now ]; then cmd=start; shift; fi
[ "$cmd" = daemon-reload ] && exit 0
unit=${1%.service}
file=/lib/systemd/system/$unit.service
stop() {
  [ -f "$state/$unit.pid" ] || return 0
  pid=$(cat "$state/$unit.pid"); rm -f "$state/$unit.pid"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid"
}
start() {
  user=$(sed -n 's/^User=//p' "$file"); group=$(sed -n 's/^Group=//p' "$file")
  wd=$(sed -n 's/^WorkingDirectory=//p' "$file")
  exec_start=$(cat "$file" /etc/systemd/system/$unit.service.d/*.conf 2>/dev/null | sed -n 's/^ExecStart=//p' | tail -n 1)
  cd "${wd:-/}"
  setsid setpriv --reuid="$user" --regid="$group" --init-groups -- $exec_start >> "$state/$unit.log" 2>&1 < /dev/null &
  echo $! > "$state/$unit.pid"
}
case $cmd in
start) start ;;
stop) stop ;;
restart) stop; start ;;
*) echo "systemctl stand-in: $cmd is not done here" >&2; exit 1 ;;
esac
`

// walk runs the docs' sh blocks as their reader would (reader, with
// sudo), and records which it ran.
type walk struct {
	t     *testing.T
	dir   string
	state string
	ran   map[string]map[int]bool
}

// newWalk makes reader (removed at the test's end) with sudo whose
// secure_path starts with the systemctl stand-in.
func newWalk(t *testing.T, dir string) *walk {
	shims := filepath.Join(dir, "shims")
	state := filepath.Join(dir, "systemd")
	for _, d := range []string{shims, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(shims, "systemctl"), []byte(strings.Replace(systemctlShim, "STATE", state, 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	// The service's user and the reader must reach the test's directories.
	for d := dir; d != "/" && d != "." && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run(t, "getent", "passwd", reader); err == nil {
		t.Fatalf("user %s exists already: a run of this test left it", reader)
	}
	if out, err := run(t, "useradd", "--no-create-home", "--home-dir", dir, "--shell", "/bin/bash", reader); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	sudoers := "/etc/sudoers.d/" + reader
	t.Cleanup(func() {
		os.Remove(sudoers)
		run(t, "userdel", reader)
	})
	rule := fmt.Sprintf("Defaults:%s secure_path=\"%s:/usr/sbin:/usr/bin:/sbin:/bin\"\n%s ALL=(ALL:ALL) NOPASSWD: ALL\n", reader, shims, reader)
	if err := os.WriteFile(sudoers, []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "visudo", "-cf", sudoers); err != nil {
		t.Fatalf("sudoers: %v\n%s", err, out)
	}
	w := &walk{t: t, dir: dir, state: state, ran: map[string]map[int]bool{}}
	t.Cleanup(func() { w.sh(dir, "systemctl stop lsnode", "") })
	return w
}

// readerDir makes a directory of reader's under the test's.
func (w *walk) readerDir(name string) string {
	p := filepath.Join(w.dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		w.t.Fatal(err)
	}
	if out, err := run(w.t, "chown", reader, p); err != nil {
		w.t.Fatalf("chown: %v\n%s", err, out)
	}
	return p
}

// block runs sh block i of doc in dir as reader (asRoot: as root, for
// the federation operator's blocks), its placeholders replaced by subst
// (each must occur), with stdin as its standard input, and returns what
// it printed; it fails the test if the block fails.
func (w *walk) block(doc string, i int, dir string, asRoot bool, subst map[string]string, stdin string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join("../docs", doc))
	if err != nil {
		w.t.Fatal(err)
	}
	blocks := mdblocks.Find(b, "sh")
	if i >= len(blocks) {
		w.t.Fatalf("%s has %d sh blocks, not %d", doc, len(blocks), i+1)
	}
	text := blocks[i].Text
	for from, to := range subst {
		if !strings.Contains(text, from) {
			w.t.Fatalf("%s line %d: no %q in the block", doc, blocks[i].Line, from)
		}
		text = strings.ReplaceAll(text, from, to)
	}
	if w.ran[doc] == nil {
		w.ran[doc] = map[int]bool{}
	}
	w.ran[doc][i] = true
	as := reader
	if asRoot {
		as = ""
	}
	start := time.Now()
	out, err := w.sh(dir, text, as, stdin)
	if err != nil {
		w.t.Fatalf("%s line %d: %v\n%s\n-- printed:\n%s", doc, blocks[i].Line, err, text, out)
	}
	w.t.Logf("%s line %d: ran in %v; printed %d lines, the last %q", doc, blocks[i].Line, time.Since(start).Round(time.Millisecond), strings.Count(out, "\n"), lastLine(out))
	return out
}

// sh runs script with bash -euo pipefail in dir, as user (root if ""),
// with stdin (none if ""), for at most 2 minutes.
func (w *walk) sh(dir, script string, user ...string) (string, error) {
	name, args := "bash", []string{"-euo", "pipefail", "-c", script}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "LANG=C"}
	if len(user) > 0 && user[0] != "" {
		name, args = "setpriv", append([]string{"--reuid=" + user[0], "--regid=" + user[0], "--init-groups", "bash"}, args[0:]...)
	} else {
		env[0] = "PATH=" + filepath.Join(w.dir, "shims") + ":/usr/sbin:/usr/bin:/sbin:/bin"
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	if len(user) > 1 && user[1] != "" {
		cmd.Stdin = strings.NewReader(user[1])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// checkAllRan fails the test for a command block of walkDocs it did not
// run, and for a block of a language it neither runs nor knows as a
// config or an output (a bash or console block would escape it).
func (w *walk) checkAllRan() {
	w.t.Helper()
	known := map[string]bool{"sh": true, "yaml": true, "json": true, "ini": true, "": true}
	for _, doc := range walkDocs {
		b, err := os.ReadFile(filepath.Join("../docs", doc))
		if err != nil {
			w.t.Fatal(err)
		}
		for _, bl := range mdblocks.Find(b, "") {
			if !known[bl.Lang] {
				w.t.Errorf("%s line %d: a %q block: commands go in sh blocks (which this test runs)", doc, bl.Line, bl.Lang)
			}
		}
		for i, bl := range mdblocks.Find(b, "sh") {
			if !w.ran[doc][i] {
				w.t.Errorf("%s line %d: a command block no test runs", doc, bl.Line)
			}
		}
	}
}

// operatorFiles are what the walk puts in /etc besides the package's own;
// they go before the purge, as an operator's would.
var operatorFiles = []string{"/etc/lsnode/a.example.pem", "/etc/lsnode/a.example.key", "/etc/lsnode/users.json",
	"/etc/lsnode/member.pem", "/etc/lsnode/fed-ca.pem", "/etc/lsnode/swarm.key", "/etc/lsnode/crl.pem",
	"/etc/lsnode/domains-ca.pem", "/etc/lsnode/public.yaml", "/etc/systemd/system/lsnode.service.d/override.conf",
	"/etc/systemd/system/lsnode.service.d"}

// walkQuickstarts runs, as reader on the installed package, the
// federation quick start with the credentials page (own-CA route), the
// credentials' CSR route against an openssl CA, the config page's check
// and the registrar quick start's credential block; a federation CA and
// a bootstrap member stand for the federation's operator (its blocks run
// as root). The node the quick start starts must get ready, count the
// bootstrap member and have its binding read through it; the two-overlay
// drop-in must run both nodes.
func walkQuickstarts(t *testing.T, w *walk) {
	for _, a := range []string{"tcp4:127.0.0.1:4001", "tcp4:127.0.0.1:4002", "tcp4:127.0.0.1:9180", "tcp4:127.0.0.1:9181", "udp4:127.0.0.1:5060"} {
		network, addr, _ := strings.Cut(a, ":")
		if busy(network, addr) {
			t.Fatalf("%s %s is taken: the quick start's node needs it", network, addr)
		}
	}
	madeSystemd := false
	if _, err := os.Stat("/etc/systemd/system"); err != nil {
		madeSystemd = true
	}
	// What the walk made goes before the purge, also when it fails.
	tidy := func() {
		w.sh(w.dir, "systemctl stop lsnode")
		for _, f := range operatorFiles {
			os.Remove(f)
		}
		if madeSystemd {
			os.Remove("/etc/systemd/system")
		}
	}
	t.Cleanup(tidy)
	defer tidy()
	home, csr, srv := w.readerDir("reader"), w.readerDir("csr"), w.readerDir("srv")
	fed := filepath.Join(w.dir, "fed")
	if err := os.Mkdir(fed, 0o700); err != nil {
		t.Fatal(err)
	}
	w.block("config.md", 0, home, false, nil, "")
	w.block("credentials.md", 0, home, false, nil, "")
	out := w.block("credentials.md", 2, home, false, nil, "bob's first password\nbob's second password\n")
	if !strings.Contains(out, "alice") || strings.Contains(out, "bob's") {
		t.Fatalf("users block printed:\n%s", out)
	}
	if users, err := os.ReadFile("/etc/lsnode/users.json"); err != nil || strings.Contains(string(users), `"bob"`) || !strings.Contains(string(users), `"alice"`) {
		t.Fatalf("users.json after the block (bob removed): %v\n%s", err, users)
	}

	// The federation's operator: a CA, domain trust anchors of its own
	// with the reader's CA added, and a bootstrap member.
	bootAddr, bootID := startBootstrap(t, w, fed, filepath.Join(home, "a.example-ca", "ca.pem"))
	id := w.block("quickstart-federation.md", 1, home, false, map[string]string{bootPlaceholder: bootAddr}, "")
	peer := lastLine(id)
	if !strings.HasPrefix(peer, "12D3KooW") {
		t.Fatalf("lsnode id printed %q", id)
	}
	w.block("quickstart-federation.md", 2, fed, true, map[string]string{peerPlaceholder: peer}, "")
	for from, to := range map[string]string{"member.pem": "member.pem", "fed-ca/ca.pem": "fed-ca.pem", "fed-ca/swarm.key": "swarm.key",
		"fed-ca/crl.pem": "crl.pem", "domains-ca.pem": "domains-ca.pem"} {
		copyFile(t, filepath.Join(fed, from), filepath.Join(home, to))
	}
	run(t, "chown", "-R", reader, home)
	w.block("quickstart-federation.md", 3, home, false, nil, "")
	w.block("credentials.md", 3, home, false, nil, "")
	out = w.block("quickstart-federation.md", 4, home, false, nil, "")
	ready, _ := w.sh(home, "curl -s 127.0.0.1:9180/readyz")
	if ready != "ready\n" || !strings.Contains(out, `"size_estimate": 2`) || !strings.Contains(out, `"answered_by": "`+peer) {
		log, _ := os.ReadFile(filepath.Join(w.state, "lsnode.log"))
		t.Fatalf("the started node is not ready (%q) in an overlay of 2:\n%s\n-- its log:\n%s", ready, out, log)
	}
	// The federation takes the node's word: a binding it publishes is
	// read back through the bootstrap member.
	if out, err := w.sh(home, "lsnode publish --strict --config /etc/lsnode/node.yaml --aor sip:alice@a.example --contact sip:alice@192.0.2.5:5060 --expires 60"); err != nil {
		t.Fatalf("publish through the new node: %v\n%s", err, out)
	}
	var st string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if st, err = w.sh(fed, "lsnode lookup --strict --config boot.yaml sip:alice@a.example"); err == nil && strings.Contains(st, "192.0.2.5:5060") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bootstrap member %s does not read the new node's binding: %v\n%s", bootID, err, st)
		}
	}

	// Both overlays from one unit.
	out = w.block("quickstart-federation.md", 5, home, false, nil, "")
	if ready, _ := w.sh(home, "curl -s --retry 30 --retry-delay 1 --retry-connrefused 127.0.0.1:9180/readyz"); lastLine(ready) != "ready" || lastLine(out) != "ready" {
		log, _ := os.ReadFile(filepath.Join(w.state, "lsnode.log"))
		t.Fatalf("after the drop-in: federation node %q, public node %q\n-- the log:\n%s", ready, lastLine(out), log)
	}

	// The CSR route, signed by an openssl CA of the reader's.
	if out, err := w.sh(csr, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=test-ca -days 2 2>&1", reader); err != nil {
		t.Fatalf("openssl CA: %v\n%s", err, out)
	}
	w.block("credentials.md", 1, csr, false, nil, "")
	if out, err := w.sh(csr, "openssl verify -CAfile ca.pem a.example.pem && openssl x509 -in a.example.pem -noout -ext subjectAltName"); err != nil || !strings.Contains(out, "DNS:a.example") {
		t.Fatalf("the CSR route's certificate: %v\n%s", err, out)
	}
	w.block("quickstart-registrar-srv.md", 0, srv, false, nil, "")
	for _, f := range []string{"a.example.pem", "a.example.key", "ca.pem", "users.json"} {
		if _, err := os.Stat(filepath.Join(srv, f)); err != nil {
			t.Errorf("registrar quick start: %v", err)
		}
	}
	w.checkAllRan()
}

// busy reports whether addr can not be listened on.
func busy(network, addr string) bool {
	if network == "udp4" {
		c, err := net.ListenPacket(network, addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}
	l, err := net.Listen(network, addr)
	if err == nil {
		l.Close()
	}
	return err != nil
}

// startBootstrap makes the federation's CA in dir and starts a member of
// overlay fed on loopback (its trust anchor: anchor), stopped at the
// test's end; it returns the member's address.
func startBootstrap(t *testing.T, w *walk, dir, anchor string) (addr, id string) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// The federation's domain trust anchors: a CA of its own, and the
	// one the reader sent.
	if out, err := w.sh(dir, "lsnode domain ca --dir domains-ca >/dev/null"); err != nil {
		t.Fatalf("the federation's domain CA: %v\n%s", err, out)
	}
	own, err := os.ReadFile(filepath.Join(dir, "domains-ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := os.ReadFile(anchor)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "domains-ca.pem"), append(own, theirs...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`name: boot
trust_anchors: [domains-ca.pem]
overlay:
  name: fed
  identity_key: boot.key
  listen: [/ip4/127.0.0.1/tcp/%d]
  data_dir: boot-data
  member_ca: [fed-ca/ca.pem]
  member_cert: boot-member.pem
  psk_file: fed-ca/swarm.key
  crl_file: fed-ca/crl.pem
`, port)
	if err := os.WriteFile(filepath.Join(dir, "boot.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := w.sh(dir, "lsnode ca init --dir fed-ca && lsnode ca sign --dir fed-ca --config boot.yaml >/dev/null && lsnode id --config boot.yaml")
	if err != nil {
		t.Fatalf("federation CA and bootstrap member: %v\n%s", err, out)
	}
	id = lastLine(out)
	cmd := exec.Command("/usr/bin/lsnode", "run", "--config", "boot.yaml")
	cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "boot.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	})
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, id), id
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
