// Package proxy is lsnode's SIP peer proxy and redirect server (RFC 3261
// §16, draft-johnston-sipping-p2p-ipcom §3): it looks the Request-URI's AOR
// up in the overlay and sends the request straight to the callee's Contact,
// so the callee domain's own proxy is not on the path. AORs the overlay does
// not know go to configured static peers, then to RFC 3263 DNS targets.
package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/registrar"
	"github.com/lsnode/lsnode/relay"
)

// ErrConfig is returned for an invalid proxy configuration.
var ErrConfig = errors.New("proxy: config")

// Mode selects proxying or redirecting.
type Mode string

const (
	// Proxying forwards requests (transaction-stateful, forking).
	Proxying Mode = "proxy"
	// Redirecting answers 302 with the target's Contacts.
	Redirecting Mode = "redirect"
)

// Config configures a proxy. Zero values take the defaults per field.
type Config struct {
	// Domain this node serves (its registrar's); "" for none.
	Domain string
	// Location answers AOR lookups (the overlay, or the registrar's store).
	Location lsp.LocationService
	// KnownUser, when set, tells a user of Domain without bindings (480)
	// from one that does not exist (404).
	KnownUser func(aor string) bool
	// Mode: Proxying (default) or Redirecting.
	Mode Mode
	// RecordRoute keeps this proxy on the dialog's path.
	RecordRoute bool
	// Static lists next hops (SIP URIs such as "sip:10.0.0.2:5060") per
	// foreign domain, tried in order when the overlay has no binding. A
	// peer answering 3xx (a federation's redirect server) is followed.
	Static map[string][]string
	// DNS resolves foreign domains (RFC 3263) when neither the overlay nor
	// a static peer knows them; nil disables DNS routing.
	DNS *Resolver
	// CacheTTL bounds how long a lookup is reused (and never beyond the
	// binding's expiry); NegativeTTL how long "no binding" is. Defaults
	// 30s and 5s; a negative value disables that cache.
	CacheTTL, NegativeTTL time.Duration
	// LookupTimeout bounds one overlay lookup. Default 3s.
	LookupTimeout time.Duration
	// InviteTimeout is Timer C: how long an INVITE branch may stay without a
	// final response. Default 180s.
	InviteTimeout time.Duration
	// KeepaliveInterval: how often static peers get an OPTIONS (a peer
	// that did not answer the last one is tried after the others).
	// Default 30s; negative disables. KeepaliveTimeout bounds one: 5s.
	KeepaliveInterval, KeepaliveTimeout time.Duration
	// Media, with MediaPolicy "always" or "auto", anchors calls on an RTP
	// relay (SPEERMINT's integrated model; the node's own, or one the
	// overlay announces): the proxy rewrites the SDP of the offer and the
	// answer so both parties send media to the relay, and record-routes the
	// call to see its BYE. "auto" does it when the offer's or the Contact's
	// address is private. Default "off".
	Media       relay.Anchor
	MediaPolicy string
	// AtRelay reports whether an address is on a media relay of the
	// overlay (relay.AtRelay over the announced endpoints). With "auto", an
	// offer whose media already goes to one is not anchored again: one
	// relay, latching both parties (RFC 4961), serves a call between two
	// NAT'd UAs. "always" anchors on this proxy's relay regardless. Nil:
	// none is known.
	AtRelay func(ip net.IP, port int) bool
	// TrustedNetworks may send requests anywhere (co-located servers and
	// UAs). Others may only reach bindings of Domain's users, continue
	// dialogs this proxy record-routed (a Route carrying a token minted for
	// the dialog's Call-ID), or send as a user who passes Authorize; the
	// policy is decided on the next hop actually chosen. Nil means
	// loopback only; an empty list trusts nobody.
	TrustedNetworks []*net.IPNet
	// TransitPeers are TLS peer domains that may send requests from users
	// of any domain; any other peer presenting a client certificate may
	// send only from users of the domains its certificate names (RFC 5922
	// identity; 403 otherwise).
	TransitPeers []string
	// Realm of the digest credentials Authorize checks; Proxy-Authorization
	// values of this realm are consumed here, never forwarded. Default
	// Domain.
	Realm string
	// Authorize checks a request from an untrusted source for credentials
	// of the user in its From: nil to relay it, else the 407/403 to send.
	// Nil refuses such requests with 403.
	Authorize func(*sip.Request) *sip.Response
	// FlowSecret keys the flow tokens this proxy puts in the Path of NAT'd
	// registrations (see Edge); nil: no flows. Keep it across restarts so
	// the Paths stored in the overlay stay valid.
	FlowSecret []byte
	// NATKeepalive: how often each NAT'd registration's flow gets an
	// OPTIONS (Kamailio's nathelper does the same), well under common
	// UDP NAT timeouts (30 s and up). Default 20s; negative disables.
	NATKeepalive time.Duration
	// Logger; default slog.Default(). Tagged component=proxy.
	Logger *slog.Logger
}

// Proxy routes SIP requests. Attach it to a listener with Attach.
type Proxy struct {
	cfg    Config
	cache  *cache
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	runMu  sync.Mutex // guards closed and wg.Add against Close
	closed bool

	// Set by Attach.
	client  *sipgo.Client
	txl     *sip.TransactionLayer
	tpl     *sip.TransportLayer
	srv     *sipgo.Server
	self    hostPort // our UDP/TCP address
	tlsSelf hostPort // our TLS address; zero without TLS
	laddr   sip.Addr

	stats counters

	peersMu sync.Mutex
	peerUp  map[string]bool // static peer URI → answered its last keepalive

	flows flows // NAT flows kept alive (flow.go)

	rrKey []byte // keys the Record-Route tokens (rrtoken.go)

	responses registrar.StatusCounts // final responses sent upstream
}

type hostPort struct {
	host string
	port int
}

func (h hostPort) String() string { return net.JoinHostPort(h.host, strconv.Itoa(h.port)) }

// New validates cfg and returns a proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Location == nil {
		return nil, fmt.Errorf("%w: no location service", ErrConfig)
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = Proxying
	case Proxying, Redirecting:
	default:
		return nil, fmt.Errorf("%w: mode %q (want proxy or redirect)", ErrConfig, cfg.Mode)
	}
	for d, hops := range cfg.Static {
		if len(hops) == 0 {
			return nil, fmt.Errorf("%w: static peers of %q: empty list", ErrConfig, d)
		}
		for _, h := range hops {
			var u sip.Uri
			if err := sip.ParseUri(h, &u); err != nil || u.Host == "" {
				return nil, fmt.Errorf("%w: static peer %q of %q is not a SIP URI", ErrConfig, h, d)
			}
		}
	}
	for i, d := range cfg.TransitPeers {
		cfg.TransitPeers[i] = strings.ToLower(d)
	}
	if cfg.Realm == "" {
		cfg.Realm = cfg.Domain
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 5 * time.Second
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 3 * time.Second
	}
	if cfg.InviteTimeout <= 0 {
		cfg.InviteTimeout = 180 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch cfg.MediaPolicy {
	case "", "off":
		cfg.MediaPolicy = "off"
	case "always", "auto":
		if cfg.Media == nil {
			return nil, fmt.Errorf("%w: media policy %q needs a media relay", ErrConfig, cfg.MediaPolicy)
		}
	default:
		return nil, fmt.Errorf("%w: media policy %q (want off, always or auto)", ErrConfig, cfg.MediaPolicy)
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = 30 * time.Second
	}
	if cfg.NATKeepalive == 0 {
		cfg.NATKeepalive = 20 * time.Second
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = 5 * time.Second
	}
	if cfg.TrustedNetworks == nil {
		cfg.TrustedNetworks = registrar.Loopback()
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "proxy"), cache: newCache(maxCached), peerUp: map[string]bool{},
		flows: flows{m: map[string]flow{}}, rrKey: cfg.FlowSecret}
	if len(p.rrKey) == 0 {
		// No domain key to derive from: dialogs record-routed by this
		// process do not outlive it.
		p.rrKey = make([]byte, 32)
		if _, err := rand.Read(p.rrKey); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Attach serves the proxy on a registrar's listener: every method but
// REGISTER (which stays with the registrar).
func (p *Proxy) Attach(l *registrar.Listener) error {
	ua, srv, addr := l.UA, l.Server, l.Addr
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("proxy: listener address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("proxy: listener address %q: %w", addr, err)
	}
	p.self = hostPort{host, n}
	if l.TLSAddr != "" {
		th, tp, err := net.SplitHostPort(l.TLSAddr)
		if tn, err2 := strconv.Atoi(tp); err == nil && err2 == nil {
			p.tlsSelf = hostPort{th, tn}
		}
	}
	p.laddr = sip.Addr{IP: net.ParseIP(host), Port: n, Hostname: host}
	if p.client, err = sipgo.NewClient(ua, sipgo.WithClientAddr(addr), sipgo.WithClientLogger(p.log)); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.BYE, sip.OPTIONS, sip.INFO, sip.UPDATE, sip.MESSAGE,
		sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.PRACK, sip.PUBLISH} {
		srv.OnRequest(m, p.handle)
	}
	p.srv = srv
	p.txl, p.tpl = ua.TransactionLayer(), ua.TransportLayer()
	l.OnUnhandledResponse(p.handleStray)
	srv.OnAck(p.handleAck)
	srv.OnCancel(p.handleCancel)
	srv.OnNoRoute(p.handle)
	if len(p.cfg.Static) > 0 && p.cfg.KeepaliveInterval > 0 {
		p.spawn(p.keepalive)
	}
	if p.cfg.NATKeepalive > 0 && len(p.cfg.FlowSecret) > 0 {
		p.spawn(p.natKeepalive)
	}
	return nil
}

// Close ends every forwarding goroutine (pending branches are cancelled).
// Requests still arriving on the shared sockets start nothing new.
func (p *Proxy) Close() error {
	p.runMu.Lock()
	p.closed = true
	p.runMu.Unlock()
	p.cancel()
	p.wg.Wait()
	return nil
}

// spawn runs fn on a goroutine Close waits for; once Close has begun it
// runs nothing and returns false (a WaitGroup may not grow during Wait).
func (p *Proxy) spawn(fn func()) bool {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

// Stats is a snapshot of the proxy's counters.
type Stats struct {
	Requests    int64 // requests received (ACK and CANCEL included)
	Forwarded   int64 // requests sent on (one per branch)
	Direct      int64 // requests sent straight to a Contact found in the overlay
	Redirected  int64 // 3xx answers in redirect mode
	Static, DNS int64 // requests sent to a static peer / to a DNS target
	CacheHits   int64 // lookups answered from the cache
	Lookups     int64 // lookups that went to the location service
	Local       int64 // final responses generated here (4xx/5xx, 302)
	Failovers   int64 // alternative servers tried after one failed (503 or no answer)
	Refused     int64 // requests refused by the relay policy (403/407)
	Anchored    int64 // calls whose media was anchored on the relay
	Relayed     int64 // offers left as they were ("auto"): their media already goes to an overlay relay
	// NATPings: OPTIONS sent down NAT flows; NATPingsAnswered: those
	// answered. Flowed: requests sent down a NAT flow.
	NATPings, NATPingsAnswered, Flowed int64
}

type counters struct {
	requests, forwarded, direct, redirected, static, dns, cacheHits, lookups, local, failovers, refused, anchored, relayed atomic.Int64
	natPings, natPingsAnswered, flowed                                                                                     atomic.Int64
}

// callID is a message's Call-ID for log correlation ("" without one).
func callID(m interface{ CallID() *sip.CallIDHeader }) string {
	if c := m.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

// Responses counts the final responses the proxy sent upstream, by the
// request's method and the status code.
func (p *Proxy) Responses() *registrar.StatusCounts { return &p.responses }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	c := &p.stats
	return Stats{Requests: c.requests.Load(), Forwarded: c.forwarded.Load(), Direct: c.direct.Load(),
		Redirected: c.redirected.Load(), Static: c.static.Load(), DNS: c.dns.Load(),
		CacheHits: c.cacheHits.Load(), Lookups: c.lookups.Load(), Local: c.local.Load(), Failovers: c.failovers.Load(), Refused: c.refused.Load(), Anchored: c.anchored.Load(), Relayed: c.relayed.Load(),
		NATPings: c.natPings.Load(), NATPingsAnswered: c.natPingsAnswered.Load(), Flowed: c.flowed.Load()}
}

// respond sends a locally generated final response.
func (p *Proxy) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	p.stats.local.Add(1)
	p.responses.Add(string(req.Method), code)
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		p.log.Debug("respond", "call", callID(req), "code", code, "err", err)
	}
}
