package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

func lsnode(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	if code, out, errs := lsnode(t, "testnet", "init", "--dir", dir, "--nodes", "5", "--domains", "a.example,b.example"); code != 0 || !strings.Contains(out, "5 nodes") {
		t.Fatalf("init: %d %q %q", code, out, errs)
	}
	if code, _, errs := lsnode(t, "testnet", "init", "--dir", dir); code == 0 || !strings.Contains(errs, "already holds a testnet") {
		t.Fatalf("second init over the same dir: %d %q", code, errs)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Domains) != 2 || len(m.Domains[0].Users) == 0 || m.Domains[0].Users[0].Password == "" || m.Nodes[0].PeerID == "" || len(m.Nodes[0].Multiaddrs) == 0 {
		t.Fatalf("manifest incomplete: %+v", m)
	}
	for only, want := range map[string]string{"3,3": "listed twice", "x": `"x" is not a node index`, "-1": "not a node index",
		"2,99": "no node 99: the testnet has nodes 0 to 4"} {
		if code, _, errs := lsnode(t, "testnet", "run", "--dir", dir, "--only", only); code == 0 || !strings.Contains(errs, want) {
			t.Errorf("testnet run --only %s: %d %q, want %q", only, code, errs, want)
		}
	}
	nw, err := testnet.Start(context.Background(), dir, testnet.RunOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	cfgA := filepath.Join(dir, m.Nodes[0].Config) // a.example
	cfgB := filepath.Join(dir, m.Nodes[1].Config) // b.example
	cfgO := filepath.Join(dir, m.Nodes[4].Config) // overlay-only

	if code, out, errs := lsnode(t, "publish", "--config", cfgA, "--aor", "sip:Alice@a.example", "--contact", "sip:alice@127.0.0.1:5070", "--expires", "60"); code != 0 {
		t.Fatalf("publish: %d %q %q", code, out, errs)
	}
	code, out, errs := lsnode(t, "lookup", "--config", cfgO, "sip:alice@a.example")
	if code != 0 {
		t.Fatalf("lookup: %d %q", code, errs)
	}
	var res struct {
		AOR      string `json:"aor"`
		Bindings []struct {
			Contact string `json:"contact"`
			Signer  string `json:"signer"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.AOR != "sip:alice@a.example" || len(res.Bindings) != 1 ||
		res.Bindings[0].Contact != "sip:alice@127.0.0.1:5070" || res.Bindings[0].Signer != "a.example" {
		t.Fatalf("lookup output %q: %v", out, err)
	}
	// A UA as its own registrar: an AOR certificate from a.example's
	// credential publishes through the overlay-only node.
	uaDir := t.TempDir()
	if code, out, errs := lsnode(t, "domain", "aor", "--cert", filepath.Join(dir, m.Domains[0].Cert), "--key", filepath.Join(dir, m.Domains[0].Key),
		"--aor", "sip:Carol@a.example", "--out", uaDir, "--days", "1"); code != 0 || !strings.Contains(out, "carol@a.example.pem") {
		t.Fatalf("domain aor: %d %q %q", code, out, errs)
	}
	carolCert, carolKey := filepath.Join(uaDir, "carol@a.example.pem"), filepath.Join(uaDir, "carol@a.example.key")
	if code, out, errs := lsnode(t, "ua", "publish", "--cert", carolCert, "--key", carolKey, "--aor", "sip:carol@a.example",
		"--contact", "sip:carol@127.0.0.1:5090", "--expires", "60", "--config", cfgO); code != 0 {
		t.Fatalf("ua publish: %d %q %q", code, out, errs)
	}
	if code, out, _ = lsnode(t, "lookup", "--config", cfgB, "sip:carol@a.example"); code != 0 || !strings.Contains(out, `"signer": "sip:carol@a.example"`) {
		t.Fatalf("lookup of the UA's own binding: %d %q", code, out)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"an AOR certificate for another AOR", []string{"ua", "publish", "--cert", carolCert, "--key", carolKey, "--aor", "sip:alice@a.example",
			"--contact", "sip:x@y", "--config", cfgO}, 2, "does not cover sip:alice@a.example"},
		{"an AOR of another domain", []string{"domain", "aor", "--cert", filepath.Join(dir, m.Domains[0].Cert), "--key", filepath.Join(dir, m.Domains[0].Key),
			"--aor", "sip:carol@b.example", "--out", uaDir}, 2, "does not cover sip:carol@b.example"},
		{"ua publish without an overlay", []string{"ua", "publish", "--cert", carolCert, "--key", carolKey, "--aor", "sip:carol@a.example",
			"--contact", "sip:x@y"}, 2, "want --cert FILE"},
		{"not found", []string{"lookup", "--config", cfgB, "sip:nobody@a.example"}, 1, "not found"},
		{"wrong domain credential", []string{"publish", "--config", cfgB, "--aor", "sip:alice@a.example", "--contact", "sip:x@y"}, 2, "forbidden"},
		{"overlay-only node cannot publish", []string{"publish", "--config", cfgO, "--aor", "sip:alice@a.example", "--contact", "sip:x@y"}, 2, "no domain credential"},
		{"bad AOR", []string{"lookup", "--config", cfgA, "alice"}, 2, "bad AOR"},
		{"unreadable config", []string{"lookup", "--config", "/nonexistent.json", "sip:a@b.c"}, 2, "no such file"},
		{"bad flag", []string{"lookup", "--bogus"}, 2, "flag provided but not defined"},
		{"missing AOR", []string{"lookup", "--config", cfgA}, 2, "want --config FILE and one AOR"},
		{"negative expires", []string{"publish", "--config", cfgA, "--aor", "sip:a@a.example", "--contact", "sip:x@y", "--expires", "-1"}, 2, "positive"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"no command", nil, 2, "usage"},
	} {
		code, _, errs := lsnode(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d mentioning %q", tc.name, code, errs, tc.code, tc.msg)
		}
		if tc.args != nil && strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%s: want one error line, got %q", tc.name, errs)
		}
	}
	code, out, errs = lsnode(t, "status", "--config", cfgO)
	var st struct {
		Size int `json:"size_estimate"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Size != 5 {
		t.Fatalf("status: exit %d %q %q, want size_estimate 5", code, out, errs)
	}
	// The two domain nodes run relays and announce them; an overlay-only
	// node lists both (gossip may take a round or two).
	var relays []struct {
		Peer string   `json:"peer"`
		URIs []string `json:"uris"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, out, errs = lsnode(t, "relays", "--config", cfgO)
		if code != 0 || json.Unmarshal([]byte(out), &relays) != nil {
			t.Fatalf("relays: exit %d %q %q", code, out, errs)
		}
		if len(relays) == 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(relays) != 2 || len(relays[0].URIs) != 2 || !strings.HasPrefix(relays[0].URIs[0], "turn:127.0.0.1:") {
		t.Fatalf("relays: %+v, want the two domain nodes' TURN URIs", relays)
	}
	if code, _, errs := lsnode(t, "remove", "--config", cfgA, "--aor", "sip:alice@a.example"); code != 0 {
		t.Fatalf("remove: %d %q", code, errs)
	}
	if code, _, _ := lsnode(t, "lookup", "--config", cfgB, "sip:alice@a.example"); code != 1 {
		t.Fatalf("lookup after remove: exit %d, want 1", code)
	}
}

// TestFederationCLI: a federation testnet from 'testnet init --federation'
// serves the CLI tools (same machine); 'ca sign' enrols a node by peer ID;
// a node whose certificate 'ca revoke' put on the CRL no longer starts.
func TestFederationCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fed")
	if code, out, errs := lsnode(t, "testnet", "init", "--dir", dir, "--nodes", "4", "--federation", "--overlay", "fed"); code != 0 {
		t.Fatalf("init: %d %q %q", code, out, errs)
	}
	m, err := testnet.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := testnet.Start(context.Background(), dir, testnet.RunOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	cfgA := filepath.Join(dir, m.Nodes[0].Config)
	cfg3 := filepath.Join(dir, m.Nodes[3].Config)
	if code, out, errs := lsnode(t, "publish", "--config", cfgA, "--aor", "sip:alice@a.example", "--contact", "sip:alice@127.0.0.1:5070", "--expires", "60"); code != 0 {
		t.Fatalf("publish: %d %q %q", code, out, errs)
	}
	if code, out, errs := lsnode(t, "lookup", "--config", cfg3, "sip:alice@a.example"); code != 0 || !strings.Contains(out, "127.0.0.1:5070") {
		t.Fatalf("lookup: %d %q %q", code, out, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("overlay:\n  name: x\n  identity_key: k\n  gossip_interval: soon\ntrust_anchors: [ca.pem]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := lsnode(t, "config", "check", bad); code != 1 || !strings.Contains(out, "line 4: overlay.gossip_interval") {
		t.Fatalf("config check of a bad file: %d %q", code, out)
	}
	if code, out, errs := lsnode(t, "config", "check", cfg3, "--set", "proxy.media=auto"); code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("config check of a good file: %d %q %q", code, out, errs)
	}
	// check and run refuse a config with the same words, every problem.
	sets := []string{"--set", "sip=127.0.0.1", "--set", "proxy.trusted_networks=[10.0.0.0/33]", "--set", "relay.media_ports=5000-4000"}
	code, checked, _ := lsnode(t, append([]string{"config", "check", cfgA}, sets...)...)
	runCode, _, refused := lsnode(t, append([]string{"run", "--config", cfgA}, sets...)...)
	for _, want := range []string{`sip: "127.0.0.1": want HOST:PORT`, `proxy.trusted_networks[0]: "10.0.0.0/33" is not a CIDR`, `relay.media_ports: "5000-4000"`} {
		if code != 1 || runCode != 3 || !strings.Contains(checked, want) || !strings.Contains(refused, want) {
			t.Fatalf("want %q from both:\nconfig check (exit %d):\n%s\nrun (exit %d):\n%s", want, code, checked, runCode, refused)
		}
	}
	if code, out, errs := lsnode(t, "version"); code != 0 || !strings.Contains(out, `"go": "go1.`) || !strings.Contains(out, `"version"`) {
		t.Fatalf("version: %d %q %q", code, out, errs)
	}
	code, id, errs := lsnode(t, "id", "--config", cfg3)
	if code != 0 || strings.TrimSpace(id) != m.Nodes[3].PeerID {
		t.Fatalf("id: %d %q %q, want %s", code, id, errs, m.Nodes[3].PeerID)
	}
	ca := filepath.Join(dir, testnet.FederationDir)
	again := filepath.Join(t.TempDir(), "member.pem")
	if code, out, errs := lsnode(t, "ca", "sign", "--dir", ca, "--peer", strings.TrimSpace(id), "--overlay", "fed", "--out", again); code != 0 || !strings.Contains(out, `"serial"`) {
		t.Fatalf("ca sign: %d %q %q", code, out, errs)
	}
	if code, _, errs := lsnode(t, "ca", "sign", "--dir", ca, "--peer", "not-a-peer", "--overlay", "fed", "--out", again); code != 2 || !strings.Contains(errs, "--peer") {
		t.Fatalf("ca sign with a bad peer ID: %d %q", code, errs)
	}
	member3 := filepath.Join(filepath.Dir(cfg3), "member.pem")
	if code, out, errs := lsnode(t, "ca", "revoke", "--dir", ca, "--cert", member3); code != 0 || !strings.Contains(out, "revoked serial") {
		t.Fatalf("ca revoke: %d %q %q", code, out, errs)
	}
	if err := nw.StopNode(3); err != nil {
		t.Fatal(err)
	}
	// Its node stopped, a lookup says who answered instead, or with
	// --strict fails.
	if code, out, errs := lsnode(t, "lookup", "--config", cfg3, "sip:alice@a.example"); code != 0 || !strings.Contains(out, "127.0.0.1:5070") ||
		!strings.Contains(errs, "node node3 did not answer; its bootstrap peer") {
		t.Fatalf("lookup with node3 stopped: %d %q %q", code, out, errs)
	}
	if code, out, errs := lsnode(t, "lookup", "--strict", "--config", cfg3, "sip:alice@a.example"); code == 0 || out != "" || !strings.Contains(errs, "cannot reach node node3 (is it running?)") {
		t.Fatalf("lookup --strict with node3 stopped: %d %q %q", code, out, errs)
	}
	if err := nw.StartNode(context.Background(), 3); err == nil || !strings.Contains(err.Error(), "is revoked") {
		t.Fatalf("restart with a revoked certificate: %v", err)
	}
}

// TestHelp: every command answers 'help CMD', 'CMD -h' and 'CMD --help'
// with its part of the usage on stdout and exit 0; a typo is an error
// that names the closest command.
func TestHelp(t *testing.T) {
	for name := range commands {
		if strings.HasPrefix(name, "-") {
			continue
		}
		for _, args := range [][]string{{"help", name}, {name, "-h"}, {name, "--help"}, {name, "x", "--help"}} {
			code, out, errs := lsnode(t, args...)
			if code != 0 || errs != "" || !strings.Contains(out, "\n  "+name) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "help"}} {
		if code, out, errs := lsnode(t, args...); code != 0 || errs != "" || !strings.Contains(out, "\n  help") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, out, _ := lsnode(t, "help", "run"); strings.Contains(out, "testnet init") || code != 0 {
		t.Errorf("help run printed more than run's part:\n%s", out)
	}
	for _, args := range [][]string{{"lookpu"}, {"help", "tesnet"}} {
		if code, _, errs := lsnode(t, args...); code != 2 || !strings.Contains(errs, "did you mean") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}
