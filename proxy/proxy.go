package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/relay"
	"github.com/lsnode/lsnode/sipnet"
)

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
	// foreign domain, tried in order when the overlay has no binding;
	// CatchAll ("*") for every domain without an entry. A peer answering
	// 3xx (a federation's redirect server) is followed. Redirecting, the
	// 302s name a domain's entries as its next hops (redirectVia).
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
	// Local, when set, is offered every request that passed the checks of
	// the request itself, before it is routed: true when it answered it
	// (the node's reg event notifier, regevent). The proxy owns it: Close
	// closes it.
	Local Local
	// Authorize checks a request from an untrusted source for credentials
	// of the user in its From: nil to relay it, else the 407/403 to send.
	// Nil refuses such requests with 403.
	Authorize func(*sip.Request) *sip.Response
	// Flows are the NAT flows of the stack the proxy is attached to (the
	// registrar puts them in the Path of NAT'd registrations; see
	// sipnet.Flows.Edge): requests whose Route or Path names one go down
	// it, and each gets an OPTIONS every NATKeepalive. Nil: no flows.
	Flows *sipnet.Flows
	// RouteSecret keys the tokens of this proxy's Record-Routes
	// (rrtoken.go). Keep it across restarts, and the same on every
	// front-end of a domain, so dialogs outlive a restart; nil: a random
	// key of this process.
	RouteSecret []byte
	// NATKeepalive: how often each NAT'd registration's flow gets an
	// OPTIONS (Kamailio's nathelper does the same), well under common
	// UDP NAT timeouts (30 s and up). Default 20s; negative disables.
	NATKeepalive time.Duration
	// MaxInFlight bounds the requests being routed at once (a lookup or a
	// branch pending: an INVITE counts until its final answer, a request
	// to a silent UA for its 32 s of retransmissions), in all and 1/64 of
	// it (at least 16) per source address and per Request-URI. Beyond it
	// a request gets 503 with Retry-After (RetryAfter, default 5s) before
	// any lookup, so a flood of requests to dead Contacts sheds instead of
	// piling up goroutines and retransmissions. Trusted senders are never
	// shed. Default 8192.
	MaxInFlight int
	RetryAfter  time.Duration
	// ShedBacklog: while the UDP socket's receive buffer is at least this
	// full (0 to 1 of it, in the kernel's accounting: see
	// sipnet.ShedInfo.Backlog), the CPU is not keeping up and the kernel
	// will soon drop the ACKs and BYEs of the calls in progress; new
	// INVITEs over UDP (no To tag, or one without a Route) are then
	// answered 503 with Retry-After 1 on the socket's reader, before they
	// are parsed or cost a goroutine, whoever sent them (trusted senders
	// too: an edge proxy tries another server; any traffic that fills the
	// buffer turns it on, as it would have the kernel drop everyone's
	// datagrams): a share of them rising from none at ShedBacklog to all
	// halfway from there to a full buffer (shedShare). One the reader
	// cannot read is dropped instead. Requests in a dialog and responses
	// are never shed here. Default 0.6; negative disables
	// (sipnet.ShedNew).
	ShedBacklog float64
	// Logger; default slog.Default(). Tagged component=proxy.
	Logger *slog.Logger
}

// Proxy routes SIP requests. Attach it to a stack with Attach.
type Proxy struct {
	cfg    Config
	cache  *cache
	follow follows // the cached AORs the location service tells changes of
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	runMu  sync.Mutex // guards closed and wg.Add against Close
	closed bool

	flows *sipnet.Flows // NAT flows, nil without (sipnet/flow.go)

	// Set by Attach.
	client  *sipgo.Client
	txl     *sip.TransactionLayer
	tpl     *sip.TransportLayer
	stack   *sipnet.Stack
	self    hostPort // our UDP/TCP address
	tlsSelf hostPort // our TLS address; zero without TLS
	laddr   sip.Addr

	stats    counters
	inflight *inflight // requests in handle past validation (MaxInFlight)
	acks     *ackGate  // 2xx passed upstream whose ACK has not gone on (ackgate.go)

	peersMu sync.Mutex
	peerUp  map[string]bool // static peer URI → answered its last keepalive

	rrKey []byte    // keys the Record-Route tokens (rrtoken.go)
	macs  sync.Pool // *macState: HMAC-SHA256s under rrKey (macOf)
	loops sync.Pool // *loopState (loopKey)

	anchors *anchorQuota // relay sessions per untrusted source (media.go)

	responses sipnet.StatusCounts // final responses sent upstream
}

type hostPort struct {
	host string
	port int
}

func (h hostPort) String() string { return net.JoinHostPort(h.host, strconv.Itoa(h.port)) }

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Location == nil {
		return c, fmt.Errorf("%w: no location service", ErrConfig)
	}
	switch c.Mode {
	case "":
		c.Mode = Proxying
	case Proxying, Redirecting:
	default:
		return c, fmt.Errorf("%w: mode %q (want proxy or redirect)", ErrConfig, c.Mode)
	}
	for d, hops := range c.Static {
		if len(hops) == 0 {
			return c, fmt.Errorf("%w: static peers of %q: empty list", ErrConfig, d)
		}
		for _, h := range hops {
			var u sip.Uri
			if err := sip.ParseUri(h, &u); err != nil || u.Host == "" {
				return c, fmt.Errorf("%w: static peer %q of %q is not a SIP URI", ErrConfig, h, d)
			}
		}
	}
	switch c.MediaPolicy {
	case "", "off":
		c.MediaPolicy = "off"
	case "always", "auto":
		if c.Media == nil {
			return c, fmt.Errorf("%w: media policy %q needs a media relay", ErrConfig, c.MediaPolicy)
		}
	default:
		return c, fmt.Errorf("%w: media policy %q (want off, always or auto)", ErrConfig, c.MediaPolicy)
	}
	c.TransitPeers = slices.Clone(c.TransitPeers)
	for i, d := range c.TransitPeers {
		c.TransitPeers[i] = strings.ToLower(d)
	}
	if c.Realm == "" {
		c.Realm = c.Domain
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 30 * time.Second
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = 5 * time.Second
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = 3 * time.Second
	}
	if c.InviteTimeout <= 0 {
		c.InviteTimeout = 180 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 8192
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.ShedBacklog == 0 {
		c.ShedBacklog = 0.6
	}
	if c.ShedBacklog > 1 || math.IsNaN(c.ShedBacklog) {
		return c, fmt.Errorf("%w: shed backlog %v (want a share of the receive buffer, at most 1)", ErrConfig, c.ShedBacklog)
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 30 * time.Second
	}
	if c.NATKeepalive == 0 {
		c.NATKeepalive = 20 * time.Second
	}
	if c.KeepaliveTimeout <= 0 {
		c.KeepaliveTimeout = 5 * time.Second
	}
	if c.TrustedNetworks == nil {
		c.TrustedNetworks = sipnet.Loopback()
	}
	return c, nil
}

// New validates cfg and returns a proxy. Attach it to a stack to serve it.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "proxy"), cache: newCache(maxCached), peerUp: map[string]bool{}, inflight: newInflight(cfg.MaxInFlight), acks: newAckGate(), anchors: &anchorQuota{by: map[string][]string{}, held: map[string]int{}},
		flows: cfg.Flows, rrKey: cfg.RouteSecret}
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

// Attach serves the proxy on a stack: every method but REGISTER (which
// the registrar attached before it takes), and the responses that match
// no transaction. Attach before the stack serves; once.
func (p *Proxy) Attach(s *sipnet.Stack) error {
	ua, addr := s.UA(), s.Addr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("proxy: stack address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("proxy: stack address %q: %w", addr, err)
	}
	p.self = hostPort{host, n}
	if ta := s.TLSAddr(); ta != "" {
		th, tp, err := net.SplitHostPort(ta)
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
		s.Handle(m, p.handle)
	}
	p.stack = s
	p.txl, p.tpl = ua.TransactionLayer(), ua.TransportLayer()
	s.OnUnhandledResponse(p.handleStray)
	s.Handle(sip.ACK, p.handleAck)
	s.Handle(sip.CANCEL, p.handleCancel)
	s.HandleOther(p.handle)
	if p.cfg.ShedBacklog > 0 {
		s.ShedNew(sip.INVITE, p.behind, &p.responses)
	}
	// The proxy's work ends with the stack it serves on, whichever is
	// closed first.
	context.AfterFunc(s.Context(), p.cancel)
	if len(p.cfg.Static) > 0 && p.cfg.KeepaliveInterval > 0 {
		p.spawn(p.keepalive)
	}
	if p.cfg.NATKeepalive > 0 && p.flows != nil {
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
	if p.cfg.Local != nil {
		return p.cfg.Local.Close()
	}
	return nil
}

// behind is the shed hook of new INVITEs on the UDP readers
// (Config.ShedBacklog): a second's Retry-After (a backlog clears in less;
// a longer one would keep UAs and upstream proxies away for nothing, RFC
// 3261 §21.5.4) for a share of them (shedShare) while the socket's
// backlog is at ShedBacklog or more.
func (p *Proxy) behind(in sipnet.ShedInfo) time.Duration {
	s := shedShare(in.Backlog(), p.cfg.ShedBacklog)
	if s <= 0 || s < 1 && mrand.Float64() >= s {
		return 0
	}
	p.stats.readerShed.Add(1)
	return time.Second
}

// shedShare is the share of new INVITEs shed at a backlog: none below
// from, then rising in a straight line to all of them halfway from there
// to a full buffer (random early detection, as routers drop packets: a
// burst the readers catch up with costs a few calls, not every one that
// arrives during it, and a backlog that keeps growing is met with more).
// From 1, all once the buffer is full; from 0 or less, none.
func shedShare(backlog, from float64) float64 {
	switch {
	case from <= 0 || backlog < from:
		return 0
	case from >= 1:
		return 1
	}
	return min(1, (backlog-from)/((1-from)/2))
}

// Local answers some requests at the proxy's node instead of routing
// them (see Config.Local).
type Local interface {
	Handle(*sip.Request, sip.ServerTransaction) bool
	Close() error
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
	Followed    int64 // requests sent to a Contact of a static peer's 3xx
	CacheHits   int64 // lookups answered from the cache
	Lookups     int64 // lookups that went to the location service
	Pushed      int64 // cached lookups replaced by a change the location service told (followChanges)
	Local       int64 // final responses generated here (4xx/5xx, 302)
	Failovers   int64 // alternative servers tried after one failed (503 or no answer)
	Refused     int64 // requests refused by the relay policy (403/407)
	Shed        int64 // requests answered 503 because MaxInFlight were being routed
	ReaderShed  int64 // new INVITEs refused on the UDP reader for its backlog (ShedBacklog): 503, or dropped if unreadable there
	Anchored    int64 // calls whose media was anchored on the relay
	Relayed     int64 // offers left as they were ("auto"): their media already goes to an overlay relay
	// NATPings: OPTIONS sent down NAT flows; NATPingsAnswered: those
	// answered. Flowed: requests sent down a NAT flow.
	NATPings, NATPingsAnswered, Flowed int64
	Flows                              int // NAT flows kept alive now (Flows)
	InFlight                           int // requests being routed now (bounded by MaxInFlight)
	// AckHeld: requests in a dialog held until the ACK of its 2xx went
	// on (ackgate.go); AckLate: those sent on after ackHold without it.
	AckHeld, AckLate int64
}

type counters struct {
	requests, forwarded, direct, redirected, static, dns, followed, cacheHits, lookups, pushed, local, failovers, refused, shed, readerShed, anchored, relayed atomic.Int64
	natPings, natPingsAnswered, flowed                                                                                                                         atomic.Int64
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
func (p *Proxy) Responses() *sipnet.StatusCounts { return &p.responses }

// Stats returns the counters and the NAT flows kept alive: what the
// dashboard shows and the metrics export.
func (p *Proxy) Stats() Stats {
	c := &p.stats
	return Stats{Flows: p.Flows(), InFlight: p.inflight.now(), Requests: c.requests.Load(), Forwarded: c.forwarded.Load(), Direct: c.direct.Load(),
		Redirected: c.redirected.Load(), Static: c.static.Load(), DNS: c.dns.Load(), Followed: c.followed.Load(),
		CacheHits: c.cacheHits.Load(), Lookups: c.lookups.Load(), Pushed: c.pushed.Load(), Local: c.local.Load(), Failovers: c.failovers.Load(), Refused: c.refused.Load(), Shed: c.shed.Load(), ReaderShed: c.readerShed.Load(), Anchored: c.anchored.Load(), Relayed: c.relayed.Load(),
		NATPings: c.natPings.Load(), NATPingsAnswered: c.natPingsAnswered.Load(), Flowed: c.flowed.Load(),
		AckHeld: p.acks.held.Load(), AckLate: p.acks.late.Load()}
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
