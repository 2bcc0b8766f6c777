package node

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lsnode/lsnode/internal/yamlconf"
	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
)

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON writes d as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ConfigType names a duration in config errors.
func (Duration) ConfigType() string { return `a duration like "30s" or "1m30s"` }

// UnmarshalJSON reads "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"1s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is one node's configuration file. Relative paths are relative to
// the file's directory.
type Config struct {
	// Name labels the node in logs.
	Name string `json:"name"`
	// Domain the node is authoritative for; empty for an overlay-only node.
	Domain string `json:"domain,omitempty"`
	// Credential: the domain certificate chain and key (PEM); required with Domain.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// TrustAnchors: PEM files of the CAs the overlay trusts. Required.
	TrustAnchors []string `json:"trust_anchors"`

	Overlay OverlayConfig `json:"overlay"`
	LSP     LSPConfig     `json:"lsp"`

	Registrar RegistrarConfig `json:"registrar,omitempty"`
	Proxy     ProxyConfig     `json:"proxy,omitempty"`
	Relay     RelayConfig     `json:"relay,omitempty"`

	// Service addresses (host:port); empty when the role is off. SIP runs
	// the registrar (UDP and TCP) on a node with a domain.
	SIP string `json:"sip,omitempty"`
	// SIPTLS serves SIP over TLS with the domain certificate (needs SIP).
	SIPTLS string `json:"sip_tls,omitempty"`
	// SIPWS and SIPWSS serve SIP over WebSocket (RFC 7118), ws:// and
	// wss:// with the domain certificate, for browser softphones (needs
	// SIP). SIPWSOrigins lists the other origins ("https://host[:port]")
	// whose pages may open them; a page of the listener's own origin and
	// a client that sends no Origin (not a browser) always may.
	SIPWS        string   `json:"sip_ws,omitempty"`
	SIPWSS       string   `json:"sip_wss,omitempty"`
	SIPWSOrigins []string `json:"sip_ws_origins,omitempty"`
	// SIPWSSCert and SIPWSSKey (PEM) are the certificate wss serves
	// instead of the domain certificate: browsers accept only one from a
	// CA they trust for the page's host name, with an ECDSA or RSA key
	// (not Ed25519, which the domain credential may be).
	SIPWSSCert string `json:"sip_wss_cert,omitempty"`
	SIPWSSKey  string `json:"sip_wss_key,omitempty"`
	TURN       string `json:"turn,omitempty"`
	HTTP       string `json:"http,omitempty"`
	// Admin (host:port) serves /metrics (Prometheus), /healthz and /readyz;
	// AdminPprof adds /debug/pprof/. Keep it on loopback or a management
	// network: it has no authentication.
	Admin      string `json:"admin,omitempty"`
	AdminPprof bool   `json:"admin_pprof,omitempty"`
	// API (host:port) serves the HTTP API (docs/openapi.yaml): publish,
	// look up and remove bindings, for other SIP servers. Every request
	// needs a bearer token from APITokensFile (one per line).
	API           string `json:"api,omitempty"`
	APITokensFile string `json:"api_tokens_file,omitempty"`

	// LogLevel: debug, info, warn, error. Default info.
	LogLevel string `json:"log_level,omitempty"`
	// LogFormat: "text" (default, key=value) or "json" (one object per
	// line, for log shippers).
	LogFormat string `json:"log_format,omitempty"`

	dir   string
	lines yamlconf.Lines // where each key is in the file it came from
}

// OverlayConfig is the overlay section.
type OverlayConfig struct {
	Name           string   `json:"name"`
	Listen         []string `json:"listen"`
	Bootstrap      []string `json:"bootstrap,omitempty"`
	IdentityKey    string   `json:"identity_key"`
	DataDir        string   `json:"data_dir,omitempty"`
	GossipInterval Duration `json:"gossip_interval,omitempty"`
	FailAfter      Duration `json:"fail_after,omitempty"`
	// A federation overlay (set MemberCA): only nodes holding a member
	// certificate from the federation CA for their identity and this
	// overlay (lsnode ca sign) may join, store or route. PSKFile adds a
	// libp2p private-network key (TCP only); CRLFile is the CA's
	// revocation list, read at start.
	// Client: this node cannot be reached from the overlay (behind NAT); it
	// joins as a client: never a replica, reads and writes through members.
	Client bool `json:"client,omitempty"`
	// Reachability: "public" (default; "private" with client), "private"
	// (behind NAT: reserve a circuit relay on a relay_service member,
	// announce the relayed addresses, hole-punch to direct connections) or
	// "auto" (AutoNAT decides, about 20 s after start; a member once found
	// public).
	Reachability string `json:"reachability,omitempty"`
	// RelayService: this (public) member serves NAT'd nodes: circuit
	// relay v2 reservations and AutoNAT dial-backs.
	RelayService bool `json:"relay_service,omitempty"`
	// MaxConnsPerIP: concurrent libp2p connections from one IPv4 address
	// (IPv6 /56). Default 64; libp2p's own 8 is too few behind a NAT.
	MaxConnsPerIP int `json:"max_conns_per_ip,omitempty"`
	// TargetConns / WarmConns bound what the node's connections cost (about
	// 50 KB of memory each, goroutine stacks the most): the connection
	// manager trims idle ones past target_conns (default 32); while the
	// overlay has at most warm_conns other members, the node keeps one to
	// each, so one-hop reads and writes never wait on a dial (default 112;
	// -1: never). Lower both on a node with little memory: reads to the
	// members it is not connected to then pay a dial. ConnGrace (default
	// 1m): how long a new connection is kept before it may be trimmed; a
	// joining node reaches most of a small overlay within it, and a
	// shorter grace keeps that start-up peak (and the memory it leaves)
	// down, but 10s and 20s kept a 100-node testnet on 2 cores from
	// converging (README).
	TargetConns int      `json:"target_conns,omitempty"`
	WarmConns   int      `json:"warm_conns,omitempty"`
	ConnGrace   Duration `json:"conn_grace,omitempty"`
	// MaxPerSubnet: at most this many members per IPv4 /24 or IPv6 /48
	// hold replicas in this node's view (a Sybil diversity limit for open
	// overlays; kad-dht's routing table gets its own). 0: no limit.
	MaxPerSubnet int `json:"max_per_subnet,omitempty"`
	// View: "full" (default: the whole membership view, every key placed
	// in one hop) or "partial" (one region of it, for a node that cannot
	// afford the full view of a large overlay: keys outside it are found
	// by kad-dht's routing, O(log N) hops, then cached).
	View string `json:"view,omitempty"`
	// RegionBits (partial view, 1-6): the region is 1/2^bits of the
	// overlay; 0 (default) follows the overlay's size, about 64 members.
	RegionBits int `json:"region_bits,omitempty"`
	// Records: "private" (records stored under a hash of the AOR, their
	// bindings sealed under a key derived from it: a member reads only
	// the AORs it knows; see docs/security.md) or "clear". Default:
	// private on a public overlay, clear on a federation overlay
	// (member_ca). Every member of an overlay must agree: a replica
	// refuses a write kept the other way.
	Records    string   `json:"records,omitempty"`
	MemberCA   []string `json:"member_ca,omitempty"`
	MemberCert string   `json:"member_cert,omitempty"`
	PSKFile    string   `json:"psk_file,omitempty"`
	CRLFile    string   `json:"crl_file,omitempty"`

	// BenchmarkValues: kad-dht's value store, for benchmarks only (set
	// in code, never from a config file); see overlay.Config.
	BenchmarkValues bool `json:"-"`
}

// RegistrarConfig is the registrar section (used when SIP is set).
type RegistrarConfig struct {
	// Mode: "stateless" (default: overlay only), "local" (bindings kept
	// out of the overlay) or "hybrid" (published into the overlay and
	// mirrored locally).
	Mode string `json:"mode,omitempty"`
	// DomainOverlay (local and hybrid modes): where the domain's
	// front-ends share the bindings they keep, so a UA registered at one
	// is reached through any. Absent: each front-end keeps its own.
	DomainOverlay DomainOverlayConfig `json:"domain_overlay,omitempty"`
	// UsersFile holds HA1 credentials; empty disables digest authentication.
	UsersFile string `json:"users_file,omitempty"`
	// DigestAlgorithms offered, most preferred first. Default SHA-256, MD5
	// (one nonce: a UA answers the first it supports).
	DigestAlgorithms []string `json:"digest_algorithms,omitempty"`
	// DigestMD5Agents: User-Agent substrings of UAs that fail on a
	// challenge they cannot answer even beside one they can; they are
	// offered MD5 alone ("-": requests without User-Agent). Absent or
	// empty: ["baresip", "sipp", "-"].
	DigestMD5Agents []string `json:"digest_md5_agents,omitempty"`
	// Open: without users_file the registrar accepts REGISTER from anyone
	// for any user of the domain; a node refuses to start so unless Open
	// is set (labs, or a front-end behind an authenticating proxy).
	Open       bool     `json:"open,omitempty"`
	MinExpires Duration `json:"min_expires,omitempty"`
	MaxExpires Duration `json:"max_expires,omitempty"`
	// MaxInFlight: REGISTERs waiting on the location service at once
	// (over UDP also those the SIP stack holds before the registrar sees
	// them); beyond it 503 with Retry-After. Over UDP the SIP stack's
	// readers decide, and those they let in are refused afterwards only
	// past twice it. Default 2048.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// NoGRUU: issue no GRUUs (RFC 5627). With them, a REGISTER of an
	// instance (+sip.instance) costs a read before its write, which
	// keeps its temporary GRUU in step with it.
	NoGRUU bool `json:"no_gruu,omitempty"`
}

// DomainOverlayConfig is a domain's private overlay: its front-ends run the
// location service protocol among themselves, apart from the public
// overlay. Only holders of the domain's key can connect: its
// private-network key is derived from that key. The node's identity (its
// 'lsnode id') is its identity there too.
type DomainOverlayConfig struct {
	// Listen: multiaddrs (TCP) this front-end is reached at by the others.
	Listen []string `json:"listen,omitempty"`
	// Bootstrap: the other front-ends' addresses there, with /p2p/PEER-ID.
	Bootstrap []string `json:"bootstrap,omitempty"`
}

// ProxyConfig is the proxy section (used when SIP is set): the proxy
// serves every method but REGISTER on the registrar's sockets.
type ProxyConfig struct {
	// Mode: "proxy" (default), "redirect" (302 with the Contacts) or "off".
	Mode string `json:"mode,omitempty"`
	// RecordRoute keeps the proxy on the path of the dialogs it routes.
	RecordRoute bool `json:"record_route,omitempty"`
	// StaticPeers: next-hop SIP URIs per foreign domain, tried in order when
	// the overlay has no binding; "*" for every domain without an entry (a
	// federation's redirect server, whose 3xx is followed). In redirect
	// mode, the table the 302s name next hops from.
	StaticPeers map[string][]string `json:"static_peers,omitempty"`
	// DNSServer (host:port) for RFC 3263 routing; "" uses /etc/resolv.conf,
	// "off" disables DNS routing.
	DNSServer string `json:"dns_server,omitempty"`
	// CacheTTL / NegativeTTL of the lookup cache. Defaults 30s / 5s.
	CacheTTL    Duration `json:"cache_ttl,omitempty"`
	NegativeTTL Duration `json:"negative_ttl,omitempty"`
	// InviteTimeout is Timer C. Default 180s.
	InviteTimeout Duration `json:"invite_timeout,omitempty"`
	// MaxInFlight: requests being routed at once, in all (1/64 of it per
	// source address and per Request-URI); beyond it 503 with Retry-After.
	// Trusted networks are never shed. Default 8192.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// ShedBacklog: while the SIP UDP socket's receive buffer is this full
	// (a share of it, as the kernel counts it) the CPU is behind, and the
	// kernel will soon drop the ACKs and BYEs of calls in progress: new
	// INVITEs over UDP (no To tag, or one without a Route) get 503 with
	// Retry-After 1 before they are parsed, from anyone, a share of them
	// rising to all halfway to a full buffer. Default 0.6; negative: never.
	ShedBacklog float64 `json:"shed_backlog,omitempty"`
	// Media: "off" (default), "always" or "auto" (a private address in the
	// offer or Contact) anchors calls' media on the node's RTP relay
	// (relay.media_ip), rewriting the SDP of offer and answer.
	Media string `json:"media,omitempty"`
	// KeepaliveInterval: OPTIONS to each static peer (one that did not
	// answer is tried last). Default 30s; negative disables.
	KeepaliveInterval Duration `json:"keepalive_interval,omitempty"`
	// NATKeepalive: a UA that registers from behind a NAT (private Contact,
	// other source) gets an OPTIONS this often over its flow, which keeps
	// the NAT's mapping open; calls to it go down that flow, from any proxy
	// of the overlay (its binding's Path names this node). Default 20s;
	// negative disables the OPTIONS (the flows stay).
	NATKeepalive Duration `json:"nat_keepalive,omitempty"`
	// TrustedNetworks (CIDRs) may relay anywhere; others only call this
	// domain's users or authenticate (407) as a user of the users file.
	// Absent: loopback only; [] trusts nobody.
	TrustedNetworks []string `json:"trusted_networks,omitempty"`
	// TransitPeers: domains whose TLS peers (client certificate) may send
	// requests from users of any domain. Other TLS peers with a client
	// certificate may only send from users of their own domain (403).
	TransitPeers []string `json:"transit_peers,omitempty"`
}

// RelayConfig is the relay section (used when TURN is set; needs a domain,
// whose credential keys the TURN REST secret, so every relay of a domain
// accepts the credentials any of its nodes hands out).
type RelayConfig struct {
	// Realm of the TURN credentials. Default: the domain.
	Realm string `json:"realm,omitempty"`
	// RelayIP relayed addresses are allocated on. Default: TURN's host.
	RelayIP string `json:"relay_ip,omitempty"`
	// TLS (host:port) also serves TURN over TLS with the domain certificate.
	TLS string `json:"tls,omitempty"`
	// Allow: peer networks (CIDRs) the relay may reach although the default
	// policy denies them (loopback, private, link-local, CGNAT, multicast):
	// TURN peers and RTP relay media targets alike.
	Allow []string `json:"allow,omitempty"`
	// AllowSelf lets the relay reach this host's own addresses where Allow
	// admits them (a testnet on loopback). Off by default: a TURN user or
	// an SDP never reaches the node's own services from its own address.
	AllowSelf bool `json:"allow_self,omitempty"`
	// MaxAllocations in total (default 1000) and per user (default 10).
	MaxAllocations int `json:"max_allocations,omitempty"`
	MaxPerUser     int `json:"max_per_user,omitempty"`
	// CredentialTTL of the ephemeral credentials the HTTP endpoint hands
	// out. Default 12h.
	CredentialTTL Duration `json:"credential_ttl,omitempty"`
	// MediaIP runs the RTP relay the proxy anchors calls on (proxy.media);
	// MediaPorts is its range, "40000-40999" by default.
	MediaIP    string `json:"media_ip,omitempty"`
	MediaPorts string `json:"media_ports,omitempty"`
}

// LSPConfig is the location-service section.
type LSPConfig struct {
	Replicas          int      `json:"replicas,omitempty"`
	WriteQuorum       int      `json:"write_quorum,omitempty"`
	MaxClockSkew      Duration `json:"max_clock_skew,omitempty"`
	MaxTTL            Duration `json:"max_ttl,omitempty"`
	RequestTimeout    Duration `json:"request_timeout,omitempty"`
	RebalanceDelay    Duration `json:"rebalance_delay,omitempty"`
	RebalanceInterval Duration `json:"rebalance_interval,omitempty"`
	// MaxBindings / MaxRecordBytes: the record quota of one AOR on this
	// replica (RELOAD max-count / max-size). Defaults 64 / 256 KiB.
	MaxBindings    int `json:"max_bindings,omitempty"`
	MaxRecordBytes int `json:"max_record_bytes,omitempty"`
	// MaxDomainBindings / MaxDomainBytes: what one signing domain may hold
	// on this replica over all its AORs. Defaults 1,000,000 / 512 MiB.
	MaxDomainBindings int `json:"max_domain_bindings,omitempty"`
	MaxDomainBytes    int `json:"max_domain_bytes,omitempty"`
	// PeerRate / PeerBurst: requests per second one peer may send this
	// node's LSP protocols. Defaults 20000 / 20000.
	PeerRate  float64 `json:"peer_rate,omitempty"`
	PeerBurst int     `json:"peer_burst,omitempty"`
}

// LoadConfig reads and validates a config file, YAML or JSON (YAML is a
// superset), without overrides.
func LoadConfig(path string) (*Config, error) { return LoadConfigWith(path, nil) }

// LoadConfigWith reads a config file (YAML or JSON) with overrides
// ("key=value", see EnvOverrides) applied, and validates it (Validate: no
// file is read). Problems are ConfigErrors with lines where the file has
// the key, all of them, after the file's name.
func LoadConfigWith(path string, overrides []string) (*Config, error) {
	c, err := loadConfig(path, overrides)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	return c, nil
}

// CheckConfig reads a config file as LoadConfigWith does and runs Check on
// it: every problem 'lsnode run' would stop at, files included. Both 'run'
// and 'config check' load through it.
func CheckConfig(path string, overrides []string) (*Config, error) {
	c, err := loadConfig(path, overrides)
	if err != nil {
		return nil, err
	}
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	return c, nil
}

func loadConfig(path string, overrides []string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c, err := parseConfig(b, overrides)
	if err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	abs, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c.dir = abs
	return c, nil
}

// ConfigError is one problem in a config file, at a line when the file
// has the key.
type ConfigError = yamlconf.Error

// ConfigErrors are every problem found in a config file; they are
// ErrConfig.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string { return yamlconf.Errors(es).Error() }

func (es ConfigErrors) Unwrap() error { return ErrConfig }

// parseConfig decodes a YAML (or JSON) config with overrides applied on
// top; every unknown key and every value of the wrong type is reported
// with its line, not only the first.
func parseConfig(b []byte, overrides []string) (*Config, error) {
	var c Config
	lines, err := yamlconf.DecodeLines(b, overrides, &c)
	if err != nil {
		var es yamlconf.Errors
		if errors.As(err, &es) {
			return nil, ConfigErrors(es)
		}
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c.lines = lines
	return &c, nil
}

// EnvOverrides turns LSNODE_* environment variables into overrides:
// LSNODE_SIP=... sets sip, LSNODE_OVERLAY__GOSSIP_INTERVAL=1s sets
// overlay.gossip_interval (a double underscore separates sections, as key
// names have single ones). Variables whose first part is no top-level key
// (LSNODE_CONFIG, the test suite's switches) are not overrides.
func EnvOverrides(environ []string) []string {
	return yamlconf.EnvOverrides("LSNODE_", Config{}, environ)
}

// withDefaults validates c and returns a copy with the defaults the roles
// share filled in.
func (c Config) withDefaults() (Config, error) {
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	if c.Relay.Realm == "" {
		c.Relay.Realm = c.Domain
	}
	if c.Relay.CredentialTTL <= 0 {
		c.Relay.CredentialTTL = Duration(12 * time.Hour)
	}
	return c, nil
}

// Path resolves p relative to the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// SetDir sets the directory relative paths resolve against.
func (c *Config) SetDir(dir string) { c.dir = dir }

// Save writes c as indented JSON.
func (c *Config) Save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// PrivateRecords reports whether the overlay keeps private records
// (overlay.records, by default on unless the overlay is a federation's).
func (c *Config) PrivateRecords() bool {
	if c.Overlay.Records != "" {
		return c.Overlay.Records == "private"
	}
	return len(c.Overlay.MemberCA) == 0
}

// LoadTrustAnchors reads the config's trust anchors into a pool.
func (c *Config) LoadTrustAnchors() (*x509.CertPool, error) {
	files := make([]string, len(c.TrustAnchors))
	for i, a := range c.TrustAnchors {
		files[i] = c.Path(a)
	}
	return lsp.LoadTrustAnchors(files...)
}

// LoadFederation reads the overlay's federation files; nil for an open
// overlay.
func (c *Config) LoadFederation() (*overlay.Federation, error) {
	o := c.Overlay
	if len(o.MemberCA) == 0 {
		return nil, nil
	}
	cas := make([]string, len(o.MemberCA))
	for i, f := range o.MemberCA {
		cas[i] = c.Path(f)
	}
	return overlay.LoadFederation(c.Path(o.PSKFile), cas, c.Path(o.MemberCert), c.Path(o.CRLFile))
}

// LoadCredential reads the domain credential; nil without a domain. The
// certificate must cover the configured domain.
func (c *Config) LoadCredential() (*lsp.Credential, error) {
	if c.Domain == "" {
		return nil, nil
	}
	cred, err := lsp.LoadCredential(c.Path(c.CertFile), c.Path(c.KeyFile))
	if err != nil {
		return nil, err
	}
	if !cred.Authorizes("sip:x@" + c.Domain) {
		return nil, fmt.Errorf("%w: certificate %s does not cover domain %q", ErrConfig, c.CertFile, c.Domain)
	}
	return cred, nil
}
