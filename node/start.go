package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lsnode/lsnode/httpapi"
	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/softphone"
)

// The start steps New runs in order. Each reads the config and what the
// steps before it left on the Node, starts one part and pushes what stops
// it (onClose); a step that starts nothing pushes nothing.

// loadCredentials reads the trust anchors, the domain credential and the
// federation files, and notes the certificates held.
func (n *Node) loadCredentials(context.Context) (err error) {
	cfg := n.cfg
	if n.anchors, err = cfg.LoadTrustAnchors(); err != nil {
		return err
	}
	if n.cred, err = cfg.LoadCredential(); err != nil {
		return err
	}
	if n.fed, err = cfg.LoadFederation(); err != nil {
		return err
	}
	if n.cred != nil {
		n.certs = append(n.certs, certInfo{Role: "domain", Subject: n.cred.Leaf.Subject.String(), NotAfter: n.cred.Leaf.NotAfter})
	}
	if n.fed != nil && len(n.fed.Chain) > 0 {
		if c, err := x509.ParseCertificate(n.fed.Chain[0]); err == nil {
			n.certs = append(n.certs, certInfo{Role: "member", Subject: c.Subject.String(), NotAfter: c.NotAfter})
		}
	}
	return nil
}

// startOverlay starts the overlay member with the node's identity (not yet
// joined).
func (n *Node) startOverlay(ctx context.Context) error {
	cfg := n.cfg
	key, err := overlay.LoadOrCreateIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return err
	}
	dataDir := cfg.Path(cfg.Overlay.DataDir)
	if n.opts.InMemory {
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
		DisableDHTRefresh: n.opts.DisableDHTRefresh,
		Federation:        n.fed,
		MaxPerSubnet:      cfg.Overlay.MaxPerSubnet,
		BenchmarkValues:   cfg.Overlay.BenchmarkValues,
		MaxConnsPerIP:     cfg.Overlay.MaxConnsPerIP,
		TargetConns:       cfg.Overlay.TargetConns,
		WarmConns:         cfg.Overlay.WarmConns,
		ConnGrace:         time.Duration(cfg.Overlay.ConnGrace),
		Client:            cfg.Overlay.Client,
		Reachability:      cfg.Overlay.Reachability,
		RelayService:      cfg.Overlay.RelayService,
		View:              cfg.Overlay.View,
		RegionBits:        cfg.Overlay.RegionBits,
		Logger:            n.log,
	})
	if err != nil {
		return err
	}
	n.onClose(n.overlay.Close)
	return nil
}

// startLocation starts the location service on the overlay.
func (n *Node) startLocation(ctx context.Context) (err error) {
	n.lsp, err = n.newLocation(ctx, n.overlay, n.cfg.PrivateRecords(), n.log)
	if err != nil {
		return err
	}
	n.onClose(n.lsp.Close)
	return nil
}

// newLocation is the location service of the lsp section on ov, its
// records private or in clear.
func (n *Node) newLocation(ctx context.Context, ov *overlay.Overlay, private bool, log *slog.Logger) (*lsp.Service, error) {
	c := n.cfg.LSP
	return lsp.New(ctx, lsp.Config{
		Overlay:           ov,
		Credential:        n.cred,
		TrustAnchors:      n.anchors,
		Replicas:          c.Replicas,
		WriteQuorum:       c.WriteQuorum,
		MaxClockSkew:      time.Duration(c.MaxClockSkew),
		MaxTTL:            time.Duration(c.MaxTTL),
		RequestTimeout:    time.Duration(c.RequestTimeout),
		RebalanceDelay:    time.Duration(c.RebalanceDelay),
		RebalanceInterval: time.Duration(c.RebalanceInterval),
		MaxBindings:       c.MaxBindings,
		MaxRecordBytes:    c.MaxRecordBytes,
		MaxDomainBindings: c.MaxDomainBindings,
		MaxDomainBytes:    c.MaxDomainBytes,
		PeerRate:          c.PeerRate,
		PeerBurst:         c.PeerBurst,
		PrivateRecords:    private,
		Logger:            log,
	})
}

// startDomainLocation starts the domain's shared location service when the
// registrar has a domain_overlay: the LSP on a private overlay of the
// domain's front-ends (p2p-ipcom §4's local location service, reached
// through the same protocol). Its private-network key is derived from the
// domain's key, so only the domain's front-ends can connect; records there
// are signed by the domain credential as in the public overlay. Joining
// goes on in the background while no other front-end answers.
func (n *Node) startDomainLocation(ctx context.Context) (err error) {
	d := n.cfg.Registrar.DomainOverlay
	if len(d.Listen) == 0 || n.cfg.SIP == "" {
		return nil
	}
	if n.cred == nil {
		return fmt.Errorf("%w: registrar.domain_overlay needs the domain's credential (cert_file, key_file)", ErrConfig)
	}
	domain := strings.ToLower(n.cfg.Domain)
	psk, err := n.cred.DeriveSecret("domain overlay " + domain)
	if err != nil {
		return err
	}
	key, err := overlay.LoadOrCreateIdentity(n.cfg.Path(n.cfg.Overlay.IdentityKey))
	if err != nil {
		return err
	}
	log := n.log.With("overlay", "domain")
	ov, err := overlay.New(ctx, overlay.Config{
		Name:              "domain." + domain,
		Identity:          key,
		ListenAddrs:       d.Listen,
		Bootstrap:         d.Bootstrap,
		GossipInterval:    time.Duration(n.cfg.Overlay.GossipInterval),
		FailAfter:         time.Duration(n.cfg.Overlay.FailAfter),
		DisableDHTRefresh: n.opts.DisableDHTRefresh,
		PrivateNetwork:    psk,
		ServeAlone:        true, // a front-end works while the others are down
		Logger:            log,
	})
	if err != nil {
		return fmt.Errorf("registrar.domain_overlay: %w", err)
	}
	n.onClose(ov.Close)
	if n.shared, err = n.newLocation(ctx, ov, false, log); err != nil { // the domain's own front-ends only
		return err
	}
	n.onClose(n.shared.Close)
	n.domainOverlay = ov
	jctx, cancel := context.WithTimeout(ctx, n.opts.JoinTimeout)
	defer cancel()
	if err := ov.Join(jctx); err != nil {
		if !errors.Is(err, overlay.ErrBootstrap) {
			return fmt.Errorf("registrar.domain_overlay: %w", err)
		}
		log.Warn("no other front-end of the domain answered; retrying in the background", "err", err)
	}
	return nil
}

// join joins the overlay through its bootstrap peers; when none answers
// in time the overlay keeps trying in the background.
func (n *Node) join(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.JoinTimeout)
	defer cancel()
	if err := n.overlay.Join(ctx); err != nil {
		if !errors.Is(err, overlay.ErrBootstrap) {
			return err
		}
		n.log.Warn("no bootstrap peer answered; retrying in the background", "err", err)
	}
	return nil
}

// startMedia starts the RTP relay and its control protocol when the
// config has one, and picks the proxy's media anchor: ours, else (media
// always or auto) one the overlay announces.
func (n *Node) startMedia(context.Context) (err error) {
	proto := n.overlay.Protocol("media", "1.0.0")
	if n.cfg.Relay.MediaIP == "" {
		if m := n.cfg.Proxy.Media; m == "always" || m == "auto" {
			n.anchor = relay.NewRemote(n.overlay, proto)
		}
		return nil
	}
	if n.media, err = newMedia(n.cfg, n.log); err != nil {
		return err
	}
	n.onClose(n.media.Close)
	stop := relay.ServeControl(n.overlay, proto, n.media)
	n.onClose(func() error { stop(); return nil })
	n.anchor = n.media
	n.services = append(n.services, relay.MediaService, n.media.Endpoint())
	return nil
}

// startSIPRoles starts the SIP transport, the registrar and the proxy
// (startSIP) when the config has a SIP address.
func (n *Node) startSIPRoles(context.Context) (err error) {
	if n.cfg.SIP == "" {
		return nil
	}
	atRelay := func(ip net.IP, port int) bool {
		return n.overlay.AnyService(func(s string) bool { return relay.InEndpoint(s, ip, port) })
	}
	var shared lsp.LocationService // nil, not a nil *lsp.Service
	if n.shared != nil {
		shared = n.shared
	}
	if n.sip, n.reg, n.proxy, err = startSIP(n.cfg, n.cred, n.anchors, n.lsp, shared, n.anchor, atRelay, n.log); err != nil {
		return err
	}
	n.onClose(n.sip.Close)
	if n.proxy != nil { // closed before the stack: its goroutines use the stack's connections
		n.onClose(n.proxy.Close)
	}
	if n.cfg.SIPWS != "" || n.cfg.SIPWSS != "" {
		sc := softphone.Config{Origins: n.cfg.SIPWSOrigins}
		if n.cfg.Registrar.UsersFile != "" {
			if sc.Credentials, err = httpapi.TURNCredentials(n.reg, &n.turnLater, time.Duration(n.cfg.Relay.CredentialTTL), true); err != nil {
				return err
			}
		}
		h, err := softphone.Handler(sc)
		if err != nil {
			return err
		}
		n.sip.HandleHTTP(h)
	}
	n.sip.Serve()
	return nil
}

// turnLater is the softphone's view of the TURN server, which starts
// after the SIP stack serves: no relay ("" address) until then.
type turnLater struct{ p atomic.Pointer[relay.Server] }

func (t *turnLater) Credentials(user string, ttl time.Duration) (string, string) {
	if r := t.p.Load(); r != nil {
		return r.Credentials(user, ttl)
	}
	return "", ""
}

func (t *turnLater) Addr() string {
	if r := t.p.Load(); r != nil {
		return r.Addr()
	}
	return ""
}

func (t *turnLater) TLSAddr() string {
	if r := t.p.Load(); r != nil {
		return r.TLSAddr()
	}
	return ""
}

// startRelay starts the TURN server when the config has one.
func (n *Node) startRelay(context.Context) (err error) {
	if n.cfg.TURN == "" {
		return nil
	}
	if n.relay, err = newTURN(n.cfg, n.cred, n.log); err != nil {
		return err
	}
	n.onClose(n.relay.Close)
	n.turnLater.p.Store(n.relay)
	addr := n.relay.Addr()
	n.services = append(n.services, "turn:"+addr+"?transport=udp", "turn:"+addr+"?transport=tcp")
	if t := n.relay.TLSAddr(); t != "" {
		n.services = append(n.services, "turns:"+t+"?transport=tcp")
	}
	return nil
}

// announce advertises the relays started in the overlay's membership,
// then the node's name and domain (for other nodes' dashboards; as every
// service, the member's own claim, signed by its key: not verified, and
// the first dropped past the overlay's bound on services).
func (n *Node) announce(context.Context) error {
	svcs := slices.Clone(n.services)
	if n.cfg.Name != "" {
		svcs = append(svcs, "name:"+n.cfg.Name)
	}
	if n.cfg.Domain != "" {
		svcs = append(svcs, "domain:"+n.cfg.Domain)
	}
	n.overlay.Announce(svcs...)
	return nil
}
