package scripts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// barePath makes a directory holding a link to every command on this
// machine's PATH except hidden ones, as a fresh machine without them
// would have, and returns it (world-readable, so an unprivileged user can
// run from it).
func barePath(t *testing.T, hidden ...string) string {
	t.Helper()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	openUp(t, dir, tmp)
	skip := map[string]bool{}
	for _, h := range hidden {
		skip[h] = true
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name := e.Name()
			if skip[name] {
				continue
			}
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				continue // an earlier PATH entry wins, as in a shell
			}
			if err := os.Symlink(filepath.Join(d, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// openUp lets every user through dir and its parents up to the test's
// own temporary directory (tmp, from t.TempDir, and the directory the
// testing package made for it: both 0700), and no further.
func openUp(t *testing.T, dir, tmp string) {
	t.Helper()
	stop := filepath.Dir(tmp)
	if !strings.HasPrefix(dir, tmp) {
		t.Fatalf("openUp: %s is not under %s", dir, tmp)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if d == stop {
			return
		}
	}
}

// copyRepo copies the Makefile and scripts/deps to a fresh directory, the
// part of a checkout 'make test' runs before any test.
func copyRepo(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "lsnode")
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	openUp(t, filepath.Join(dir, "scripts"), tmp)
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{"../Makefile", "Makefile", 0o644}, {"deps", "scripts/deps", 0o755}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.to), b, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run runs name with args in dir with PATH=bin, as an unprivileged user
// when asUser and this process is root; it returns the combined output
// and the exit status.
func run(t *testing.T, dir, bin string, asUser bool, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + bin, "HOME=" + dir, "LANG=C"}
	if asUser && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out.String(), code
}

// TestDepsNamesWhatIsMissing: on a machine where sipp is not on PATH, a
// user who is not root and runs 'make test' is told what is missing and
// the exact apt-get line, and no test runs.
func TestDepsNamesWhatIsMissing(t *testing.T) {
	needAll(t)
	repo := copyRepo(t)
	bin := barePath(t, "sipp", "go")
	out, code := run(t, repo, bin, true, "make", "test")
	if code == 0 {
		t.Fatalf("make test without sipp exited 0:\n%s", out)
	}
	want := "sudo apt-get update && sudo apt-get install -y sip-tester\n"
	if !strings.Contains(out, "deps: missing for test: sipp\n") || !strings.Contains(out, want) {
		t.Fatalf("make test without sipp said:\n%s\nwant the missing tool and %q", out, want)
	}
	// go is hidden too: had make gone past the check, it would say so.
	if strings.Contains(out, "go: ") || strings.Contains(out, "vet") {
		t.Fatalf("make test went past the check:\n%s", out)
	}

	// --check never installs, even as root, and names the same.
	out, code = run(t, repo, bin, false, "bash", "scripts/deps", "--check", "test", "bench")
	if code != 1 || !strings.Contains(out, "missing for test bench: sipp\n") || !strings.Contains(out, "install -y sip-tester\n") {
		t.Fatalf("--check test bench without sipp: exit %d\n%s", code, out)
	}
	// Every need present: silent, exit 0.
	out, code = run(t, repo, barePath(t, "go"), false, "bash", "scripts/deps", "--check", "test", "bench", "examples")
	if code != 0 || out != "" {
		t.Fatalf("--check with everything present: exit %d\n%s", code, out)
	}
	// A target it does not know is a usage error.
	if out, code = run(t, repo, bin, false, "bash", "scripts/deps", "tests"); code != 2 || !strings.Contains(out, `unknown target "tests"`) {
		t.Fatalf("an unknown target: exit %d\n%s", code, out)
	}
}

// needAll stops the test unless every need is on this machine (make test
// and CI install them first): hiding one tool must leave exactly it.
func needAll(t *testing.T) {
	t.Helper()
	out, err := exec.Command("bash", "deps", "--check", "test", "bench", "examples").CombinedOutput()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("scripts/deps --check:\n%s", out)
	}
	t.Skipf("this machine lacks more than the test hides (run scripts/deps test first):\n%s", out)
}

// TestDepsInstalls: as root, a missing tool's package is installed with
// apt-get and the check passes after it; when the install leaves the tool
// missing, it fails naming it. apt-get is a stand-in here (it links the
// real sipp into the bare PATH, or does nothing) so the test never changes
// the machine; CI's fresh machine runs the real one through .ci/run.
func TestDepsInstalls(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root")
		}
		t.Skip("installing needs root")
	}
	needAll(t)
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatal(err)
	}
	repo := copyRepo(t)
	for _, tc := range []struct {
		name, install string
		code          int
		want          string
	}{
		{"installed", `ln -s ` + sipp + ` "$(dirname "$0")/sipp"`, 0, ""},
		{"still missing", `:`, 1, "deps: still missing after apt-get install: sipp\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := barePath(t, "sipp", "go", "apt-get")
			log := filepath.Join(t.TempDir(), "apt.log")
			fake := "#!/bin/bash\necho \"$*\" >> " + log + "\nif [[ $1 == install ]]; then " + tc.install + "; fi\n"
			if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			out, code := run(t, repo, bin, false, "bash", "scripts/deps", "test")
			if code != tc.code || !strings.Contains(out, "deps: missing for test: sipp; installing the Debian packages sip-tester\n") ||
				!strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			calls, _ := os.ReadFile(log)
			if string(calls) != "update -qq\ninstall -y -qq sip-tester\n" {
				t.Fatalf("apt-get was run as:\n%s", calls)
			}
			if _, code := run(t, repo, bin, false, "bash", "scripts/deps", "--check", "test"); (code == 0) != (tc.code == 0) {
				t.Fatalf("after the install, --check exits %d", code)
			}
		})
	}
}
