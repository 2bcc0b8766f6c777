package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"crypto/sha256"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// Mode selects where bindings live.
type Mode string

const (
	// Stateless publishes into the overlay only (the draft's stateless registrar).
	Stateless Mode = "stateless"
	// Local keeps bindings out of the overlay: in the domain's shared
	// location service (Config.Shared), else in this process only.
	Local Mode = "local"
	// Hybrid publishes into the overlay and mirrors to the domain's shared
	// location service (else to this process); reads fall back to the
	// mirror while the overlay is unavailable.
	Hybrid Mode = "hybrid"
)

// Config configures a registrar. Zero values take the defaults per field.
type Config struct {
	// Domain the registrar is authoritative for. Required.
	Domain string
	// Mode: Stateless (default), Local or Hybrid.
	Mode Mode
	// Location is the location service (Stateless and Hybrid modes).
	Location lsp.LocationService
	// Shared is the domain's own location service (Local and Hybrid
	// modes): the LSP on a private overlay of the domain's front-ends, so a
	// binding made at one is found at every other (p2p-ipcom §4). Nil: a
	// store in this process, which no other front-end sees.
	Shared lsp.LocationService
	// Users with their HA1 hashes; nil disables authentication.
	Users *UsersFile
	// NonceSecret keys the stateless nonces; front-ends of one domain share
	// it. Required with Users.
	NonceSecret []byte
	// GRUUSecret keys the temporary GRUUs (RFC 5627; see gruu.go); front-
	// ends of one domain share it. Nil: public GRUUs only.
	GRUUSecret []byte
	// Algorithms offered in challenges, most preferred first (RFC 8760 §2.4:
	// a UAC uses the topmost one it supports). Default SHA-256, MD5; put MD5
	// first for UAs that only read the first challenge.
	Algorithms []string
	// MD5Agents: User-Agent substrings (case-insensitive) of UAs that fail
	// on a challenge they cannot answer, even beside one they can (baresip
	// 1.0: "Function not implemented" on SHA-256; sipp 3.6: "authentication
	// must use MD5" when the first is SHA-256): they are offered MD5 alone,
	// when MD5 is among Algorithms. "-" matches a request without a
	// User-Agent header. Nil: "baresip", "sipp", "-"; empty: none.
	MD5Agents []string
	// NonceTTL: how long a nonce is accepted. Default 5 min.
	NonceTTL time.Duration
	// MaxUsedNonces bounds the accepted nonces a front-end remembers to
	// refuse their replay (about 60 bytes each). Beyond it the oldest are
	// forgotten and nonces that old become stale. Default 1,048,576.
	MaxUsedNonces int
	// MinExpires (423 below it), MaxExpires (cap) and DefaultExpires.
	// Defaults 60s, 7200s, 3600s.
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// RetryAfter is sent with 503 when the location service fails. Default 5s.
	RetryAfter time.Duration
	// Timeout bounds the location-service calls of one REGISTER. Default 5s.
	Timeout time.Duration
	// MaxInFlight bounds the REGISTERs waiting on the location service
	// (over UDP, also those the stack holds: Attach); beyond it a REGISTER
	// gets 503 with Retry-After at once, so overload sheds instead of
	// piling up timeouts. Default 2048. Over UDP the stack's UDP readers
	// decide, and those they let in wait up to twice it (queued for the
	// CPU or waiting on the location service). Once half of it or more
	// have been waiting continuously for 100 ms (a queue that stands, not
	// a burst), new work gets the 503 until fewer than a quarter wait:
	// with digest on, a REGISTER that would be challenged (no valid
	// credentials) instead of a 401 (a registration already challenged is
	// let finish rather than refused after its 401 was paid for, and no
	// new nonces are handed out); with digest off, every REGISTER, over
	// any transport.
	MaxInFlight int
	// TrustedNetworks: senders whose Path headers are kept (edge proxies in
	// front of the registrar) and whose Contacts may name any address.
	// Others' Paths are dropped, and their Contacts may not name this host,
	// the link, a maddr, the domain, or another public address than their
	// own. Nil: loopback; an empty list trusts nobody.
	TrustedNetworks []*net.IPNet
	// Edge, when set, is called for each binding of a REGISTER that came
	// through a NAT (a private Contact address, another source, no Path
	// from an edge proxy before us) with the source, the transport and the
	// binding's expiry (zero when the binding is removed). What it returns
	// goes first in the binding's Path: the proxy on this node's stack, as
	// the edge of the flow (RFC 5626; sipnet.Flows.Edge). "" adds nothing.
	Edge func(source, transport string, until time.Time) string
	// Logger; default slog.Default(). Tagged component=registrar.
	Logger *slog.Logger
}

// Registrar answers REGISTER requests.
type Registrar struct {
	cfg    Config
	loc    lsp.LocationService
	users  map[string]*UserHash
	nonces *nonces

	responses sipnet.StatusCounts // final responses sent, by method and code
	inflight  atomic.Int64        // REGISTERs waiting on the location service
	queue     atomic.Int64        // queueStands's state: 0 short; > 0 since when half of MaxInFlight have been waiting (ns after epoch, +1); queueDraining
	epoch     time.Time           // New's time: queue's origin, on the monotonic clock
	now       func() time.Time    // queueStands's clock (tests move it)
	failLog   struct {            // warnFailed's once a second
		mu    sync.Mutex
		last  time.Time
		quiet int
	}
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	canon, err := lsp.Canonical("sip:x@" + c.Domain)
	if err != nil || lsp.Domain(canon) != c.Domain {
		return c, fmt.Errorf("%w: domain %q", ErrConfig, c.Domain)
	}
	switch c.Mode {
	case "":
		c.Mode = Stateless
	case Stateless, Local, Hybrid:
	default:
		return c, fmt.Errorf("%w: mode %q (want stateless, local or hybrid)", ErrConfig, c.Mode)
	}
	if (c.Mode == Stateless || c.Mode == Hybrid) && c.Location == nil {
		return c, fmt.Errorf("%w: %s mode needs a location service", ErrConfig, c.Mode)
	}
	if c.GRUUSecret != nil && len(c.GRUUSecret) < 16 {
		return c, fmt.Errorf("%w: GRUU secret shorter than 16 bytes", ErrConfig)
	}
	if c.Users != nil {
		if len(c.NonceSecret) < 16 {
			return c, fmt.Errorf("%w: nonce secret shorter than 16 bytes", ErrConfig)
		}
		for _, a := range c.Algorithms {
			if a != "SHA-256" && a != "MD5" {
				return c, fmt.Errorf("%w: digest algorithm %q (want SHA-256 or MD5)", ErrConfig, a)
			}
		}
		if len(c.Algorithms) == 0 {
			c.Algorithms = []string{"SHA-256", "MD5"}
		}
		if c.MD5Agents == nil {
			c.MD5Agents = []string{"baresip", "sipp", noAgent}
		}
		if c.MaxUsedNonces <= 0 {
			c.MaxUsedNonces = 1 << 20
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.NonceTTL <= 0 {
		c.NonceTTL = 5 * time.Minute
	}
	if c.MinExpires <= 0 {
		c.MinExpires = 60 * time.Second
	}
	if c.MaxExpires <= 0 {
		c.MaxExpires = 7200 * time.Second
	}
	if c.DefaultExpires <= 0 {
		c.DefaultExpires = 3600 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 2048
	}
	if c.TrustedNetworks == nil {
		c.TrustedNetworks = sipnet.Loopback()
	}
	// With the defaults in place: a default may be what contradicts.
	if c.MinExpires > c.MaxExpires {
		return c, fmt.Errorf("%w: min expires above max expires", ErrConfig)
	}
	return c, nil
}

// New validates cfg and returns a registrar. Attach it to a stack to serve
// it.
func New(cfg Config) (*Registrar, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Logger = cfg.Logger.With("component", "registrar", "domain", cfg.Domain)
	r := &Registrar{cfg: cfg, epoch: time.Now(), now: time.Now}
	switch cfg.Mode {
	case Stateless:
		r.loc = cfg.Location
	case Local:
		r.loc = cfg.Shared
		if r.loc == nil {
			r.loc = newLocalStore()
		}
	case Hybrid:
		h := &hybrid{overlay: cfg.Location, local: cfg.Shared, log: cfg.Logger.Warn}
		if h.local == nil {
			h.local = newLocalStore()
		}
		r.loc = h
		if reg, ok := cfg.Location.(lsp.Registry); ok {
			r.loc = &hybridRegistry{hybrid: h, reg: reg}
		}
	}
	if cfg.Users != nil {
		r.users = map[string]*UserHash{}
		for i := range cfg.Users.Users {
			u := &cfg.Users.Users[i]
			r.users[u.Username] = u
		}
		var agents []string
		for _, a := range cfg.MD5Agents {
			agents = append(agents, strings.ToLower(a))
		}
		r.nonces = &nonces{secret: cfg.NonceSecret, realm: cfg.Users.Realm, ttl: cfg.NonceTTL, now: time.Now,
			algs: cfg.Algorithms, md5Agents: agents, used: newUsedNonces(cfg.NonceTTL, cfg.MaxUsedNonces)}
	}
	return r, nil
}

// Location is where the registrar keeps bindings: the location service,
// or its own store in local mode (what a proxy beside it must look up).
func (r *Registrar) Location() lsp.LocationService { return r.loc }

// KnownUser reports whether aor belongs to a user of the users file; nil
// when authentication is off (every user is possible).
func (r *Registrar) KnownUser() func(aor string) bool {
	if r.users == nil {
		return nil
	}
	aors := map[string]bool{}
	for _, u := range r.users {
		aors[u.AOR] = true
	}
	return func(aor string) bool { return aors[aor] }
}

// status builds a response with a reason phrase.
func status(req *sip.Request, code int, reason string) *sip.Response {
	return sip.NewResponseFromRequest(req, code, reason, nil)
}

// Handle answers one REGISTER (RFC 3261 §10.3). source is the transport
// address it came from ("ip:port"). It never panics on bad input: malformed
// requests get 400 with a reason.
func (r *Registrar) Handle(ctx context.Context, req *sip.Request, source string) *sip.Response {
	return r.handle(ctx, req, source, false)
}

// handle is Handle; admitted: the UDP reader's shed hook (overloaded) let
// the REGISTER in, so it is checked here only against twice MaxInFlight
// (the hook's own bound on those in hand, which admitted REGISTERs count
// in; a bound for the few readers admitting at once and REGISTERs over
// TCP or TLS sharing the count), not against MaxInFlight. Between the
// two checks a REGISTER waits for the CPU: checked twice, under overload
// most REGISTERs the reader let in found the slots taken by then and were
// refused here, after the parse the reader's refusal saves (register
// bench, digest off, twice the sustainable rate, two runs: 105 403 and
// 106 231 of 132 217 and 142 456 refusals, and goodput 69% and 62% of the
// maximum; checked once, 88% and 97%).
func (r *Registrar) handle(ctx context.Context, req *sip.Request, source string, admitted bool) *sip.Response {
	if req.Method == sip.REGISTER {
		// A slot first: full, the REGISTER is shed before the checks
		// below (digest included), so a shed answer to a challenge keeps
		// its nonce, and only the REGISTERs let in pay for them.
		n := r.inflight.Add(1)
		stands := r.queueStands(n - 1) // a sample of the count, over every transport
		// Not admitted on a UDP reader (TCP, TLS, WS): refused here at
		// MaxInFlight, and by an open registrar while its queue stands
		// (every REGISTER is new work there), as the reader refuses
		// those over UDP: else TCP alone could hold a drain open against
		// UDP with a quarter of the slots.
		if n > int64(r.cfg.MaxInFlight) && !admitted || n > 2*int64(r.cfg.MaxInFlight) ||
			stands && r.users == nil && !admitted {
			r.release()
			return r.unavailable(req, "Overloaded")
		}
		defer r.release()
	}
	aor, trusted, res := r.admit(req, source)
	if res != nil {
		return res
	}
	contacts, wildcard, res := r.parseContacts(req, source, trusted)
	if res != nil {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	u := update{req: req, aor: aor, source: source, callID: req.CallID().Value(), cseq: req.CSeq().SeqNo,
		path: headerValues(req, "Path"), now: time.Now(), contacts: contacts}
	// One round trip for the common case. A REGISTER of an instance reads
	// first (with GRUUs on), whether it asks for GRUUs or not: a binding
	// whose Call-ID changes takes the temporary GRUU it may have had with
	// it (gruu.go).
	if reg, ok := r.loc.(lsp.Registry); ok && !wildcard && len(contacts) > 0 && !slices.ContainsFunc(contacts, func(c contact) bool { return c.expires == 0 }) &&
		!(len(r.cfg.GRUUSecret) > 0 && slices.ContainsFunc(contacts, func(c contact) bool { return c.binding.Instance != "" })) {
		return r.register(ctx, reg, u)
	}
	current, err := r.loc.Lookup(ctx, aor)
	if err != nil {
		return r.failed(req, "lookup", err)
	}
	switch {
	case wildcard:
		return r.removeAll(ctx, u, current)
	case len(contacts) == 0: // a query
		return r.ok(req, aor, current, nil)
	}
	return r.apply(ctx, u, current)
}

// admit runs the steps of RFC 3261 §10.3 before the Contacts are read:
// it returns the canonical AOR and whether source is trusted, or the
// response that refuses req. An untrusted sender's Path headers are
// removed from req.
func (r *Registrar) admit(req *sip.Request, source string) (aor string, trusted bool, res *sip.Response) {
	if req.Method != sip.REGISTER {
		res := status(req, 405, "Method Not Allowed")
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER"))
		return "", false, res
	}
	to, from, callID, cseq := req.To(), req.From(), req.CallID(), req.CSeq()
	if to == nil || from == nil || callID == nil || cseq == nil || req.Via() == nil {
		return "", false, status(req, 400, "Missing To, From, Call-ID, CSeq or Via")
	}
	if cseq.MethodName != sip.REGISTER {
		return "", false, status(req, 400, "CSeq method is not REGISTER")
	}
	trusted = r.trusted(source)
	if !trusted {
		// RFC 3327: a Path is added by proxies in front of the registrar;
		// one from an untrusted sender would route its AOR's calls
		// anywhere (our own host included). Not stored, not echoed.
		sipnet.RemoveHeaders(req, "Path") // "path:" too
	}
	// Step 1: the Request-URI names the domain whose bindings are asked for.
	if !strings.EqualFold(strings.TrimSuffix(req.Recipient.Host, "."), r.cfg.Domain) {
		return "", false, status(req, 404, "Domain not served here")
	}
	// Step 2: extensions.
	if unsupported := r.unsupported(req); len(unsupported) > 0 {
		res := status(req, 420, "Bad Extension")
		res.AppendHeader(sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
		return "", false, res
	}
	// Step 5 first: the AOR must belong to our domain.
	aor, err := lsp.Canonical(to.Address.String())
	if err != nil || to.Address.Wildcard {
		return "", false, status(req, 400, "Bad To URI")
	}
	if lsp.Domain(aor) != r.cfg.Domain {
		return "", false, status(req, 403, "Not authoritative for "+lsp.Domain(aor))
	}
	// RFC 5627: a GRUU names a registered instance; it is never registered
	// itself, and temporary GRUUs' user parts are ours alone (read from
	// the canonical AOR: "%74gruu." is one too).
	if _, gruu := sipnet.GRUU(&to.Address); gruu || strings.HasPrefix(strings.TrimPrefix(aor, "sip:"), tempGRUUPrefix) ||
		strings.HasPrefix(strings.TrimPrefix(aor, "sips:"), tempGRUUPrefix) {
		return "", false, status(req, 403, "A GRUU is not an address-of-record")
	}
	// Steps 3–4: authentication and authorisation.
	if r.users != nil {
		if res := r.authenticateAs(req, aor, source, uasAuth()); res != nil {
			// inflight counts this REGISTER's own slot.
			if res.StatusCode == 401 && r.queueStands(r.inflight.Load()-1) {
				// Under load, no new challenges: the registrations
				// answering one (a nonce is good once) finish first.
				return "", false, r.unavailable(req, "Overloaded")
			}
			return "", false, res
		}
	}
	return aor, trusted, nil
}

// release gives back a REGISTER's slot, a sample of the count while the
// queue is crowded or draining (queueStands).
func (r *Registrar) release() {
	if n := r.inflight.Add(-1); r.queue.Load() != 0 {
		r.queueStands(n)
	}
}

// queueStands reports whether the REGISTERs waiting on the location
// service, waiting of them besides the caller, are a queue that stands:
// half of MaxInFlight or more have been waiting continuously for
// standingQueue, that is, no REGISTER arriving (on the UDP reader, or
// taking its slot over any transport) or leaving saw fewer in that time
// (each call samples the count). A burst that fills half the slots and
// drains (a collection, a slow batch: the register bench saw 1214
// waiting for an instant at 6000/s, a rate served with 500 to 900
// waiting) is what the slots are for; refused, it cost digest-on
// registrations at sustainable rates (351 of 30000 at 6000/s, all at one
// such burst). A queue that stands is overload, and it stands until fewer
// than a quarter of MaxInFlight wait: new work is refused meanwhile
// (overloaded; with digest on, challenges in Handle too), so the queue
// drains instead of staying full. A queue left full served less than a
// short one: after twice the sustainable rate for 10 s (digest off,
// 8000/s), the registrar then offered 8000/s answered 6000-7000 a second
// with the rest 503, for the 10 s measured.
func (r *Registrar) queueStands(waiting int64) bool {
	half, quarter := int64(max(1, r.cfg.MaxInFlight/2)), int64(max(1, r.cfg.MaxInFlight/4))
	for { // each change a CompareAndSwap of the one state: a sample that lost a race looks again
		st := r.queue.Load()
		switch {
		case st == queueDraining:
			if waiting >= quarter {
				return true
			}
			if r.queue.CompareAndSwap(st, 0) {
				return false
			}
		case waiting < half:
			if st == 0 || r.queue.CompareAndSwap(st, 0) {
				return false
			}
		case st == 0:
			r.queue.CompareAndSwap(0, int64(r.now().Sub(r.epoch))+1) // monotonic, and never 0
			return false
		case int64(r.now().Sub(r.epoch))+1-st < int64(standingQueue):
			return false
		default:
			if r.queue.CompareAndSwap(st, queueDraining) {
				return true
			}
		}
	}
}

// queueDraining is queueStands's state once the queue stood, until fewer
// than a quarter of MaxInFlight wait.
const queueDraining = -1

// standingQueue is how long half of MaxInFlight must stay waiting before
// the queue stands: CoDel's interval (RFC 8289 §4.2), the time in which a
// good queue (a burst) drains and a bad one (more arriving than served)
// does not.
const standingQueue = 100 * time.Millisecond

// update is one admitted REGISTER that changes bindings.
type update struct {
	req         *sip.Request
	aor, source string
	callID      string
	cseq        uint32
	path        []string // the Path headers kept
	now         time.Time
	contacts    []contact
}

// register is the common case in one round trip: the replicas apply the
// Call-ID/CSeq rule and answer with the AOR's merged bindings.
func (r *Registrar) register(ctx context.Context, reg lsp.Registry, u update) *sip.Response {
	publish := make([]lsp.Binding, len(u.contacts))
	for i, c := range u.contacts {
		publish[i] = r.binding(u, c)
	}
	final, err := reg.Register(ctx, u.aor, publish...)
	if errors.Is(err, lsp.ErrOutOfOrder) {
		return status(u.req, 500, "Request out of order")
	}
	if err != nil {
		return r.failed(u.req, "register", err)
	}
	return r.ok(u.req, u.aor, final, nil)
}

// removeAll answers Contact: * (RFC 3261 §10.3 step 6): remove all, unless
// a binding comes from the same Call-ID with a CSeq at least as high.
func (r *Registrar) removeAll(ctx context.Context, u update, current []lsp.Binding) *sip.Response {
	for _, b := range current {
		if b.CallID == u.callID && b.CSeq >= u.cseq {
			return status(u.req, 500, "Request out of order")
		}
	}
	if len(current) > 0 {
		if err := r.loc.Remove(ctx, u.aor); err != nil {
			return r.failed(u.req, "remove", err)
		}
		r.withdrawTemp(ctx, u.aor, current)
	}
	return r.ok(u.req, u.aor, nil, nil)
}

// apply publishes and removes u's contacts against the current bindings
// (RFC 3261 §10.3 step 7) and answers with the bindings read back.
func (r *Registrar) apply(ctx context.Context, u update, current []lsp.Binding) *sip.Response {
	byID := map[string]lsp.Binding{}
	for _, b := range current {
		byID[b.ID()] = b
	}
	var publish, ended []lsp.Binding
	var remove []string
	for _, c := range u.contacts {
		id := c.binding.ID()
		old, had := byID[id]
		if had && old.CallID == u.callID && old.CSeq >= u.cseq {
			return status(u.req, 500, "Request out of order")
		}
		if had && (c.expires == 0 || old.CallID != u.callID) {
			ended = append(ended, old) // a registration ends, or another replaces it
		}
		if c.expires == 0 {
			remove = append(remove, id)
			if r.cfg.Edge != nil && len(u.path) == 0 && natted(c.binding.Contact, u.source, u.req.Transport()) {
				r.cfg.Edge(u.source, u.req.Transport(), time.Time{})
			}
			continue
		}
		publish = append(publish, r.binding(u, c))
	}
	if len(publish) > 0 {
		if err := r.loc.Publish(ctx, u.aor, publish...); err != nil {
			return r.failed(u.req, "publish", err)
		}
	}
	if len(remove) > 0 {
		if err := r.loc.Remove(ctx, u.aor, remove...); err != nil {
			return r.failed(u.req, "remove", err)
		}
	}
	// Answer from the location service, not from memory: the list then
	// includes what other front-ends wrote meanwhile (a quorum read sees
	// every acknowledged write, ours included).
	final, err := r.loc.Lookup(ctx, u.aor)
	if err != nil {
		return r.failed(u.req, "lookup", err)
	}
	// The registration stands; its temporary GRUUs' writes come last, so
	// one that fails or runs out of time costs the 200 its temp-gruu
	// alone.
	r.withdrawTemp(ctx, u.aor, ended)
	return r.ok(u.req, u.aor, final, r.issueTemp(ctx, u, publish))
}

// binding completes one of u's contacts into the binding to store.
func (r *Registrar) binding(u update, c contact) lsp.Binding {
	b := c.binding
	b.Expires = u.now.Add(c.expires)
	b.CallID, b.CSeq, b.Path = u.callID, u.cseq, u.path
	b.Received = u.source
	if r.cfg.Edge != nil && len(u.path) == 0 && natted(b.Contact, u.source, u.req.Transport()) {
		if pv := r.cfg.Edge(u.source, u.req.Transport(), b.Expires); pv != "" {
			b.Path = []string{pv}
		}
	}
	return b
}

// Responses counts the registrar's final responses by method and code.
func (r *Registrar) Responses() *sipnet.StatusCounts { return &r.responses }

// natted reports whether a Contact URI's UA is reached only through the
// flow its REGISTER came by, from source over transport: behind a NAT or
// on a WebSocket (see sipnet.NeedsFlow).
func natted(contactURI, source, transport string) bool {
	if sipnet.IsWS(transport) {
		return true
	}
	var u sip.Uri
	if err := sip.ParseUri(strings.Trim(contactURI, "<>"), &u); err != nil {
		return false
	}
	return sipnet.BehindNAT(u.Host, source)
}

// supported extensions (Require option tags).
var supported = []string{"path", "outbound", "gruu"}

func (r *Registrar) unsupported(req *sip.Request) []string {
	var out []string
	for _, v := range headerValues(req, "Require") {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.ToLower(strings.TrimSpace(tag))
			if tag != "" && !slices.Contains(supported, tag) {
				out = append(out, tag)
			}
		}
	}
	return out
}

// failed maps a location-service failure to a SIP response: the UA never
// gets a 200 for a binding that was not stored.
func (r *Registrar) failed(req *sip.Request, op string, err error) *sip.Response {
	call := ""
	if c := req.CallID(); c != nil {
		call = c.Value()
	}
	r.warnFailed(call, op, err)
	switch {
	case errors.Is(err, lsp.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, lsp.ErrClosed):
		return r.unavailable(req, "Location service unavailable")
	case errors.Is(err, lsp.ErrInvalid), errors.Is(err, lsp.ErrTooLarge), errors.Is(err, lsp.ErrBadAOR):
		return status(req, 400, "Binding refused: "+firstLine(err))
	}
	return status(req, 500, "Location service error")
}

// warnFailed logs a location-service failure at most once a second,
// with how many were left out since: under overload every REGISTER fails
// the same way, and a line each would flood the log (the responses are
// counted in the metrics all the same).
func (r *Registrar) warnFailed(call, op string, err error) {
	l := &r.failLog
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.quiet++
		l.mu.Unlock()
		return
	}
	quiet := l.quiet
	l.last, l.quiet = now, 0
	l.mu.Unlock()
	r.cfg.Logger.Warn("location service failed", "call", call, "op", op, "err", err, "not_logged_since", quiet)
}

// unavailable is 503 with Retry-After (RFC 3261 §21.5.4).
func (r *Registrar) unavailable(req *sip.Request, reason string) *sip.Response {
	res := status(req, 503, reason)
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(int(r.cfg.RetryAfter.Seconds()))))
	return res
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// deltaSeconds parses an Expires value (RFC 3261 §20.19): a value above
// 2^32-1 is taken as 2^32-1.
func deltaSeconds(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 || strings.Trim(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		n = math.MaxUint32
	}
	return time.Duration(n) * time.Second, true
}

// contactAllowed: what an untrusted sender may register as a Contact. Not
// this machine or the link (loopback, unspecified, link-local: cloud
// metadata services live at 169.254.169.254; "localhost"), not a maddr,
// not this domain itself (requests would come straight back), and no
// public address other than the one the REGISTER came from (64 Contacts
// at a victim's ports would make every call to the AOR a flood of
// INVITEs to it). Private addresses stay allowed: UAs behind NAT. A name
// other than the domain is allowed (and resolved when used).
func contactAllowed(u *sip.Uri, source, domain string) bool {
	if _, ok := u.UriParams.Get("maddr"); ok {
		return false
	}
	host := strings.ToLower(strings.TrimSuffix(u.Host, "."))
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil {
		return host != "localhost" && host != domain
	}
	if sipnet.HostOrLink(ip) {
		return false
	}
	if sipnet.PrivateAddr(ip) {
		return true
	}
	src, _, err := net.SplitHostPort(source)
	return err == nil && ip.Equal(net.ParseIP(src))
}

// trusted reports whether source ("ip:port") is in TrustedNetworks.
func (r *Registrar) trusted(source string) bool {
	return sipnet.InNetworks(source, r.cfg.TrustedNetworks)
}

type contact struct {
	binding lsp.Binding
	expires time.Duration
}

// parseContacts reads the Contact list with each contact's expiry (its
// expires param, else the Expires header, else the default).
func (r *Registrar) parseContacts(req *sip.Request, source string, trusted bool) ([]contact, bool, *sip.Response) {
	hdrExpires := r.cfg.DefaultExpires
	haveHdr := false
	if h := req.GetHeader("Expires"); h != nil {
		d, ok := deltaSeconds(h.Value())
		if !ok {
			return nil, false, status(req, 400, "Bad Expires")
		}
		hdrExpires, haveHdr = d, true
	}
	var out []contact
	wildcard := false
	hs := req.GetHeaders("Contact")
	for _, h := range hs {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, false, status(req, 400, "Bad Contact")
		}
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		exp := hdrExpires
		if v, ok := c.Params.Get("expires"); ok {
			d, ok := deltaSeconds(v)
			if !ok {
				return nil, false, status(req, 400, "Bad Contact expires")
			}
			exp = d
		}
		if !trusted && !contactAllowed(&c.Address, source, r.cfg.Domain) {
			return nil, false, status(req, 403, "Contact address not allowed")
		}
		if exp != 0 && exp < r.cfg.MinExpires {
			res := status(req, 423, "Interval Too Brief")
			res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires.Seconds()))))
			return nil, false, res
		}
		exp = min(exp, r.cfg.MaxExpires)
		b := lsp.Binding{Contact: c.Address.String()}
		if v, ok := c.Params.Get("q"); ok {
			q, err := strconv.ParseFloat(v, 64)
			if err != nil || q < 0 || q > 1 || math.IsNaN(q) {
				return nil, false, status(req, 400, "Bad Contact q")
			}
			b.Q = q
		}
		if v, ok := c.Params.Get("+sip.instance"); ok {
			b.Instance = strings.Trim(v, `"`)
		}
		if v, ok := c.Params.Get("reg-id"); ok {
			id, err := strconv.ParseUint(v, 10, 31)
			if err != nil || id == 0 {
				return nil, false, status(req, 400, "Bad reg-id")
			}
			b.RegID = uint32(id)
		}
		if s := b.Contact; len(s) > 1024 || strings.ContainsAny(s, "\r\n") {
			return nil, false, status(req, 400, "Bad Contact URI")
		}
		out = append(out, contact{binding: b, expires: exp})
	}
	if wildcard && (len(hs) != 1 || !haveHdr || hdrExpires != 0) {
		return nil, false, status(req, 400, "Contact * needs Expires: 0 and no other Contact")
	}
	return out, wildcard, nil
}

// ok builds the 200 listing every current binding of aor with its
// remaining expiry and, when req asked for GRUUs, each instance's public
// GRUU and the temporary GRUUs of temp (by instance).
func (r *Registrar) ok(req *sip.Request, aor string, bs []lsp.Binding, temp map[string]string) *sip.Response {
	gruu := supportsGRUU(req)
	res := status(req, 200, "OK")
	now := time.Now()
	slices.SortFunc(bs, func(a, b lsp.Binding) int { return strings.Compare(a.ID(), b.ID()) })
	for _, b := range bs {
		left := int(math.Ceil(b.Expires.Sub(now).Seconds()))
		if left <= 0 {
			continue
		}
		var v strings.Builder
		v.WriteString("<" + b.Contact + ">;expires=" + strconv.Itoa(left))
		if b.Q > 0 {
			v.WriteString(";q=" + strconv.FormatFloat(b.Q, 'f', -1, 64))
		}
		if b.Instance != "" {
			v.WriteString(`;+sip.instance="` + b.Instance + `"`)
		}
		if b.RegID != 0 {
			v.WriteString(";reg-id=" + strconv.FormatUint(uint64(b.RegID), 10))
		}
		if gruu && b.Instance != "" {
			v.WriteString(`;pub-gruu="` + pubGRUU(aor, b.Instance) + `"`)
			if t, ok := temp[b.Instance]; ok {
				v.WriteString(`;temp-gruu="` + t + `"`)
			}
		}
		res.AppendHeader(sip.NewHeader("Contact", v.String()))
	}
	for _, p := range headerValues(req, "Path") {
		res.AppendHeader(sip.NewHeader("Path", p))
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	return res
}

// authKind names the headers of UAS (401) or proxy (407) authentication.
type authKind struct {
	code                   int
	reason, challenge, ask string
}

func uasAuth() authKind { return authKind{401, "Unauthorized", "WWW-Authenticate", "Authorization"} }
func proxyAuth() authKind {
	return authKind{407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization"}
}

// AuthorizeProxy returns nil when req carries valid Proxy-Authorization of
// the user whose AOR is in its From (RFC 3261 §22.3), else the 407 or 403
// to send; 403 when this registrar has no users.
func (r *Registrar) AuthorizeProxy(req *sip.Request) *sip.Response {
	if r.users == nil || req.From() == nil {
		return status(req, 403, "Relaying denied")
	}
	aor, err := lsp.Canonical(req.From().Address.String())
	if err != nil {
		return status(req, 403, "Relaying denied")
	}
	return r.authenticateAs(req, aor, req.Source(), proxyAuth())
}

// AuthorizeSubscriber returns nil when req (a SUBSCRIBE to the
// registrations of aor, RFC 3680 §4.6) carries valid Authorization of the
// user of aor itself, else the 401 or 403 to send; nil when this
// registrar has no users (an open registrar, whose bindings anyone may
// write).
func (r *Registrar) AuthorizeSubscriber(req *sip.Request, aor string) *sip.Response {
	if r.users == nil {
		return nil
	}
	return r.authenticateAs(req, aor, req.Source(), uasAuth())
}

// CheckDigest verifies a digest Authorization value (RFC 7616/8760, as
// for SIP) of an HTTP request with method and request URI against the
// users file, for other services of the node (the relay's credential
// endpoint). It returns the user's AOR, or the WWW-Authenticate challenges
// to send. The nonce is bound to method and URI, and a nonce is accepted
// once per node.
func (r *Registrar) CheckDigest(method, uri, authorization string) (aor string, challenges []string) {
	if r.users == nil {
		return "", nil
	}
	h := sha256.Sum256([]byte(method + " " + uri))
	dr := digestRequest{hash: h[:], anyCSeq: true}
	u, verdict := r.checkDigest(method, authorization, func(c string) bool { return c == uri }, dr)
	switch verdict {
	case digestOK:
		return u.AOR, nil
	case digestStale:
		return "", r.nonces.challenges(dr, true)
	}
	return "", r.nonces.challenges(dr, false)
}

// Outcomes of checking a digest Authorization value.
const (
	digestOK        = iota
	digestChallenge // absent, unknown realm or user, bad nonce, response, algorithm or uri
	digestStale     // valid but with a nonce expired, used, or minted for another request (RFC 7616 stale=true)
	digestMalformed // does not parse
)

// checkDigest verifies an Authorization value of a request with method
// against the users file and the nonces minted for dr; uriOK judges the
// credentials' uri (it must name the request's Request-URI).
func (r *Registrar) checkDigest(method, authorization string, uriOK func(string) bool, dr digestRequest) (*UserHash, int) {
	if authorization == "" {
		return nil, digestChallenge
	}
	creds, err := sipnet.ParseDigest(authorization)
	if err != nil {
		return nil, digestMalformed
	}
	if creds.Realm != r.cfg.Users.Realm || !slices.Contains(r.cfg.Algorithms, algName(creds.Algorithm)) || !uriOK(creds.URI) {
		return nil, digestChallenge
	}
	verdict, issued := r.nonces.check(creds.Nonce, creds.Algorithm, dr)
	u := r.users[creds.Username]
	if verdict == nonceForged || u == nil || !verifyDigest(creds, u, method) {
		return nil, digestChallenge
	}
	if verdict == nonceStale || !r.nonces.used.use(creds.Nonce, issued, r.nonces.now(), r.nonces.ttl) {
		return nil, digestStale
	}
	return u, digestOK
}

// algName is a credentials' algorithm as configured (absent means MD5).
func algName(a string) string {
	if a == "" {
		return "MD5"
	}
	return strings.ToUpper(a)
}

// uriNames reports whether a digest uri names the Request-URI ruri
// (scheme, user, host and port; RFC 3261 §22.4 wants the same URI, and
// the nonce already binds the exact Request-URI).
func uriNames(uri string, ruri sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, ruri.Scheme) && u.User == ruri.User &&
		strings.EqualFold(strings.TrimSuffix(u.Host, "."), strings.TrimSuffix(ruri.Host, ".")) && u.Port == ruri.Port
}

// authenticateAs returns nil when req, received from source, carries valid
// credentials (k: Authorization or Proxy-Authorization) of the user of
// aor, else the 401/407/403 to send.
func (r *Registrar) authenticateAs(req *sip.Request, aor, source string, k authKind) *sip.Response {
	authz := ""
	if h := req.GetHeader(k.ask); h != nil {
		authz = h.Value()
	}
	dr := sipRequest(req, source)
	u, verdict := r.checkDigest(string(req.Method), authz, func(uri string) bool { return uriNames(uri, req.Recipient) }, dr)
	switch verdict {
	case digestMalformed:
		return status(req, 400, "Bad Authorization header")
	case digestChallenge, digestStale:
		res := status(req, k.code, k.reason)
		for _, c := range r.nonces.challenges(dr, verdict == digestStale) {
			res.AppendHeader(sip.NewHeader(k.challenge, c))
		}
		return res
	}
	if u.AOR != aor {
		if k.code == 407 {
			return status(req, 403, "Not allowed to send as "+aor)
		}
		return status(req, 403, "Not allowed to register "+aor)
	}
	return nil
}

// headerValues returns the values of req's headers named one of names,
// in any case, in their order. One pass, comparing without lowercasing:
// sipgo's GetHeaders lowercases every header's name on each call, and
// supportsGRUU's two lookups alone took 1.2% of a loaded testnet's CPU
// (register bench profile, digest off, 10 000/s).
func headerValues(req *sip.Request, names ...string) []string {
	var out []string
	for _, h := range req.Headers() {
		if n := h.Name(); slices.ContainsFunc(names, func(name string) bool { return sipnet.HeaderNameIs(n, name) }) {
			out = append(out, h.Value())
		}
	}
	return out
}
