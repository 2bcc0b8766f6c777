package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/metrics"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/proxy"
	"github.com/lsnode/lsnode/registrar"
	"github.com/lsnode/lsnode/relay"
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

// Node is a running lsnode.
type Node struct {
	cfg         *Config
	log         *slog.Logger
	overlay     *overlay.Overlay
	lsp         *lsp.Service
	registrar   *registrar.Server
	reg         *registrar.Registrar
	proxy       *proxy.Proxy
	relay       *relay.Server
	media       *relay.Media
	stopControl func() // media relay control protocol
	http        *http.Server
	httpLn      net.Listener
	metrics     *metrics.Metrics
	// metricsReady is metrics once made: the location service observes
	// from its own goroutines before then.
	metricsReady atomic.Pointer[metrics.Metrics]
	admin        *http.Server
	adminLn      net.Listener
	api          *http.Server
	apiLn        net.Listener
	started      time.Time
	certs        []certInfo // the domain and member certificates, when held
}

// certInfo is a certificate this node holds, for metrics and the dashboard.
type certInfo struct {
	Role     string    `json:"role"` // "domain" (signs writes) or "member" (federation)
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"not_after"`
}

// New starts a node from cfg: identity, overlay (joined through its
// bootstrap peers) and location service. A failed start cleans up after
// itself.
func New(ctx context.Context, cfg *Config, opts Options) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 10 * time.Second
	}
	log := opts.Logger.With("node", cfg.Name)
	nd := &Node{cfg: cfg, log: log, started: time.Now()}
	n = nd
	defer func() {
		if err != nil {
			nd.Close() // n itself is already nil here: "return nil, err" set it
			n = nil
		}
	}()
	key, err := overlay.LoadOrCreateIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return nil, err
	}
	pool, err := cfg.LoadTrustAnchors()
	if err != nil {
		return nil, err
	}
	cred, err := cfg.LoadCredential()
	if err != nil {
		return nil, err
	}
	fed, err := cfg.LoadFederation()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		nd.certs = append(nd.certs, certInfo{Role: "domain", Subject: cred.Leaf.Subject.String(), NotAfter: cred.Leaf.NotAfter})
	}
	if fed != nil && len(fed.Chain) > 0 {
		if c, err := x509.ParseCertificate(fed.Chain[0]); err == nil {
			nd.certs = append(nd.certs, certInfo{Role: "member", Subject: c.Subject.String(), NotAfter: c.NotAfter})
		}
	}
	dataDir := cfg.Path(cfg.Overlay.DataDir)
	if opts.InMemory {
		dataDir = ""
	}
	n.overlay, err = overlay.New(ctx, overlay.Config{
		Name:              cfg.Overlay.Name,
		Identity:          key,
		ListenAddrs:       cfg.Overlay.Listen,
		Bootstrap:         cfg.Overlay.Bootstrap,
		DataDir:           dataDir,
		GossipInterval:    time.Duration(cfg.Overlay.GossipInterval),
		FailAfter:         time.Duration(cfg.Overlay.FailAfter),
		DisableDHTRefresh: opts.DisableDHTRefresh,
		Federation:        fed,
		MaxPerSubnet:      cfg.Overlay.MaxPerSubnet,
		BenchmarkValues:   cfg.Overlay.BenchmarkValues,
		MaxConnsPerIP:     cfg.Overlay.MaxConnsPerIP,
		Client:            cfg.Overlay.Client,
		Reachability:      cfg.Overlay.Reachability,
		RelayService:      cfg.Overlay.RelayService,
		Logger:            log,
	})
	if err != nil {
		return nil, err
	}
	n.lsp, err = lsp.New(ctx, lsp.Config{
		Overlay:           n.overlay,
		Credential:        cred,
		TrustAnchors:      pool,
		Replicas:          cfg.LSP.Replicas,
		WriteQuorum:       cfg.LSP.WriteQuorum,
		MaxClockSkew:      time.Duration(cfg.LSP.MaxClockSkew),
		MaxTTL:            time.Duration(cfg.LSP.MaxTTL),
		RequestTimeout:    time.Duration(cfg.LSP.RequestTimeout),
		RebalanceDelay:    time.Duration(cfg.LSP.RebalanceDelay),
		RebalanceInterval: time.Duration(cfg.LSP.RebalanceInterval),
		MaxBindings:       cfg.LSP.MaxBindings,
		MaxRecordBytes:    cfg.LSP.MaxRecordBytes,
		MaxDomainBindings: cfg.LSP.MaxDomainBindings,
		MaxDomainBytes:    cfg.LSP.MaxDomainBytes,
		PeerRate:          cfg.LSP.PeerRate,
		PeerBurst:         cfg.LSP.PeerBurst,
		Logger:            log,
		Observe:           func(op string, d time.Duration, err error) { nd.observe(op, d, err) },
	})
	if err != nil {
		return nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, opts.JoinTimeout)
	defer cancel()
	if err := n.overlay.Join(jctx); err != nil {
		if !errors.Is(err, overlay.ErrBootstrap) {
			return nil, err
		}
		log.Warn("no bootstrap peer answered; retrying in the background", "err", err)
	}
	var services []string
	var anchor relay.Anchor // the proxy's media relay: ours, else one the overlay announces
	mediaProto := nd.overlay.Protocol("media", "1.0.0")
	if cfg.Relay.MediaIP != "" {
		if nd.media, err = startMedia(cfg, log); err != nil {
			return nil, err
		}
		anchor = nd.media
		nd.stopControl = relay.ServeControl(nd.overlay, mediaProto, nd.media)
		services = append(services, relay.MediaService, nd.media.Endpoint())
	} else if m := cfg.Proxy.Media; m == "always" || m == "auto" {
		anchor = relay.NewRemote(nd.overlay, mediaProto)
	}
	if cfg.SIP != "" {
		atRelay := func(ip net.IP, port int) bool {
			return nd.overlay.AnyService(func(s string) bool { return relay.InEndpoint(s, ip, port) })
		}
		if nd.registrar, nd.reg, nd.proxy, err = startSIP(cfg, cred, pool, nd.lsp, anchor, atRelay, log); err != nil {
			return nil, err
		}
	}
	if cfg.TURN != "" {
		if nd.relay, err = startRelay(cfg, cred, log); err != nil {
			return nil, err
		}
		addr := nd.relay.Addr()
		services = append(services, "turn:"+addr+"?transport=udp", "turn:"+addr+"?transport=tcp")
		if t := nd.relay.TLSAddr(); t != "" {
			services = append(services, "turns:"+t+"?transport=tcp")
		}
	}
	nd.overlay.Announce(services...)
	if cfg.HTTP != "" {
		if err := nd.startHTTP(cfg, log); err != nil {
			return nil, err
		}
	}
	nd.metrics = nd.newMetrics()
	nd.metricsReady.Store(nd.metrics)
	if cfg.Admin != "" {
		if err := nd.startAdmin(cfg, log); err != nil {
			return nil, err
		}
	}
	if cfg.API != "" {
		if err := nd.startAPI(cfg, log); err != nil {
			return nil, err
		}
	}
	log.Info("node up", "peer", n.overlay.ID(), "addrs", n.overlay.Addrs(), "domain", cfg.Domain, "sip", cfg.SIP)
	return n, nil
}

// observe feeds the metrics' latency histograms (set once the node is up).
func (n *Node) observe(op string, d time.Duration, err error) {
	if m := n.metricsReady.Load(); m != nil {
		m.Observe(op, d, err)
	}
}

// Metrics returns the node's metrics registry.
func (n *Node) Metrics() *metrics.Metrics { return n.metrics }

// Config returns the node's config.
func (n *Node) Config() *Config { return n.cfg }

// Overlay returns the node's overlay membership.
func (n *Node) Overlay() *overlay.Overlay { return n.overlay }

// Location returns the node's in-process location service.
func (n *Node) Location() *lsp.Service { return n.lsp }

// startSIP starts the registrar and, unless the config turns it off, the
// proxy on the same sockets.
func startSIP(cfg *Config, cred *lsp.Credential, anchors *x509.CertPool, loc lsp.LocationService, media relay.Anchor,
	atRelay func(net.IP, int) bool, log *slog.Logger) (*registrar.Server, *registrar.Registrar, *proxy.Proxy, error) {
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
	rc := registrar.Config{Domain: cfg.Domain, Mode: registrar.Mode(cfg.Registrar.Mode), Location: loc, TrustedNetworks: trusted,
		MinExpires: time.Duration(cfg.Registrar.MinExpires), MaxExpires: time.Duration(cfg.Registrar.MaxExpires),
		Logger: log}
	if cfg.Registrar.UsersFile != "" {
		users, err := registrar.LoadUsers(cfg.Path(cfg.Registrar.UsersFile))
		if err != nil {
			return nil, nil, nil, err
		}
		if rc.NonceSecret, err = cred.DeriveSecret("registrar nonces " + cfg.Domain); err != nil {
			return nil, nil, nil, err
		}
		rc.Users = users
		rc.Algorithms = cfg.Registrar.DigestAlgorithms
		rc.MD5Agents = cfg.Registrar.DigestMD5Agents
	} else {
		log.Warn("registrar: no users_file: REGISTER from anyone is accepted (registrar.open)", "domain", cfg.Domain)
	}
	r, err := registrar.New(rc)
	if err != nil {
		return nil, nil, nil, err
	}
	tlsCfg, err := sipTLS(cfg, anchors)
	if err != nil {
		return nil, nil, nil, err
	}
	pc := cfg.Proxy
	if pc.Mode == "off" {
		s, err := registrar.Listen(r, cfg.SIP, tlsCfg, log)
		return s, r, nil, err
	}
	var dns *proxy.Resolver
	if pc.DNSServer != "off" {
		if dns, err = proxy.NewResolver(pc.DNSServer, 0); err != nil {
			if pc.DNSServer != "" {
				return nil, nil, nil, err
			}
			log.Warn("proxy: no DNS server, RFC 3263 routing off", "err", err)
		}
	}
	var authorize func(*sip.Request) *sip.Response
	realm := cfg.Domain
	if rc.Users != nil {
		authorize = r.AuthorizeProxy
		realm = rc.Users.Realm
	}
	flowSecret, err := cred.DeriveSecret("proxy flow tokens " + cfg.Domain)
	if err != nil {
		return nil, nil, nil, err
	}
	px, err := proxy.New(proxy.Config{Domain: cfg.Domain, Location: r.Location(), KnownUser: r.KnownUser(),
		FlowSecret: flowSecret, NATKeepalive: time.Duration(pc.NATKeepalive),
		TrustedNetworks: trusted, Authorize: authorize, TransitPeers: pc.TransitPeers, Realm: realm,
		Mode: proxy.Mode(pc.Mode), RecordRoute: pc.RecordRoute, Static: pc.StaticPeers, DNS: dns,
		CacheTTL: time.Duration(pc.CacheTTL), NegativeTTL: time.Duration(pc.NegativeTTL),
		InviteTimeout: time.Duration(pc.InviteTimeout), KeepaliveInterval: time.Duration(pc.KeepaliveInterval),
		Media: media, MediaPolicy: pc.Media, AtRelay: atRelay, Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	r.SetEdge(px.Edge)
	s, err := registrar.Listen(r, cfg.SIP, tlsCfg, log, px.Attach)
	if err != nil {
		px.Close()
		return nil, nil, nil, err
	}
	return s, r, px, nil
}

// sipTLS builds the SIP TLS configs of a node with a domain certificate:
// the server asks for a client certificate and refuses one that does not
// chain to the trust anchors (a UA may still connect without one); the
// client side (peering) presents the domain certificate and accepts only
// peers whose certificate chains to the anchors.
func sipTLS(cfg *Config, anchors *x509.CertPool) (*registrar.TLS, error) {
	if cfg.CertFile == "" {
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(cfg.Path(cfg.CertFile), cfg.Path(cfg.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: SIP TLS certificate: %v", ErrConfig, err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: anchors}
	client := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		// Peers are dialled by address, so the name check of the default
		// verification cannot apply; the chain check below replaces it.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}}
	return &registrar.TLS{Addr: cfg.SIPTLS, Config: server, Client: client}, nil
}

// startRelay starts the TURN server; its REST secret is derived from the
// domain credential.
func startRelay(cfg *Config, cred *lsp.Credential, log *slog.Logger) (*relay.Server, error) {
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
	realm := rc.Realm
	if realm == "" {
		realm = cfg.Domain
	}
	var tlsCfg *tls.Config
	if rc.TLS != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Path(cfg.CertFile), cfg.Path(cfg.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("%w: relay TLS certificate: %v", ErrConfig, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return relay.New(relay.Config{Addr: cfg.TURN, TLSAddr: rc.TLS, TLS: tlsCfg, RelayIP: rc.RelayIP, Realm: realm, Secret: secret,
		Allow: allow, MaxAllocations: rc.MaxAllocations, MaxPerUser: rc.MaxPerUser, Logger: log})
}

// startMedia starts the RTP relay.
func startMedia(cfg *Config, log *slog.Logger) (*relay.Media, error) {
	allow, err := relay.ParseNetworks(cfg.Relay.Allow)
	if err != nil {
		return nil, err
	}
	mc := relay.MediaConfig{IP: cfg.Relay.MediaIP, Allow: allow, Logger: log}
	if r := cfg.Relay.MediaPorts; r != "" {
		lo, hi, ok := strings.Cut(r, "-")
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: relay media_ports %q (want LOW-HIGH)", ErrConfig, r)
		}
		mc.MinPort, mc.MaxPort = a, b
	}
	return relay.NewMedia(mc)
}

// Media returns the node's RTP relay, or nil without one.
func (n *Node) Media() *relay.Media { return n.media }

// startHTTP serves GET /turn/credentials: ephemeral TURN credentials for a
// SIP user who authenticates with digest against the registrar's users.
func (n *Node) startHTTP(cfg *Config, log *slog.Logger) error {
	if n.reg == nil || n.relay == nil {
		return fmt.Errorf("%w: http needs the registrar and the relay", ErrConfig)
	}
	ttl := time.Duration(cfg.Relay.CredentialTTL)
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return fmt.Errorf("node: listen http %s: %w", cfg.HTTP, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /turn/credentials", func(w http.ResponseWriter, r *http.Request) {
		aor, challenges := n.reg.CheckDigest(r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
		if aor == "" {
			for _, c := range challenges {
				w.Header().Add("WWW-Authenticate", c)
			}
			http.Error(w, "digest authentication with a SIP user's credentials required", http.StatusUnauthorized)
			return
		}
		user, pass := n.relay.Credentials(strings.TrimPrefix(aor, "sip:"), ttl)
		host, port, _ := net.SplitHostPort(n.relay.Addr())
		addr := net.JoinHostPort(host, port)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"username": user, "password": pass, "ttl": int(ttl.Seconds()),
			"uris": []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}})
	})
	n.httpLn = ln
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = n.http.Serve(ln) }()
	return nil
}

// Relay returns the node's TURN server, or nil without one.
func (n *Node) Relay() *relay.Server { return n.relay }

// HTTPAddr returns the bound HTTP address, or "" without one.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Proxy returns the node's SIP proxy, or nil without one.
func (n *Node) Proxy() *proxy.Proxy { return n.proxy }

// SIPTLSAddr returns the registrar's TLS address, or "" without TLS.
func (n *Node) SIPTLSAddr() string {
	if n.registrar == nil {
		return ""
	}
	return n.registrar.TLSAddr()
}

// SIPAddr returns the registrar's bound address, or "" without one.
func (n *Node) SIPAddr() string {
	if n.registrar == nil {
		return ""
	}
	return n.registrar.Addr()
}

// Close stops the roles in reverse order of start.
func (n *Node) Close() error {
	var errs []error
	if n.registrar != nil {
		errs = append(errs, n.registrar.Close())
	}
	if n.proxy != nil {
		errs = append(errs, n.proxy.Close())
	}
	if n.http != nil {
		errs = append(errs, n.http.Close())
	}
	if n.admin != nil {
		errs = append(errs, n.admin.Close())
	}
	if n.api != nil {
		errs = append(errs, n.api.Close())
	}
	if n.relay != nil {
		errs = append(errs, n.relay.Close())
	}
	if n.stopControl != nil {
		n.stopControl()
	}
	if n.media != nil {
		errs = append(errs, n.media.Close())
	}
	if n.lsp != nil {
		errs = append(errs, n.lsp.Close())
	}
	if n.overlay != nil {
		errs = append(errs, n.overlay.Close())
	}
	return errors.Join(errs...)
}
