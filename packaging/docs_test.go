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

// The stand-ins for sudo and systemctl (CI runs as root, without systemd).
const (
	sudoShim = `#!/bin/sh
# sudo as root: the command itself, or with -u USER as USER (setpriv execs it).
if [ "$1" = -u ]; then
  u=$2; shift 2
  exec setpriv --reuid="$u" --regid="$(id -gn "$u")" --init-groups -- "$@"
fi
exec "$@"
`
	systemctlShim = `#!/bin/sh
# systemctl without systemd: 'enable --now U' and 'start U' run the unit's
# ExecStart as its User and Group in its WorkingDirectory, in the
# background; 'stop U' sends SIGTERM and waits. Nothing else of the unit
# (sandboxing, restarts) applies.
set -eu
cmd=$1; shift
if [ "$cmd" = enable ] && [ "${1:-}" = --now ]; then cmd=start; shift; fi
unit=${1%.service}
file=/lib/systemd/system/$unit.service
state=$SYSTEMCTL_STATE/$unit
case $cmd in
start)
  user=$(sed -n 's/^User=//p' "$file"); group=$(sed -n 's/^Group=//p' "$file")
  wd=$(sed -n 's/^WorkingDirectory=//p' "$file"); exec_start=$(sed -n 's/^ExecStart=//p' "$file")
  cd "${wd:-/}"
  setsid setpriv --reuid="$user" --regid="$group" --init-groups -- $exec_start >> "$state.log" 2>&1 < /dev/null &
  echo $! > "$state.pid" ;;
stop)
  [ -f "$state.pid" ] || exit 0
  pid=$(cat "$state.pid"); rm -f "$state.pid"
  kill -TERM "$pid" 2>/dev/null || exit 0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
  kill -KILL "$pid" ;;
*) echo "systemctl stand-in: $cmd is not done here" >&2; exit 1 ;;
esac
`
)

// walk runs the docs' sh blocks as a reader of them would, in a shell
// whose PATH has the installed lsnode and the stand-ins, and records
// which it ran.
type walk struct {
	t     *testing.T
	dir   string
	env   []string
	state string
	ran   map[string]map[int]bool
}

func newWalk(t *testing.T, dir string) *walk {
	shims := filepath.Join(dir, "shims")
	state := filepath.Join(dir, "systemd")
	for _, d := range []string{shims, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{"sudo": sudoShim, "systemctl": systemctlShim} {
		if err := os.WriteFile(filepath.Join(shims, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The service's user must reach the directories the reader works in.
	for d := dir; d != "/" && d != "." && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := &walk{t: t, dir: dir, state: state, ran: map[string]map[int]bool{},
		env: []string{"PATH=" + shims + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "LANG=C",
			"SYSTEMCTL_STATE=" + state, "BOB_PASSWORD=bob's first password", "BOB_NEW_PASSWORD=bob's second password"}}
	t.Cleanup(func() { w.sh(dir, "systemctl stop lsnode") })
	return w
}

// block runs sh block i of doc in dir, its placeholders replaced by
// subst (each must occur), and returns what it printed; it fails the
// test if the block fails.
func (w *walk) block(doc string, i int, dir string, subst map[string]string) string {
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
	start := time.Now()
	out, err := w.sh(dir, text)
	if err != nil {
		w.t.Fatalf("%s line %d: %v\n%s\n-- printed:\n%s", doc, blocks[i].Line, err, text, out)
	}
	w.t.Logf("%s line %d: ran in %v; printed %d lines, the last %q", doc, blocks[i].Line, time.Since(start).Round(time.Millisecond), strings.Count(out, "\n"), lastLine(out))
	return out
}

// sh runs script with bash -euo pipefail in dir, at most 2 minutes.
func (w *walk) sh(dir, script string) (string, error) {
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = dir, w.env
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

// checkAllRan fails the test for a block of walkDocs it did not run.
func (w *walk) checkAllRan() {
	w.t.Helper()
	for _, doc := range walkDocs {
		b, err := os.ReadFile(filepath.Join("../docs", doc))
		if err != nil {
			w.t.Fatal(err)
		}
		for i, bl := range mdblocks.Find(b, "sh") {
			if !w.ran[doc][i] {
				w.t.Errorf("%s line %d: a command block no test runs", doc, bl.Line)
			}
		}
	}
}

// operatorFiles are what the walk puts in /etc/lsnode besides the
// package's own; they go before the purge, as an operator's would.
var operatorFiles = []string{"a.example.pem", "a.example.key", "users.json", "member.pem", "fed-ca.pem", "swarm.key", "crl.pem", "domains-ca.pem"}

// walkQuickstarts runs, on the installed package, the federation quick
// start with the credentials page (own-CA route) in a reader's directory,
// the credentials' CSR route against an openssl CA, the config page's
// check and the registrar quick start's credential block; a federation
// CA and a bootstrap member stand for the federation's operator. The node
// the quick start starts must get ready and count the bootstrap member.
func walkQuickstarts(t *testing.T, w *walk) {
	reader, fed, csr, srv := mkdirs(t, w.dir, "reader", "fed", "csr", "srv")
	w.block("config.md", 0, reader, nil)
	w.block("credentials.md", 0, reader, nil)
	if out := w.block("credentials.md", 2, reader, nil); !strings.Contains(out, "alice") || strings.Contains(out, "bob's") {
		t.Fatalf("users block printed:\n%s", out)
	}

	// The federation's operator: a CA and a bootstrap member.
	bootAddr := startBootstrap(t, w, fed, filepath.Join(reader, "a.example-ca", "ca.pem"))
	id := w.block("quickstart-federation.md", 1, reader, map[string]string{bootPlaceholder: bootAddr})
	peer := lastLine(id)
	if !strings.HasPrefix(peer, "12D3KooW") {
		t.Fatalf("lsnode id printed %q", id)
	}
	w.block("quickstart-federation.md", 2, fed, map[string]string{peerPlaceholder: peer})
	for from, to := range map[string]string{"member.pem": "member.pem", "fed-ca/ca.pem": "fed-ca.pem", "fed-ca/swarm.key": "swarm.key", "fed-ca/crl.pem": "crl.pem"} {
		copyFile(t, filepath.Join(fed, from), filepath.Join(reader, to))
	}
	copyFile(t, filepath.Join(reader, "a.example-ca", "ca.pem"), filepath.Join(reader, "domains-ca.pem"))
	w.block("quickstart-federation.md", 3, reader, nil)
	w.block("credentials.md", 3, reader, nil)
	out := w.block("quickstart-federation.md", 4, reader, nil)
	ready, _ := w.sh(reader, "curl -s 127.0.0.1:9180/readyz")
	if ready != "ready\n" || !strings.Contains(out, `"size_estimate": 2`) {
		log, _ := os.ReadFile(filepath.Join(w.state, "lsnode.log"))
		t.Fatalf("the started node is not ready (%q) in an overlay of 2:\n%s\n-- its log:\n%s", ready, out, log)
	}
	if st, err := w.sh(fed, "lsnode status --strict --config boot.yaml"); err != nil || !strings.Contains(st, `"size_estimate": 2`) {
		t.Fatalf("the bootstrap member does not count the new node: %v\n%s", err, st)
	}

	// The CSR route, signed by an openssl CA.
	if out, err := w.sh(csr, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=test-ca -days 2 2>&1"); err != nil {
		t.Fatalf("openssl CA: %v\n%s", err, out)
	}
	w.block("credentials.md", 1, csr, nil)
	if out, err := w.sh(csr, "openssl verify -CAfile ca.pem a.example.pem && openssl x509 -in a.example.pem -noout -ext subjectAltName"); err != nil || !strings.Contains(out, "DNS:a.example") {
		t.Fatalf("the CSR route's certificate: %v\n%s", err, out)
	}
	w.block("quickstart-registrar-srv.md", 0, srv, nil)
	for _, f := range []string{"a.example.pem", "a.example.key", "ca.pem", "users.json"} {
		if _, err := os.Stat(filepath.Join(srv, f)); err != nil {
			t.Errorf("registrar quick start: %v", err)
		}
	}
	w.checkAllRan()

	if out, err := w.sh(reader, "systemctl stop lsnode"); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	for _, f := range operatorFiles {
		if err := os.Remove(filepath.Join("/etc/lsnode", f)); err != nil {
			t.Error(err)
		}
	}
}

// startBootstrap makes the federation's CA in dir and starts a member of
// overlay fed on loopback (its trust anchor: anchor), stopped at the
// test's end; it returns the member's address.
func startBootstrap(t *testing.T, w *walk, dir, anchor string) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	copyFile(t, anchor, filepath.Join(dir, "domains-ca.pem"))
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
	id := lastLine(out)
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
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, id)
}

func mkdirs(t *testing.T, parent string, names ...string) (a, b, c, d string) {
	t.Helper()
	var out []string
	for _, n := range names {
		p := filepath.Join(parent, n)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out[0], out[1], out[2], out[3]
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
