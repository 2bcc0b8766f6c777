package node_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
)

// TestLoadConfigs: nodes run in one process keep their own stores: two
// configs on one data_dir are refused, naming both.
func TestLoadConfigs(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir)
	write := func(name, overlayName, dataDir string) string {
		p := filepath.Join(dir, name)
		y := "overlay:\n  name: " + overlayName + "\n  identity_key: " + name + ".key\n  data_dir: " + dataDir + "\n  listen: [/ip4/127.0.0.1/tcp/0]\ntrust_anchors: [ca.pem]\n"
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, c := write("a.yaml", "one", "data-a"), write("b.yaml", "two", "data-b"), write("c.yaml", "three", "data-a")
	cfgs, err := node.LoadConfigs([]string{a, b}, nil)
	if err != nil || len(cfgs) != 2 || cfgs[1].Overlay.Name != "two" {
		t.Fatalf("two stores: %v %v", cfgs, err)
	}
	if _, err := node.LoadConfigs([]string{a, c}, nil); err == nil || !strings.Contains(err.Error(), "share data_dir") {
		t.Fatalf("one store for two nodes: %v", err)
	}
	_, id, err := node.LoadPeerID(a)
	if _, again, _ := node.LoadPeerID(a); err != nil || id == "" || again != id {
		t.Fatalf("peer ID: %v %v %v", id, again, err)
	}
}

// TestRefused: what 'lsnode run' exits 3 on, for the unit not to restart
// it: a config it refuses, a federation's refusal; not a failure a later
// start may not meet.
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("node n: %w", fmt.Errorf("%w: handshake failed: wrong key", overlay.ErrMembership)), true},
		{node.ConfigErrors{{Path: "sip", Line: 3, Msg: "want HOST:PORT"}}, true},
		{fmt.Errorf("listen udp 127.0.0.1:5060: %w", errors.New("address already in use")), false},
		{nil, false},
	} {
		if got := node.Refused(c.err); got != c.want {
			t.Errorf("Refused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
