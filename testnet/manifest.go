package testnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ManifestFile is the manifest's name inside a testnet directory.
const ManifestFile = "testnet.json"

// Manifest is testnet.json: the contract scripts and later tools rely on.
// Paths are relative to the testnet directory.
type Manifest struct {
	Overlay string `json:"overlay"`
	CA      string `json:"ca"`
	// Federation is the federation CA's directory; empty for an open overlay.
	Federation string       `json:"federation,omitempty"`
	Domains    []DomainInfo `json:"domains"`
	Nodes      []NodeInfo   `json:"nodes"`
}

// DomainInfo is one SIP domain of the testnet.
type DomainInfo struct {
	Name  string `json:"name"`
	Cert  string `json:"cert"`
	Key   string `json:"key"`
	Users []User `json:"users"`
}

// User is a demo SIP user.
type User struct {
	AOR      string `json:"aor"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// NodeInfo is one node of the testnet.
type NodeInfo struct {
	Name       string   `json:"name"`
	Domain     string   `json:"domain"`
	Config     string   `json:"config"`
	PeerID     string   `json:"peer_id"`
	Multiaddrs []string `json:"multiaddrs"`
	SIP        string   `json:"sip"`
	SIPTLS     string   `json:"sip_tls,omitempty"`
	TURN       string   `json:"turn"`
	HTTP       string   `json:"http"`
	// Admin serves /metrics, /healthz, /readyz and the dashboard.
	Admin string `json:"admin,omitempty"`
}

// LoadManifest reads DIR/testnet.json.
func LoadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("testnet: %w (run 'lsnode testnet init' first)", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("testnet: %s: %w", ManifestFile, err)
	}
	if len(m.Nodes) == 0 {
		return nil, fmt.Errorf("testnet: %s lists no nodes", ManifestFile)
	}
	return &m, nil
}

func (m *Manifest) save(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o600)
}

// Try tells a person what to try on the testnet in dir once it runs: its
// first domain node's dashboard, and an lsnode (the binary exe) publish
// through that node and a lookup through the last; "" if it has no domain
// node.
func (m *Manifest) Try(dir, exe string) string {
	i := slices.IndexFunc(m.Nodes, func(n NodeInfo) bool { return n.Domain != "" })
	if i < 0 {
		return ""
	}
	ex := m.Nodes[i]
	var b strings.Builder
	if ex.Admin != "" {
		fmt.Fprintf(&b, "dashboard of %s: http://%s/dashboard/\n", ex.Name, ex.Admin)
	}
	cfg, other := filepath.Join(dir, ex.Config), filepath.Join(dir, m.Nodes[len(m.Nodes)-1].Config)
	aor := "sip:alice@" + ex.Domain
	fmt.Fprintf(&b, "try, in another shell:\n  %s publish --config %s --aor %s --contact sip:alice@127.0.0.1:5070 --expires 3600\n  %s lookup --config %s %s\npress Ctrl-C to stop\n",
		exe, cfg, aor, exe, other, aor)
	return b.String()
}
