package testnet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
