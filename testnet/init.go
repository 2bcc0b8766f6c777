package testnet

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/pki"
	"github.com/lsnode/lsnode/registrar"
)

// Spec describes a testnet to create.
type Spec struct {
	// Dir to create the testnet in; must not hold a testnet already.
	Dir string
	// Nodes in all. Default 5.
	Nodes int
	// Domains served by the testnet. Default a.example, b.example.
	Domains []string
	// PerDomain nodes are authoritative for each domain. Default 1.
	PerDomain int
	// Users per domain. Default 3.
	Users int
	// Overlay name. Default "testnet".
	Overlay string
	// BasePort: node i listens on 127.0.0.1:BasePort+i, domain node i's SIP
	// on BasePort+Nodes+i, its SIP over TLS on BasePort+Nodes+D+i (D
	// domain nodes), then its TURN, HTTP and admin (metrics, dashboard)
	// ports likewise. 0: free ports.
	BasePort int
	// Replicas per AOR. Default 3.
	Replicas int
	// Federation makes the overlay a federation overlay: a CA in
	// federation/ (lsnode ca), a private-network key, and a member
	// certificate for every node.
	Federation bool
	// GossipInterval and FailAfter of the overlay. Defaults 500ms and 5s.
	GossipInterval time.Duration
	FailAfter      time.Duration
	// View and RegionBits of every node's overlay (overlay.view,
	// overlay.region_bits): "" is the full view.
	View       string
	RegionBits int
	// Conns is every node's connection budget; zero keeps the defaults.
	Conns ConnBudget
}

// ConnBudget is a node's overlay.target_conns, warm_conns and conn_grace
// (zero: the default).
type ConnBudget struct {
	Target, Warm int
	Grace        time.Duration
}

// ParseConnBudget reads "TARGET,WARM[,GRACE]" (a benchmark's
// LSNODE_BENCH_CONNS: 16,-1,20s); "" is the defaults.
func ParseConnBudget(v string) (ConnBudget, error) {
	var c ConnBudget
	if v == "" {
		return c, nil
	}
	f := strings.Split(v, ",")
	if len(f) < 2 || len(f) > 3 {
		return c, fmt.Errorf("connection budget %q: want TARGET,WARM[,GRACE]", v)
	}
	var err1, err2, err3 error
	c.Target, err1 = strconv.Atoi(f[0])
	c.Warm, err2 = strconv.Atoi(f[1])
	if len(f) == 3 {
		c.Grace, err3 = time.ParseDuration(f[2])
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return c, fmt.Errorf("connection budget %q: %w", v, err)
	}
	return c, nil
}

// Apply sets the budget's non-zero parts in cfg.
func (c ConnBudget) Apply(cfg *node.OverlayConfig) {
	if c.Target != 0 {
		cfg.TargetConns = c.Target
	}
	if c.Warm != 0 {
		cfg.WarmConns = c.Warm
	}
	if c.Grace != 0 {
		cfg.ConnGrace = node.Duration(c.Grace)
	}
}

var demoUsers = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}

// FederationDir holds a federation testnet's CA (lsnode ca).
const FederationDir = "federation"

// ErrExists is returned by Init when the directory already holds a testnet.
var ErrExists = errors.New("testnet: directory already holds a testnet")

// Init creates a testnet in spec.Dir and returns its manifest.
func Init(spec Spec) (*Manifest, error) {
	if err := spec.defaults(); err != nil {
		return nil, err
	}
	dir := spec.Dir
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		return nil, fmt.Errorf("%w: %s (remove it or pick another --dir)", ErrExists, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	m := &Manifest{Overlay: spec.Overlay, CA: "ca.pem"}
	if err := initDomains(spec, m); err != nil {
		return nil, err
	}
	domainNodes := len(spec.Domains) * spec.PerDomain
	ports, err := spec.ports(spec.Nodes + 8*domainNodes)
	if err != nil {
		return nil, err
	}
	role := func(k int) []int { return ports[spec.Nodes+k*domainNodes : spec.Nodes+(k+1)*domainNodes] }
	sipPorts, tlsPorts, turnPorts, httpPorts, adminPorts, apiPorts := role(0), role(1), role(2), role(3), role(4), role(5)
	wsPorts, wssPorts := role(6), role(7)
	for i := 0; i < spec.Nodes; i++ {
		ni, err := initNode(spec, fmt.Sprintf("node%d", i), ports[i])
		if err != nil {
			return nil, err
		}
		if i < domainNodes {
			ni.Domain = spec.Domains[i%len(spec.Domains)]
			ni.SIP = fmt.Sprintf("127.0.0.1:%d", sipPorts[i])
			ni.SIPTLS = fmt.Sprintf("127.0.0.1:%d", tlsPorts[i])
			ni.SIPWS = fmt.Sprintf("127.0.0.1:%d", wsPorts[i])
			ni.SIPWSS = fmt.Sprintf("127.0.0.1:%d", wssPorts[i])
			ni.TURN = fmt.Sprintf("127.0.0.1:%d", turnPorts[i])
			ni.HTTP = fmt.Sprintf("127.0.0.1:%d", httpPorts[i])
			ni.Admin = fmt.Sprintf("127.0.0.1:%d", adminPorts[i])
			ni.API, ni.APIToken = fmt.Sprintf("127.0.0.1:%d", apiPorts[i]), password()+password()
		}
		m.Nodes = append(m.Nodes, ni)
	}
	for i, ni := range m.Nodes {
		cfg := nodeConfig(spec, m, i, ports[i])
		if err := cfg.Save(filepath.Join(dir, ni.Config)); err != nil {
			return nil, err
		}
		if ni.APIToken != "" {
			tokens := filepath.Join(dir, filepath.Dir(ni.Config), apiTokensFile)
			if err := os.WriteFile(tokens, []byte(ni.APIToken+"\n"), 0o600); err != nil {
				return nil, err
			}
		}
	}
	return m, m.save(dir)
}

// apiTokensFile holds a domain node's API bearer token, beside its config.
const apiTokensFile = "api-tokens"

// initDomains creates the testnet's CA (and its federation CA), and each
// domain's credential and demo users.
func initDomains(spec Spec, m *Manifest) error {
	dir := spec.Dir
	ca, err := pki.NewCA("lsnode testnet CA", "lsnode testnet", 365*24*time.Hour)
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if err := pki.WriteCertPEM(filepath.Join(dir, "ca.pem"), ca.Cert.Raw); err != nil {
		return err
	}
	if spec.Federation {
		if err := pki.InitCA(filepath.Join(dir, FederationDir), spec.Overlay+" federation CA", 365*24*time.Hour); err != nil {
			return err
		}
		m.Federation = FederationDir
	}
	for _, d := range spec.Domains {
		ddir := filepath.Join(dir, "domains", d)
		if err := os.MkdirAll(ddir, 0o700); err != nil {
			return err
		}
		der, key, err := ca.IssueDomain([]string{d}, 365*24*time.Hour)
		if err != nil {
			return err
		}
		if err := pki.WriteCertPEM(filepath.Join(ddir, "cert.pem"), der); err != nil {
			return err
		}
		if err := pki.WriteKeyPEM(filepath.Join(ddir, "key.pem"), key); err != nil {
			return err
		}
		di := DomainInfo{Name: d, Cert: filepath.Join("domains", d, "cert.pem"), Key: filepath.Join("domains", d, "key.pem")}
		uf := registrar.UsersFile{Realm: d}
		for i := 0; i < spec.Users; i++ {
			name := fmt.Sprintf("user%d", i+1)
			if i < len(demoUsers) {
				name = demoUsers[i]
			}
			u := User{AOR: "sip:" + name + "@" + d, Username: name, Password: password()}
			di.Users = append(di.Users, u)
			uf.Users = append(uf.Users, registrar.NewUserHash(u.Username, u.AOR, d, u.Password))
		}
		if err := uf.Save(filepath.Join(ddir, "users.json")); err != nil {
			return err
		}
		m.Domains = append(m.Domains, di)
	}
	return nil
}

// initNode creates node name's directory, its identity and, in a
// federation testnet, its member certificate.
func initNode(spec Spec, name string, port int) (NodeInfo, error) {
	ndir := filepath.Join(spec.Dir, "nodes", name)
	if err := os.MkdirAll(ndir, 0o700); err != nil {
		return NodeInfo{}, err
	}
	key, err := overlay.GenerateIdentity()
	if err != nil {
		return NodeInfo{}, err
	}
	if err := overlay.SaveIdentity(filepath.Join(ndir, "identity.key"), key); err != nil {
		return NodeInfo{}, err
	}
	id, err := overlay.PeerIDOf(key)
	if err != nil {
		return NodeInfo{}, err
	}
	if spec.Federation {
		if _, err := overlay.SignMember(filepath.Join(spec.Dir, FederationDir), id, spec.Overlay, 365*24*time.Hour,
			filepath.Join(ndir, "member.pem")); err != nil {
			return NodeInfo{}, err
		}
	}
	return NodeInfo{Name: name, Config: filepath.Join("nodes", name, "config.json"), PeerID: id.String(),
		Multiaddrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, id)}}, nil
}

// nodeConfig is the config of node i of m, whose overlay listens on port.
func nodeConfig(spec Spec, m *Manifest, i, port int) node.Config {
	ni := m.Nodes[i]
	cfg := node.Config{
		Name:         ni.Name,
		Domain:       ni.Domain,
		TrustAnchors: []string{"../../ca.pem"},
		Overlay: node.OverlayConfig{
			Name:           spec.Overlay,
			Listen:         []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)},
			IdentityKey:    "identity.key",
			DataDir:        "data",
			GossipInterval: node.Duration(spec.GossipInterval),
			FailAfter:      node.Duration(spec.FailAfter),
			View:           spec.View,
			RegionBits:     spec.RegionBits,
		},
		LSP: node.LSPConfig{Replicas: spec.Replicas},
	}
	spec.Conns.Apply(&cfg.Overlay)
	for j := 0; j < min(3, len(m.Nodes)); j++ {
		if j != i {
			cfg.Overlay.Bootstrap = append(cfg.Overlay.Bootstrap, m.Nodes[j].Multiaddrs...)
		}
	}
	if spec.Federation {
		fed := filepath.Join("..", "..", FederationDir)
		cfg.Overlay.MemberCA = []string{filepath.Join(fed, pki.CACertFile)}
		cfg.Overlay.PSKFile = filepath.Join(fed, pki.PSKFile)
		cfg.Overlay.CRLFile = filepath.Join(fed, pki.CRLFile)
		cfg.Overlay.MemberCert = "member.pem"
	}
	if ni.Domain != "" {
		cfg.CertFile = filepath.Join("..", "..", "domains", ni.Domain, "cert.pem")
		cfg.KeyFile = filepath.Join("..", "..", "domains", ni.Domain, "key.pem")
		cfg.SIP, cfg.SIPTLS, cfg.SIPWS, cfg.SIPWSS = ni.SIP, ni.SIPTLS, ni.SIPWS, ni.SIPWSS
		cfg.Registrar.UsersFile = filepath.Join("..", "..", "domains", ni.Domain, "users.json")
		cfg.TURN, cfg.HTTP, cfg.Admin = ni.TURN, ni.HTTP, ni.Admin
		cfg.API, cfg.APITokensFile = ni.API, apiTokensFile
		// Every testnet peer is on loopback, which the relay's default
		// policy denies, and on this host: allowed here, explicitly.
		cfg.Relay.Allow, cfg.Relay.AllowSelf = []string{"127.0.0.0/8"}, true
	}
	return cfg
}

func (s *Spec) defaults() error {
	if s.Dir == "" {
		return fmt.Errorf("testnet: no directory given")
	}
	if s.Nodes == 0 {
		s.Nodes = 5
	}
	if len(s.Domains) == 0 {
		s.Domains = []string{"a.example", "b.example"}
	}
	if s.PerDomain == 0 {
		s.PerDomain = 1
	}
	if s.Users == 0 {
		s.Users = 3
	}
	if s.Overlay == "" {
		s.Overlay = "testnet"
	}
	if s.Replicas == 0 {
		s.Replicas = 3
	}
	if s.GossipInterval == 0 {
		s.GossipInterval = 500 * time.Millisecond
	}
	if s.FailAfter == 0 {
		s.FailAfter = 10 * s.GossipInterval
	}
	switch {
	case s.Nodes < 1 || s.Nodes > 1000:
		return fmt.Errorf("testnet: --nodes %d: want 1..1000", s.Nodes)
	case s.PerDomain < 0 || s.Users < 0 || s.Users > 10000:
		return fmt.Errorf("testnet: bad per-domain or users count")
	case len(s.Domains)*s.PerDomain > s.Nodes:
		return fmt.Errorf("testnet: %d domains × %d nodes each need at least %d nodes, have %d",
			len(s.Domains), s.PerDomain, len(s.Domains)*s.PerDomain, s.Nodes)
	case s.BasePort < 0 || s.BasePort+s.Nodes+5*len(s.Domains)*s.PerDomain > 65535:
		return fmt.Errorf("testnet: --base-port %d out of range", s.BasePort)
	}
	seen := map[string]bool{}
	for i, d := range s.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		canon, err := lsp.Canonical("sip:x@" + d)
		if err != nil || lsp.Domain(canon) != d {
			return fmt.Errorf("testnet: %q is not a domain name", d)
		}
		if seen[d] {
			return fmt.Errorf("testnet: domain %q given twice", d)
		}
		seen[d] = true
		s.Domains[i] = d
	}
	return nil
}

// ports picks n ports: BasePort+i when set, else free ones (a port is only
// taken when it is free for both TCP and UDP, as SIP needs both).
func (s *Spec) ports(n int) ([]int, error) {
	out := make([]int, n)
	if s.BasePort > 0 {
		for i := range out {
			out[i] = s.BasePort + i
		}
		return out, nil
	}
	// Hold every probe open until all are chosen, so no port is chosen twice.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var us []net.PacketConn
	defer func() {
		for _, u := range us {
			u.Close()
		}
	}()
	for i := 0; i < len(out); {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testnet: pick a free port: %w", err)
		}
		ls = append(ls, l)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // UDP side taken: try another
		}
		us = append(us, u)
		out[i] = p
		i++
	}
	return out, nil
}

func password() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
