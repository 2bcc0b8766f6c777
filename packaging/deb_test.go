package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// leftovers are what the package makes on a machine; none may be there
// before it is installed or after it is purged.
var leftovers = []string{"/usr/bin/lsnode", "/lib/systemd/system/lsnode.service", "/etc/lsnode", "/var/lib/lsnode"}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestDebInstallPurge: 'make deb' builds a package that installs with
// the quick start's dpkg -i (the binary, the unit, /etc/lsnode/node.yaml,
// the lsnode user and /var/lib/lsnode), whose lsnode reports its version
// and whose example config passes 'config check' as root and as the
// service's user; the docs' command blocks run on it (walkQuickstarts);
// dpkg --purge leaves nothing behind.
func TestDebInstallPurge(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root")
		}
		t.Skip("installing a package needs root")
	}
	if busy := present(t); busy != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("the CI machine already has %s", busy)
		}
		t.Skipf("this machine already has %s: the test will not replace it", busy)
	}
	dir := t.TempDir()
	out, err := run(t, "make", "-C", "..", "deb", "BIN="+filepath.Join(dir, "lsnode"), "DEB_DIR="+dir)
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "lsnode_*.deb"))
	if len(debs) != 1 || !strings.Contains(out, debs[0]) {
		t.Fatalf("make deb made %v:\n%s", debs, out)
	}
	t.Cleanup(func() { run(t, "dpkg", "--purge", "lsnode") })
	w := newWalk(t, dir)
	w.block("quickstart-federation.md", 0, dir, false, nil, "") // sudo dpkg -i lsnode_*.deb
	for _, p := range leftovers {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("installed, but %v", err)
		}
	}
	if out, err := run(t, "getent", "passwd", "lsnode"); err != nil || !strings.Contains(out, "/var/lib/lsnode") {
		t.Errorf("no lsnode user: %v %s", err, out)
	}
	// /etc/lsnode is root's and the service's group reads it; the CA key
	// is root's alone.
	for path, want := range map[string]string{"/etc/lsnode": "drwxr-x--- root:lsnode", "/etc/lsnode/trust/ca.key": "-rw------- root:root",
		"/etc/lsnode/trust/ca.pem": "-rw-r----- root:lsnode", "/var/lib/lsnode": "drwxr-x--- lsnode:lsnode"} {
		if out, err := run(t, "stat", "-c", "%A %U:%G", path); err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%s: %q %v, want %q", path, out, err, want)
		}
	}
	if out, err := run(t, "/usr/bin/lsnode", "version"); err != nil || !strings.Contains(out, `"commit"`) {
		t.Errorf("lsnode version: %v\n%s", err, out)
	}
	for _, as := range [][]string{{"/usr/bin/lsnode"}, {"runuser", "-u", "lsnode", "--", "/usr/bin/lsnode"}} {
		args := append(as[1:], "config", "check", "/etc/lsnode/node.yaml")
		if out, err := run(t, as[0], args...); err != nil || !strings.Contains(out, ": ok") {
			t.Errorf("%v: %v\n%s", append(as[:1], args...), err, out)
		}
	}
	walkQuickstarts(t, w)
	if out, err := run(t, "dpkg", "--purge", "lsnode"); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	if busy := present(t); busy != "" {
		t.Errorf("purged, but %s is left", busy)
	}
}

// present names the first trace of an lsnode package on this machine, or
// "".
func present(t *testing.T) string {
	t.Helper()
	if _, err := run(t, "dpkg", "-s", "lsnode"); err == nil {
		return "the lsnode package"
	}
	for _, p := range leftovers {
		if _, err := os.Lstat(p); err == nil {
			return p
		}
	}
	for _, db := range []string{"passwd", "group"} {
		if _, err := run(t, "getent", db, "lsnode"); err == nil {
			return "an lsnode " + db + " entry"
		}
	}
	return ""
}
