package regevent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("regevent: bad config")

// Config configures a Notifier. Zero values take the defaults.
type Config struct {
	// Domain whose AORs may be subscribed to. Required.
	Domain string
	// Watch follows an AOR's bindings (the node's location service).
	// Required.
	Watch lsp.Watcher
	// Authorize returns nil when a SUBSCRIBE may follow aor's
	// registrations, else the response refusing it (401, 403). Required.
	Authorize func(req *sip.Request, aor string) *sip.Response
	// MaxSubscriptions in all (default 4096), MaxPerAOR (default 8):
	// beyond them 503.
	MaxSubscriptions, MaxPerAOR int
	// MinExpires (423 below it) and MaxExpires (the cap, and the default
	// of a SUBSCRIBE without Expires). Defaults 60 s and 3761 s (RFC 3680
	// §4.2).
	MinExpires, MaxExpires time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Domain == "" || c.Watch == nil || c.Authorize == nil {
		return c, fmt.Errorf("%w: domain, watch and authorize are required", ErrConfig)
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 4096
	}
	if c.MaxPerAOR <= 0 {
		c.MaxPerAOR = 8
	}
	if c.MinExpires <= 0 {
		c.MinExpires = 60 * time.Second
	}
	if c.MaxExpires <= 0 {
		c.MaxExpires = 3761 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Notifier is the notifier of the registration event package (RFC 3680)
// for a domain's AORs: a SUBSCRIBE with Event: reg to one of them,
// authorized, gets a 200 and a NOTIFY with the AOR's registration state
// (full state, RFC 3680 §5), then one after each change the location
// service tells (lsp.Watcher: a change reaches the NOTIFY in
// milliseconds, from any front-end's REGISTER), until the subscription
// expires or is ended. NOTIFYs go to the SUBSCRIBE's source address
// (its Contact as the Request-URI), or along its Record-Route.
type Notifier struct {
	cfg    Config
	log    *slog.Logger
	client *sipgo.Client
	self   string // host:port of our SIP address (Contact, Via)
	tls    string // host:port of our SIP TLS address ("" without)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	subs   map[string]*subscription // by dialog: Call-ID, our tag
	byAOR  map[string]int
}

// New makes a notifier; Attach gives it a stack to send from.
func New(cfg Config) (*Notifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Notifier{cfg: cfg, log: cfg.Logger.With("component", "regevent"), subs: map[string]*subscription{}, byAOR: map[string]int{}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Attach sends NOTIFYs from s (the stack whose proxy hands SUBSCRIBEs to
// Handle). Before s serves.
func (n *Notifier) Attach(s *sipnet.Stack) error {
	c, err := sipgo.NewClient(s.UA(), sipgo.WithClientAddr(s.Addr()), sipgo.WithClientLogger(n.log))
	if err != nil {
		return fmt.Errorf("regevent: %w", err)
	}
	n.client, n.self, n.tls = c, s.Addr(), s.TLSAddr()
	context.AfterFunc(s.Context(), n.cancel)
	return nil
}

// closing reports whether Close was called (not the stack gone).
func (n *Notifier) closing() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// deactivateWait bounds the last NOTIFY of each subscription at Close.
const deactivateWait = 2 * time.Second

// Close ends every subscription with a last NOTIFY, terminated with reason
// deactivated (RFC 6665 §4.2.2: the subscriber may subscribe again at
// once, to another front-end of the domain), and waits for their
// goroutines: at most deactivateWait for the subscribers' answers. When
// the SIP stack goes first, no NOTIFY can go.
func (n *Notifier) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	return nil
}

// subscription is one reg subscription: its dialog and its goroutine's
// inbox.
type subscription struct {
	key, aor                    string
	callID, localTag, remoteTag string
	remote                      string // the subscriber's From URI
	target                      sip.Uri
	route                       []string
	dest, transport             string
	// mu guards until, the expiry Handle sets (zero: unsubscribed), and
	// what a refresh changes (target, dest, remoteCSeq: RFC 6665 §4.1.2.2,
	// a SUBSCRIBE refreshes the remote target); poke tells run.
	mu         sync.Mutex
	until      time.Time
	remoteCSeq uint32
	poke       chan struct{}
	cseq       uint32
	version    uint64
	had        bool
	last       map[string]lsp.Binding // the live bindings of the last NOTIFY, by ID
}

// Handle takes a SUBSCRIBE of the reg event package for an AOR of the
// domain, or one inside a subscription of it, and answers it; false for
// any other request (the proxy routes it).
func (n *Notifier) Handle(req *sip.Request, tx sip.ServerTransaction) bool {
	if req.Method != sip.SUBSCRIBE || eventOf(req) != "reg" || req.To() == nil || req.From() == nil || req.CallID() == nil {
		return false // (the proxy's checks answer one without To, From or Call-ID)
	}
	if tag, ok := req.To().Params.Get("tag"); ok && tag != "" {
		return n.inDialog(req, tx, tag)
	}
	aor, err := lsp.Canonical(sipnet.AOROf(req.Recipient))
	if err != nil || lsp.Domain(aor) != n.cfg.Domain {
		return false
	}
	n.subscribe(req, tx, aor)
	return true
}

// subscribe answers a new subscription (RFC 6665 §4.2.1).
func (n *Notifier) subscribe(req *sip.Request, tx sip.ServerTransaction, aor string) {
	exp, ok := n.admit(req, tx, aor)
	if !ok {
		return
	}
	c := req.Contact()
	from := req.From()
	fromTag, _ := from.Params.Get("tag")
	if c == nil || fromTag == "" {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "SUBSCRIBE without Contact or From tag", nil))
		return
	}
	s := &subscription{aor: aor, callID: req.CallID().Value(), localTag: newTag(), remoteTag: fromTag,
		remote: from.Address.String(), target: *c.Address.Clone(), dest: req.Source(), transport: req.Transport(),
		until: time.Now().Add(exp), poke: make(chan struct{}, 1), cseq: 1, remoteCSeq: req.CSeq().SeqNo}
	for _, rr := range req.GetHeaders("Record-Route") {
		s.route = append(s.route, rr.Value())
	}
	s.key = s.callID + "\x00" + s.localTag
	ctx, cancel := context.WithCancel(n.ctx)
	ch, err := n.cfg.Watch.Watch(ctx, aor)
	if err != nil || !n.add(s) {
		cancel()
		res := sip.NewResponseFromRequest(req, 503, "Too many subscriptions", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "60"))
		_ = tx.Respond(res)
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.To().Params.Add("tag", s.localTag)
	res.AppendHeader(sip.NewHeader("Contact", n.contact(s.transport)))
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(exp.Seconds()))))
	_ = tx.Respond(res)
	go func() { // counted in n.wg by add
		defer n.wg.Done()
		defer cancel()
		defer n.remove(s)
		n.run(ctx, s, ch)
	}()
}

// add counts s in, within the bounds, and its goroutine in n.wg (under
// n.mu, so never once Close began).
func (n *Notifier) add(s *subscription) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || len(n.subs) >= n.cfg.MaxSubscriptions || n.byAOR[s.aor] >= n.cfg.MaxPerAOR {
		return false
	}
	n.subs[s.key] = s
	n.byAOR[s.aor]++
	n.wg.Add(1)
	return true
}

func (n *Notifier) remove(s *subscription) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs[s.key] != s {
		return
	}
	delete(n.subs, s.key)
	if n.byAOR[s.aor]--; n.byAOR[s.aor] <= 0 {
		delete(n.byAOR, s.aor)
	}
}

// inDialog answers a refresh or an unsubscribe (Expires: 0) of one of
// our subscriptions; false for another's (another notifier's, through
// this node's proxy), which the proxy routes.
func (n *Notifier) inDialog(req *sip.Request, tx sip.ServerTransaction, tag string) bool {
	n.mu.Lock()
	s := n.subs[req.CallID().Value()+"\x00"+tag]
	n.mu.Unlock()
	fromTag, _ := req.From().Params.Get("tag")
	if s == nil || fromTag != s.remoteTag {
		if h, p := splitHostPort(n.addr(req.Transport())); req.Recipient.User != "" || req.Recipient.Host != h || req.Recipient.Port != p {
			return false
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Subscription does not exist", nil))
		return true
	}
	exp, ok := n.admit(req, tx, s.aor)
	if !ok {
		return true
	}
	s.mu.Lock()
	if req.CSeq().SeqNo <= s.remoteCSeq { // RFC 3261 §12.2.2
		s.mu.Unlock()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "CSeq out of order", nil))
		return true
	}
	s.remoteCSeq = req.CSeq().SeqNo
	if c := req.Contact(); c != nil {
		s.target, s.dest = *c.Address.Clone(), req.Source()
	}
	s.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(exp.Seconds()))))
	_ = tx.Respond(res)
	until := time.Now().Add(exp)
	if exp == 0 {
		until = time.Time{}
	}
	s.mu.Lock()
	s.until = until
	s.mu.Unlock()
	select {
	case s.poke <- struct{}{}:
	default: // one is pending: run reads the newest
	}
	return true
}

// admit runs the checks every SUBSCRIBE of aor passes (authorization,
// Accept, Expires) and returns the expiry it gets; false when it was
// answered with a refusal.
func (n *Notifier) admit(req *sip.Request, tx sip.ServerTransaction, aor string) (time.Duration, bool) {
	if res := n.cfg.Authorize(req, aor); res != nil {
		_ = tx.Respond(res)
		return 0, false
	}
	if !accepts(req) {
		res := sip.NewResponseFromRequest(req, 406, "Not Acceptable", nil)
		res.AppendHeader(sip.NewHeader("Accept", ContentType))
		_ = tx.Respond(res)
		return 0, false
	}
	exp, res := n.expiry(req)
	if res != nil {
		_ = tx.Respond(res)
		return 0, false
	}
	return exp, true
}

// expiry reads the Expires a SUBSCRIBE asks for (default and cap
// MaxExpires; 0 unsubscribes), or the response refusing it.
func (n *Notifier) expiry(req *sip.Request) (time.Duration, *sip.Response) {
	exp := n.cfg.MaxExpires
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			return 0, sip.NewResponseFromRequest(req, 400, "Bad Expires", nil)
		}
		exp = min(time.Duration(v)*time.Second, n.cfg.MaxExpires)
	}
	if exp > 0 && exp < n.cfg.MinExpires {
		res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(n.cfg.MinExpires.Seconds()))))
		return 0, res
	}
	return exp, nil
}

// run sends s's NOTIFYs: the state as it is, after each change and each
// refresh, and a last one when it expires or is ended. A NOTIFY that
// fails (481, no answer) ends the subscription.
func (n *Notifier) run(ctx context.Context, s *subscription, ch <-chan []lsp.Binding) {
	var bs []lsp.Binding
	s.mu.Lock()
	until := s.until
	s.mu.Unlock()
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	// lapse fires when the first listed binding expires: a binding's
	// expiry is no write, so no watch tells it; full state without it
	// is the news.
	lapse := time.NewTimer(time.Hour)
	defer lapse.Stop()
	have := false // the watch gave the state once
	for {
		state := ""
		select {
		case <-lapse.C:
			state = "active"
		case next, ok := <-ch:
			if !ok {
				return
			}
			// A watch may tell one change twice (two replicas): a
			// NOTIFY goes out for a change of the state alone.
			if have && same(bs, next) {
				continue
			}
			bs, have, state = next, true, "active"
		case <-s.poke:
			s.mu.Lock()
			until = s.until
			s.mu.Unlock()
			if until.IsZero() {
				n.notify(ctx, s, bs, "terminated;reason=timeout")
				return
			}
			timer.Reset(time.Until(until))
			if have {
				state = "active"
			}
		case <-timer.C:
			if !have { // Expires: 0 at once (a fetch): the state first
				select {
				case bs = <-ch:
				case <-time.After(2 * time.Second):
				}
			}
			n.notify(ctx, s, bs, "terminated;reason=timeout")
			return
		case <-ctx.Done():
			if n.closing() {
				dctx, cancel := context.WithTimeout(context.Background(), deactivateWait)
				n.notify(dctx, s, bs, "terminated;reason=deactivated")
				cancel()
			}
			return
		}
		if state == "" {
			continue
		}
		state += ";expires=" + strconv.Itoa(max(0, int(time.Until(until).Seconds())))
		if !n.notify(ctx, s, bs, state) {
			return
		}
		lapse.Reset(nextLapse(bs, time.Now()))
	}
}

// nextLapse is how long until the first of bs expires (an hour when none
// will).
func nextLapse(bs []lsp.Binding, now time.Time) time.Duration {
	d := time.Hour
	for _, b := range bs {
		if left := b.Expires.Sub(now); left > 0 && left < d {
			d = left + 10*time.Millisecond
		}
	}
	return d
}

// notify sends one NOTIFY of s with bs and waits for its answer; false
// when it was not a 2xx.
func (n *Notifier) notify(ctx context.Context, s *subscription, bs []lsp.Binding, state string) bool {
	if n.client == nil { // not attached to a stack
		return false
	}
	body, live := document(s.aor, s.version, bs, s.last, s.had, time.Now())
	s.last = live
	s.version++
	s.had = s.had || len(bs) > 0
	s.mu.Lock()
	target, dest := *s.target.Clone(), s.dest
	s.mu.Unlock()
	req := sip.NewRequest(sip.NOTIFY, target)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: s.transport, Params: sip.NewParams()}
	via.Host, via.Port = splitHostPort(n.addr(s.transport))
	via.Params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(via)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("From", "<"+s.aor+">;tag="+s.localTag))
	req.AppendHeader(sip.NewHeader("To", "<"+s.remote+">;tag="+s.remoteTag))
	req.AppendHeader(sip.NewHeader("Call-ID", s.callID))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: s.cseq, MethodName: sip.NOTIFY})
	s.cseq++
	for _, r := range s.route {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	req.AppendHeader(sip.NewHeader("Contact", n.contact(s.transport)))
	req.AppendHeader(sip.NewHeader("Event", "reg"))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", ContentType))
	req.SetBody(body)
	req.SetTransport(s.transport)
	req.SetDestination(dest)
	ctx, cancel := context.WithTimeout(ctx, 32*time.Second)
	defer cancel()
	tx, err := n.client.TransactionRequest(ctx, req, func(*sipgo.Client, *sip.Request) error { return nil })
	if err != nil {
		n.log.Debug("NOTIFY", "aor", s.aor, "err", err)
		return false
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode < 200 {
				continue
			}
			return res.StatusCode < 300
		case <-tx.Done():
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// same reports whether two lookups hold the same bindings, in the same
// versions.
func same(a, b []lsp.Binding) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(x lsp.Binding) string {
		return x.ID() + "\x00" + x.Contact + "\x00" + x.Timestamp.String()
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[key(x)] = true
	}
	for _, x := range b {
		if !seen[key(x)] {
			return false
		}
	}
	return true
}

// addr is our address on a transport: the TLS listener's for TLS.
func (n *Notifier) addr(transport string) string {
	if strings.EqualFold(transport, "TLS") && n.tls != "" {
		return n.tls
	}
	return n.self
}

// contact is our Contact on a transport: a subscriber over TLS gets the
// TLS listener, so its refreshes stay on TLS.
func (n *Notifier) contact(transport string) string {
	if a := n.addr(transport); a != n.self {
		return "<sip:" + a + ";transport=tls>"
	}
	return "<sip:" + n.self + ">"
}
