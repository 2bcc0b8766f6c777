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
	// SIPWS and SIPWSS serve SIP over WebSocket (ws://, wss://).
	SIPWS  string `json:"sip_ws,omitempty"`
	SIPWSS string `json:"sip_wss,omitempty"`
	TURN   string `json:"turn"`
	HTTP   string `json:"http"`
	// Admin serves /metrics, /healthz, /readyz and the dashboard.
	Admin string `json:"admin,omitempty"`
	// API serves the HTTP API (docs/openapi.yaml) to APIToken's bearer.
	API      string `json:"api,omitempty"`
	APIToken string `json:"api_token,omitempty"`
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

// Try tells a person what to try on the testnet in dir once it runs: the
// shell variables of Env (to paste, or to eval from 'lsnode testnet env'),
// the first domain node's dashboard, and commands that use them (exe is
// the lsnode binary); "" if it has no domain node.
func (m *Manifest) Try(dir, exe string) string {
	i := slices.IndexFunc(m.Nodes, func(n NodeInfo) bool { return n.Domain != "" })
	if i < 0 {
		return ""
	}
	ex := m.Nodes[i]
	var b strings.Builder
	fmt.Fprintf(&b, "paste into another shell (or: eval \"$(%s testnet env --dir %s)\"):\n%s", exe, dir, m.Env(dir))
	if ex.Admin != "" {
		fmt.Fprintf(&b, "dashboard of %s: http://%s/dashboard/\n", ex.Name, ex.Admin)
	}
	if ex.SIPWS != "" {
		fmt.Fprintf(&b, "softphone of %s (a browser; log in as a user of %s): http://%s/softphone/\n", ex.Domain, ex.Domain, ex.SIPWS)
	}
	v := envName(ex.Domain)
	aor := "sip:alice@" + ex.Domain
	fmt.Fprintf(&b, "then try:\n  %s publish --config $%s_NODE --aor %s --contact sip:alice@127.0.0.1:5070 --expires 3600\n  %s lookup --config $LAST_NODE %s\n",
		exe, v, aor, exe, aor)
	fmt.Fprintf(&b, "  printf 'SEQUENTIAL\\nalice;%s;[authentication username=alice password=%%s]\\n' \"$%s_ALICE_PASSWORD\" > /tmp/alice.csv\n", ex.Domain, v)
	fmt.Fprintf(&b, "  sipp $%s_SIP -sf testnet/testdata/sipp/load_register_auth.xml -inf /tmp/alice.csv -m 1 -auth_uri %s\n", v, ex.Domain)
	b.WriteString("(README.md, \"Using the testnet\", has calls and TURN too)\npress Ctrl-C to stop\n")
	return b.String()
}

// Env is the testnet in dir as shell variables, one export a line: for
// each domain D (A_EXAMPLE for a.example) its first node's config
// (D_NODE), addresses (D_SIP, D_SIP_TLS, D_TURN, D_HTTP, D_ADMIN, D_API),
// the API's bearer token (D_API_TOKEN) and its
// users' passwords (D_ALICE_PASSWORD, ...); LAST_NODE is the config of the
// last node (overlay-only when there are more nodes than domains).
func (m *Manifest) Env(dir string) string {
	var b strings.Builder
	export := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v))
		}
	}
	export("TESTNET", dir)
	for _, d := range m.Domains {
		i := slices.IndexFunc(m.Nodes, func(n NodeInfo) bool { return n.Domain == d.Name })
		if i < 0 {
			continue
		}
		n, v := m.Nodes[i], envName(d.Name)
		export(v+"_NODE", filepath.Join(dir, n.Config))
		for _, a := range [][2]string{{"SIP", n.SIP}, {"SIP_TLS", n.SIPTLS}, {"SIP_WS", n.SIPWS}, {"SIP_WSS", n.SIPWSS}, {"TURN", n.TURN}, {"HTTP", n.HTTP}, {"ADMIN", n.Admin},
			{"API", n.API}, {"API_TOKEN", n.APIToken}} {
			export(v+"_"+a[0], a[1])
		}
		for _, u := range d.Users {
			export(v+"_"+envName(u.Username)+"_PASSWORD", u.Password)
		}
	}
	export("LAST_NODE", filepath.Join(dir, m.Nodes[len(m.Nodes)-1].Config))
	return b.String()
}

// envName is s as a shell variable name: upper case, '_' for the rest.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:-[]@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
