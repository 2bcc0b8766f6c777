package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/admin"
	"github.com/lsnode/lsnode/httpapi"
	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/metrics"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/proxy"
	"github.com/lsnode/lsnode/regevent"
	"github.com/lsnode/lsnode/registrar"
	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/sipnet"
)

// Options adjust how a node starts, beyond its config file.
type Options struct {
	// InMemory keeps the datastore in memory whatever data_dir says.
	InMemory bool
	// JoinTimeout bounds the bootstrap. Default 10s.
	JoinTimeout time.Duration
	// DisableDHTRefresh turns kad-dht's periodic refresh off (big testnets).
	DisableDHTRefresh bool
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 10 * time.Second
	}
	return o
}

// Node is a running lsnode.
type Node struct {
	cfg     *Config
	opts    Options
	log     *slog.Logger
	started time.Time

	overlay *overlay.Overlay
	lsp     *lsp.Service
	sip     *sipnet.Stack // the SIP transport of the registrar and the proxy
	reg     *registrar.Registrar
	proxy   *proxy.Proxy
	relay   *relay.Server
	media   *relay.Media
	http    *httpapi.Server // TURN credentials
	admin   *admin.Server
	api     *httpapi.Server
	metrics *metrics.Metrics
	certs   []certInfo // the domain and member certificates, when held

	// What the start steps hand on to the later ones.
	anchors       *x509.CertPool
	cred          *lsp.Credential
	fed           *overlay.Federation
	anchor        relay.Anchor     // the proxy's media relay
	shared        *lsp.Service     // the domain's shared location service
	domainOverlay *overlay.Overlay // its overlay
	services      []string         // announced in the overlay
	turnLater     turnLater        // the TURN server, for the softphone

	mu      sync.Mutex
	closers []func() error // what the start steps started, in order
}

// certInfo is a certificate this node holds, for metrics and the dashboard.
type certInfo struct {
	Role     string    `json:"role"` // "domain" (signs writes) or "member" (federation)
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// New starts a node from cfg: it runs the start steps (start.go, http.go,
// metrics.go) in order, each pushing what stops what it started. A failed
// step stops everything started before it, in reverse order.
func New(ctx context.Context, cfg *Config, opts Options) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	n := &Node{cfg: &c, opts: opts, log: opts.Logger.With("node", c.Name), started: time.Now(),
		metrics: metrics.New()}
	steps := []func(context.Context) error{
		n.loadCredentials,
		n.startOverlay,
		n.startLocation,
		n.join,
		n.startDomainLocation,
		n.startMedia,
		n.startSIPRoles,
		n.startRelay,
		n.announce,
		n.startHTTP,
		n.startMetrics,
		n.startAdmin,
		n.startAPI,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			_ = n.Close()
			return nil, err
		}
	}
	n.log.Info("node up", "peer", n.overlay.ID(), "addrs", n.overlay.Addrs(), "domain", c.Domain, "sip", c.SIP)
	return n, nil
}

// onClose pushes f on the stack Close unwinds.
func (n *Node) onClose(f func() error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closers = append(n.closers, f)
}

// Metrics returns the node's metrics registry.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// Config returns the node's config.
func (n *Node) Config() *Config { return n.cfg }

// Overlay returns the node's overlay membership.
func (n *Node) Overlay() *overlay.Overlay { return n.overlay }

// Location returns the node's in-process location service.
func (n *Node) Location() *lsp.Service { return n.lsp }

// DomainLocation returns the domain's shared location service
// (registrar.domain_overlay) and its overlay; nil without one.
func (n *Node) DomainLocation() (*lsp.Service, *overlay.Overlay) { return n.shared, n.domainOverlay }

// startSIP starts the node's SIP transport and its SIP roles on it: the
// TLS configs, the stack (sockets bound, nothing served yet), the NAT flows
// (unless the config turns the proxy off), the registrar with the flows'
// Edge, the proxy, each role's handlers, and only then serving.
func startSIP(cfg *Config, cred *lsp.Credential, anchors *x509.CertPool, loc, shared lsp.LocationService, media relay.Anchor,
	atRelay func(net.IP, int) bool, log *slog.Logger) (_ *sipnet.Stack, _ *registrar.Registrar, _ *proxy.Proxy, err error) {
	// One list of trusted senders for both SIP roles: they may relay (the
	// proxy) and put Paths and any Contact in a REGISTER (the registrar).
	var trusted []*net.IPNet
	if cfg.Proxy.TrustedNetworks != nil {
		trusted = []*net.IPNet{}
		for _, c := range cfg.Proxy.TrustedNetworks {
			_, n, err := net.ParseCIDR(c)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%w: proxy trusted_networks: %q is not a CIDR", ErrConfig, c)
			}
			trusted = append(trusted, n)
		}
	}
	tlsCfg, err := sipTLS(cfg, anchors)
	if err != nil {
		return nil, nil, nil, err
	}
	ws, err := sipWS(cfg, tlsCfg)
	if err != nil {
		return nil, nil, nil, err
	}
	stack, err := sipnet.Listen(sipnet.Config{Addr: cfg.SIP, TLS: tlsCfg, WS: ws, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			stack.Close()
		}
	}()
	pc := cfg.Proxy
	var flows *sipnet.Flows
	var flowSecret []byte // keys the flow tokens and the proxy's Record-Route tokens
	if pc.Mode != "off" {
		if flowSecret, err = cred.DeriveSecret("proxy flow tokens " + cfg.Domain); err != nil {
			return nil, nil, nil, err
		}
		if flows, err = sipnet.NewFlows(flowSecret, stack.Addr(), stack.TLSAddr()); err != nil {
			return nil, nil, nil, err
		}
	}
	rc, err := registrarConfig(cfg, cred, loc, trusted, flows, log)
	if shared != nil {
		rc.Shared = shared
	}
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := registrar.New(rc)
	if err != nil {
		return nil, nil, nil, err
	}
	r.Attach(stack)
	if pc.Mode == "off" {
		return stack, r, nil, nil
	}
	realm := "" // no users: the proxy authenticates no one
	if rc.Users != nil {
		realm = rc.Users.Realm
	}
	local, err := regEvents(cfg, r, loc, stack, log)
	if err != nil {
		return nil, nil, nil, err
	}
	px, err := newProxy(cfg, r, realm, flows, flowSecret, trusted, media, atRelay, local, log)
	if err != nil {
		if local != nil {
			local.Close()
		}
		return nil, nil, nil, err
	}
	if err := px.Attach(stack); err != nil {
		px.Close()
		return nil, nil, nil, err
	}
	return stack, r, px, nil
}

// registrarConfig is the registrar's config: digest users and nonces when
// the node has a users file, open (anyone may REGISTER) otherwise; the NAT
// flows' Edge when the proxy keeps flows.
func registrarConfig(cfg *Config, cred *lsp.Credential, loc lsp.LocationService, trusted []*net.IPNet,
	flows *sipnet.Flows, log *slog.Logger) (registrar.Config, error) {
	rc := registrar.Config{Domain: cfg.Domain, Mode: registrar.Mode(cfg.Registrar.Mode), Location: loc, TrustedNetworks: trusted,
		MinExpires: time.Duration(cfg.Registrar.MinExpires), MaxExpires: time.Duration(cfg.Registrar.MaxExpires),
		MaxInFlight: cfg.Registrar.MaxInFlight, Logger: log}
	if flows != nil {
		rc.Edge = flows.Edge
	}
	var err error
	if !cfg.Registrar.NoGRUU {
		if rc.GRUUSecret, err = cred.DeriveSecret("registrar temporary gruus " + cfg.Domain); err != nil {
			return rc, err
		}
	}
	if cfg.Registrar.UsersFile == "" {
		log.Warn("registrar: no users_file: REGISTER from anyone is accepted (registrar.open)", "domain", cfg.Domain)
		return rc, nil
	}
	users, err := registrar.LoadUsers(cfg.Path(cfg.Registrar.UsersFile))
	if err != nil {
		return rc, err
	}
	if rc.NonceSecret, err = cred.DeriveSecret("registrar nonces " + cfg.Domain); err != nil {
		return rc, err
	}
	rc.Users = users
	rc.Algorithms = cfg.Registrar.DigestAlgorithms
	rc.MD5Agents = cfg.Registrar.DigestMD5Agents
	return rc, nil
}

// newProxy makes the proxy over the registrar r: its location, users and
// proxy authentication (in realm, "" without users) are handed over as
// values, so neither package knows the other.
func newProxy(cfg *Config, r *registrar.Registrar, realm string, flows *sipnet.Flows, routeSecret []byte,
	trusted []*net.IPNet, media relay.Anchor, atRelay func(net.IP, int) bool, local proxy.Local, log *slog.Logger) (*proxy.Proxy, error) {
	pc := cfg.Proxy
	var dns *proxy.Resolver
	if pc.DNSServer != "off" {
		var err error
		if dns, err = proxy.NewResolver(pc.DNSServer, 0); err != nil {
			if pc.DNSServer != "" {
				return nil, err
			}
			log.Warn("proxy: no DNS server, RFC 3263 routing off", "err", err)
		}
	}
	var authorize func(*sip.Request) *sip.Response
	if realm != "" {
		authorize = r.AuthorizeProxy
	} else {
		realm = cfg.Domain
	}
	return proxy.New(proxy.Config{Domain: cfg.Domain, Location: r.Location(), KnownUser: r.KnownUser(),
		Flows: flows, RouteSecret: routeSecret, NATKeepalive: time.Duration(pc.NATKeepalive),
		TrustedNetworks: trusted, Authorize: authorize, TransitPeers: pc.TransitPeers, Realm: realm,
		Mode: proxy.Mode(pc.Mode), RecordRoute: pc.RecordRoute, Static: pc.StaticPeers, DNS: dns,
		CacheTTL: time.Duration(pc.CacheTTL), NegativeTTL: time.Duration(pc.NegativeTTL),
		InviteTimeout: time.Duration(pc.InviteTimeout), KeepaliveInterval: time.Duration(pc.KeepaliveInterval),
		Media: media, MediaPolicy: pc.Media, AtRelay: atRelay, MaxInFlight: pc.MaxInFlight, ShedBacklog: pc.ShedBacklog, Local: local, Logger: log})
}

// regEvents is the reg event notifier (RFC 3680) of a domain node whose
// registrar has users and whose location service tells changes; nil
// otherwise.
func regEvents(cfg *Config, r *registrar.Registrar, loc lsp.LocationService, stack *sipnet.Stack, log *slog.Logger) (proxy.Local, error) {
	w, ok := loc.(lsp.Watcher)
	if !ok || cfg.Registrar.UsersFile == "" || cfg.Domain == "" {
		return nil, nil
	}
	n, err := regevent.New(regevent.Config{Domain: cfg.Domain, Watch: w, Authorize: r.AuthorizeSubscriber, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := n.Attach(stack); err != nil {
		return nil, err
	}
	return n, nil
}

// sipTLS builds the SIP TLS configs of a node with a domain certificate
// (sipnet.LoadTLS); nil without one.
func sipTLS(cfg *Config, anchors *x509.CertPool) (*sipnet.TLS, error) {
	if cfg.CertFile == "" {
		return nil, nil
	}
	t, err := sipnet.LoadTLS(cfg.Path(cfg.CertFile), cfg.Path(cfg.KeyFile), cfg.SIPTLS, anchors)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return t, nil
}

// sipWS configures the SIP WebSocket listeners; nil without them. A
// browser presents no client certificate: wss does not ask for one.
func sipWS(cfg *Config, t *sipnet.TLS) (*sipnet.WS, error) {
	if cfg.SIPWS == "" && cfg.SIPWSS == "" {
		return nil, nil
	}
	ws := &sipnet.WS{Addr: cfg.SIPWS, TLSAddr: cfg.SIPWSS, Origins: cfg.SIPWSOrigins}
	switch {
	case cfg.SIPWSS == "":
	case cfg.SIPWSSCert != "":
		pair, err := tls.LoadX509KeyPair(cfg.Path(cfg.SIPWSSCert), cfg.Path(cfg.SIPWSSKey))
		if err != nil {
			return nil, fmt.Errorf("%w: sip_wss_cert: %v", ErrConfig, err)
		}
		ws.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	case t != nil:
		ws.TLSConfig = t.Config.Clone()
		ws.TLSConfig.ClientAuth, ws.TLSConfig.ClientCAs = tls.NoClientCert, nil
	}
	return ws, nil
}

// SIPWSAddr returns the SIP over WebSocket address (ws://), or "".
func (n *Node) SIPWSAddr() string {
	if n.sip == nil {
		return ""
	}
	return n.sip.WSAddr()
}

// SIPWSSAddr returns the SIP over secure WebSocket address (wss://), or "".
func (n *Node) SIPWSSAddr() string {
	if n.sip == nil {
		return ""
	}
	return n.sip.WSSAddr()
}

// newTURN starts the TURN server; its REST secret is derived from the
// domain credential.
func newTURN(cfg *Config, cred *lsp.Credential, log *slog.Logger) (*relay.Server, error) {
	rc := cfg.Relay
	secret, err := cred.DeriveSecret("turn rest " + cfg.Domain)
	if err != nil {
		return nil, err
	}
	var allow []*net.IPNet
	for _, c := range rc.Allow {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("%w: relay allow: %q is not a CIDR", ErrConfig, c)
		}
		allow = append(allow, n)
	}
	var tlsCfg *tls.Config
	if rc.TLS != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Path(cfg.CertFile), cfg.Path(cfg.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("%w: relay TLS certificate: %v", ErrConfig, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return relay.New(relay.Config{Addr: cfg.TURN, TLSAddr: rc.TLS, TLS: tlsCfg, RelayIP: rc.RelayIP, Realm: rc.Realm, Secret: secret,
		Allow: allow, AllowSelf: rc.AllowSelf, MaxAllocations: rc.MaxAllocations, MaxPerUser: rc.MaxPerUser, Logger: log})
}

// newMedia starts the RTP relay.
func newMedia(cfg *Config, log *slog.Logger) (*relay.Media, error) {
	allow, err := relay.ParseNetworks(cfg.Relay.Allow)
	if err != nil {
		return nil, err
	}
	mc := relay.MediaConfig{IP: cfg.Relay.MediaIP, Allow: allow, AllowSelf: cfg.Relay.AllowSelf, Logger: log}
	if r := cfg.Relay.MediaPorts; r != "" {
		if mc.MinPort, mc.MaxPort, err = ParsePortRange(r); err != nil {
			return nil, fmt.Errorf("%w: relay.media_ports %v", ErrConfig, err)
		}
	}
	return relay.NewMedia(mc)
}

// Media returns the node's RTP relay, or nil without one.
func (n *Node) Media() *relay.Media { return n.media }

// Relay returns the node's TURN server, or nil without one.
func (n *Node) Relay() *relay.Server { return n.relay }

// Proxy returns the node's SIP proxy, or nil without one.
func (n *Node) Proxy() *proxy.Proxy { return n.proxy }

// SIPTLSAddr returns the SIP over TLS address, or "" without TLS.
func (n *Node) SIPTLSAddr() string {
	if n.sip == nil {
		return ""
	}
	return n.sip.TLSAddr()
}

// SIPAddr returns the bound SIP address, or "" without one.
func (n *Node) SIPAddr() string {
	if n.sip == nil {
		return ""
	}
	return n.sip.Addr()
}

// Close stops what the start steps started, in reverse order, and returns
// once every part has stopped (each part's Close waits for its own
// goroutines; the node starts none of its own). A second Close does
// nothing.
func (n *Node) Close() error {
	n.mu.Lock()
	cs := n.closers
	n.closers = nil
	n.mu.Unlock()
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i]())
	}
	return errors.Join(errs...)
}
