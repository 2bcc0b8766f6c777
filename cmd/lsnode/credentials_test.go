package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// lsnodeProc runs the test binary as lsnode with stdin.
func lsnodeProc(t *testing.T, dir, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LSNODE_TEST_MAIN=1")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestCredentialCommands: 'domain' and 'user' make the files a node runs
// with, and a UA registers with the password 'user add' set; the
// signing-request route works with openssl as the outside CA.
func TestCredentialCommands(t *testing.T) {
	dir := t.TempDir()
	in := func(args ...string) string {
		t.Helper()
		code, out := lsnodeProc(t, dir, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
		return out
	}
	in("domain", "ca", "--dir", "ca")
	in("domain", "issue", "--ca", "ca", "--domain", "a.example", "--out", ".")
	if code, out := lsnodeProc(t, dir, "", "domain", "issue", "--ca", "ca", "--domain", "a.example"); code == 0 || !strings.Contains(out, "exists") {
		t.Fatalf("issuing over an existing credential: %d %s", code, out)
	}
	generated := regexp.MustCompile(`password: ([a-z0-9]{16})\n`).FindStringSubmatch(in("user", "add", "--file", "users.json", "--realm", "a.example", "alice"))
	if generated == nil {
		t.Fatal("user add printed no password")
	}
	if code, out := lsnodeProc(t, dir, "s3cret-pw\n", "user", "add", "--file", "users.json", "bob", "--password-stdin"); code != 0 || strings.Contains(out, "password:") {
		t.Fatalf("user add --password-stdin: %d %s", code, out)
	}
	in("user", "add", "--file", "users.json", "carol")
	in("user", "remove", "--file", "users.json", "carol")
	if got := in("user", "list", "--file", "users.json"); got != "alice\tsip:alice@a.example\nbob\tsip:bob@a.example\n" {
		t.Fatalf("user list:\n%s", got)
	}
	for _, bad := range [][]string{
		{"user", "add", "--file", "users.json", "alice"},                               // exists
		{"user", "add", "--file", "users.json", "--realm", "b.example", "dave"},        // another realm
		{"user", "add", "--file", "users.json", "dave", "--aor", "sip:dave@b.example"}, // another domain
		{"user", "add", "--file", "users.json", "da:ve"},                               // not a user name
		{"user", "remove", "--file", "users.json", "nobody"},
		{"user", "list", "--file", "missing.json"},
	} {
		if code, out := lsnodeProc(t, dir, "", bad...); code == 0 {
			t.Errorf("%v: exit 0\n%s", bad, out)
		}
	}

	sipPort, adminPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`name: fe1
domain: a.example
cert_file: a.example.pem
key_file: a.example.key
trust_anchors: [ca/ca.pem]
overlay: {name: solo, identity_key: identity.key, listen: [/ip4/127.0.0.1/tcp/0]}
lsp: {replicas: 1, write_quorum: 1}
sip: 127.0.0.1:%d
registrar: {users_file: users.json}
admin: 127.0.0.1:%d
`, sipPort, adminPort)
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in("config", "check", "node.yaml")
	startProc(t, filepath.Join(dir, "node.yaml"))
	waitReady(t, adminPort)
	for _, tc := range []struct {
		user, password string
		ok             bool
	}{{"bob", "s3cret-pw", true}, {"alice", generated[1], true}, {"bob", "wrong", false}} {
		if err := sippRegister(t, dir, sipPort, tc.user, tc.password); (err == nil) != tc.ok {
			t.Errorf("REGISTER as %s with %q: %v, want ok=%v", tc.user, tc.password, err, tc.ok)
		}
	}

	// The outside-CA route: a request, signed by openssl, makes a credential.
	in("domain", "csr", "--domain", "a.example", "--key", "ec.key", "--out", "a.csr")
	if out, err := exec.Command("openssl", "x509", "-req", "-in", filepath.Join(dir, "a.csr"), "-CA", filepath.Join(dir, "ca/ca.pem"),
		"-CAkey", filepath.Join(dir, "ca/ca.key"), "-days", "30", "-copy_extensions", "copy", "-out", filepath.Join(dir, "ec.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	ec := strings.NewReplacer("a.example.pem", "ec.pem", "a.example.key", "ec.key").Replace(cfg)
	if err := os.WriteFile(filepath.Join(dir, "ec.yaml"), []byte(ec), 0o600); err != nil {
		t.Fatal(err)
	}
	in("config", "check", "ec.yaml")
}

func waitReady(t *testing.T, adminPort int) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200", url)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sippRegister registers user with digest through sipp; nil when the
// scenario ends with a 200.
func sippRegister(t *testing.T, dir string, port int, user, password string) error {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp not installed (Debian package sip-tester; scripts/deps test installs it)")
	}
	csv := filepath.Join(dir, user+".csv")
	line := fmt.Sprintf("SEQUENTIAL\n%s;a.example;[authentication username=%s password=%s]\n", user, user, password)
	if err := os.WriteFile(csv, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	scenario, _ := filepath.Abs("../../testnet/testdata/sipp/load_register_auth.xml")
	cmd := exec.Command("sipp", fmt.Sprintf("127.0.0.1:%d", port), "-sf", scenario, "-inf", csv, "-m", "1", "-auth_uri", "a.example",
		"-i", "127.0.0.1", "-p", fmt.Sprint(freePort(t)), "-nostdin", "-timeout", "15s", "-timeout_error", "-recv_timeout", "5s")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
