package node_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// TestEnrol: a node enrolled by its config gets the config's overlay name
// and member_cert path; one enrolled by peer ID needs both named; errors
// name the flags of 'lsnode ca sign'.
func TestEnrol(t *testing.T) {
	dir := t.TempDir()
	m, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 1, Domains: []string{"a.example"}, Overlay: "fed", Federation: true})
	if err != nil {
		t.Fatal(err)
	}
	ca, cfgPath := filepath.Join(dir, testnet.FederationDir), filepath.Join(dir, m.Nodes[0].Config)
	cfg, id, err := node.LoadPeerID(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := node.Enrol(ca, node.Enrolment{Config: cfgPath, Validity: time.Hour})
	if err != nil || got.Overlay != "fed" || got.File != cfg.Path(cfg.Overlay.MemberCert) || got.Peer != id.String() || got.Serial == "" {
		t.Fatalf("by config: %+v %v", got, err)
	}
	out := filepath.Join(t.TempDir(), "member.pem")
	if got, err := node.Enrol(ca, node.Enrolment{Peer: id.String(), Overlay: "fed", Out: out, Validity: time.Hour}); err != nil || got.File != out {
		t.Fatalf("by peer ID: %+v %v", got, err)
	}
	for _, tc := range []struct {
		e    node.Enrolment
		want string
	}{
		{node.Enrolment{Peer: id.String(), Out: out}, "want --overlay NAME and --out FILE"},
		{node.Enrolment{Peer: "not-a-peer", Overlay: "fed", Out: out}, `--peer "not-a-peer"`},
		{node.Enrolment{Peer: id.String(), Config: cfgPath}, "one of --peer ID or --config FILE"},
		{node.Enrolment{}, "one of --peer ID or --config FILE"},
	} {
		if _, err := node.Enrol(ca, tc.e); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.e, err, tc.want)
		}
	}
}
