package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/internal/mdblocks"
)

// readmeBlocks are the README's sh blocks after its first (make run, make
// test: the commands this test and CI stand for), with their lines.
func readmeBlocks(t *testing.T) (blocks []string, lines []int) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, bl := range mdblocks.Find(b, "sh") {
		blocks, lines = append(blocks, bl.Text), append(lines, bl.Line)
	}
	if len(blocks) < 6 || !strings.HasPrefix(blocks[0], "make run") {
		t.Fatalf("README: %d sh blocks, the first %q", len(blocks), blocks[0])
	}
	return blocks[1:], lines[1:]
}

// TestReadmeCommands runs the README's command blocks, in order, in one
// shell, as a reader would: from a checkout (bin/lsnode, testnet/testdata)
// with the 5-node, 2-domain testnet of 'make run' running in .testnet.
// Every command must succeed: publish and lookups, a digest REGISTER with
// the printed password, a call through the other domain's proxy to a
// sipp UAS found in the overlay, TURN credentials and a TURN allocation
// relaying to an echo peer, the federation CA commands.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a testnet, sipp and coturn's tools")
	}
	for _, tool := range []string{"sipp", "turnutils_uclient", "turnutils_peer", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (scripts/deps examples installs it)", tool)
		}
	}
	blocks, lines := readmeBlocks(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nLSNODE_TEST_MAIN=1 exec %s \"$@\"\n", os.Args[0])
	if err := os.WriteFile(filepath.Join(dir, "bin", "lsnode"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	repoTestnet, _ := filepath.Abs("../../testnet")
	if err := os.Symlink(repoTestnet, filepath.Join(dir, "testnet")); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := lsnode(t, "testnet", "init", "--dir", filepath.Join(dir, ".testnet"), "--nodes", "5", "--domains", "a.example,b.example"); code != 0 {
		t.Fatalf("testnet init: %d %s %s", code, out, errs)
	}
	stop := runTestnet(t, dir)
	defer stop()

	var script strings.Builder
	script.WriteString("set -euo pipefail\ncd " + dir + "\nexport PATH=" + filepath.Join(dir, "bin") + ":$PATH\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '== README line %d'\n%s\n", lines[i], b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what a block left in the background
	if err != nil {
		t.Fatalf("README commands: %v\n%s", err, lastLines(string(out), 40))
	}
	for _, want := range []string{`"contact": "sip:alice@127.0.0.1:5071"`, "tot_send_msgs=10, tot_recv_msgs=10", "revoked serial",
		`"contact":"sip:alice@192.0.2.7:5060"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("README commands printed no %q:\n%s", want, lastLines(string(out), 40))
		}
	}
}

// runTestnet runs 'lsnode testnet run' on dir/.testnet as 'make run'
// does and returns once it is ready; the function it returns stops it.
func runTestnet(t *testing.T, dir string) func() {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "bin", "lsnode"), "testnet", "run", "--dir", ".testnet")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "testnet ready") {
				ready <- true
			}
		}
		close(ready)
	}()
	stop := func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
	select {
	case ok := <-ready:
		if !ok {
			stop()
			t.Fatal("testnet run ended before it was ready")
		}
	case <-time.After(90 * time.Second):
		stop()
		t.Fatal("testnet run not ready within 90 s")
	}
	return stop
}
