package testnet_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lsnode/lsnode/testnet"
)

// TestChaosRefuses: a chaos run needs an lsnode binary, at least 4 nodes
// and a sane spec; it says so before starting a process. (The run itself:
// cmd/lsnode's TestChaos, on 30 processes.)
func TestChaosRefuses(t *testing.T) {
	small := filepath.Join(t.TempDir(), "small")
	if _, err := testnet.Init(testnet.Spec{Dir: small, Nodes: 3}); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(t.TempDir(), "ok")
	if _, err := testnet.Init(testnet.Spec{Dir: ok, Nodes: 4}); err != nil {
		t.Fatal(err)
	}
	// Never run: every case is refused first.
	bin := filepath.Join(t.TempDir(), "no-such-lsnode")
	for _, c := range []struct {
		dir  string
		spec testnet.ChaosSpec
		want string
	}{
		{small, testnet.ChaosSpec{Exe: bin}, "at least 4 nodes"},
		{ok, testnet.ChaosSpec{}, "no lsnode binary"},
		{ok, testnet.ChaosSpec{Exe: bin, KillFraction: 1.5}, "kill fraction"},
		{ok, testnet.ChaosSpec{Exe: bin, Down: -1}, "durations"},
	} {
		_, err := testnet.Chaos(context.Background(), c.dir, c.spec)
		if !errors.Is(err, testnet.ErrChaos) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want ErrChaos saying %q", filepath.Base(c.dir), c.spec, err, c.want)
		}
	}
	if err := (testnet.ChaosReport{Published: 10}).Err(); err != nil {
		t.Errorf("a clean report: %v", err)
	}
	if err := (testnet.ChaosReport{Published: 10, Lost: 1}).Err(); !errors.Is(err, testnet.ErrChaos) || !strings.Contains(err.Error(), "1 of 10 acknowledged bindings lost") {
		t.Errorf("a report with a loss: %v", err)
	}
}
