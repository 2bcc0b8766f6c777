package registrar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/lsnode/lsnode/lsp"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestRegistrar(t testing.TB, auth bool, loc lsp.LocationService) *Registrar {
	t.Helper()
	cfg := Config{Domain: "a.example", Mode: Local, Logger: quiet()}
	if loc != nil {
		cfg.Mode, cfg.Location = Stateless, loc
	}
	if auth {
		cfg.Users = &UsersFile{Realm: "a.example", Users: []UserHash{
			NewUserHash("alice", "sip:alice@a.example", "a.example", "secret-a"),
			NewUserHash("bob", "sip:bob@a.example", "a.example", "secret-b"),
		}}
		cfg.NonceSecret = []byte("0123456789abcdef0123")
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var seq = 0

// register builds a REGISTER for aor with extra header lines.
func register(t testing.TB, aor, callID string, cseq int, headers ...string) *sip.Request {
	t.Helper()
	seq++
	raw := "REGISTER sip:a.example SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK%d;rport\r\n", seq) +
		"Max-Forwards: 70\r\nTo: <" + aor + ">\r\nFrom: <" + aor + ">;tag=x\r\n" +
		"Call-ID: " + callID + "\r\n" + fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq)
	ua := "User-Agent: lsnode-test/1.0\r\n" // a UA that is offered every algorithm
	for _, h := range headers {
		raw += h + "\r\n"
		if strings.HasPrefix(h, "User-Agent:") {
			ua = ""
		}
	}
	raw += ua + "Content-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	return m.(*sip.Request)
}

// do hands req to r as sent from its first Contact's address when that is
// a public one (a UA registers itself), else from 198.51.100.7.
func do(r *Registrar, req *sip.Request) *sip.Response {
	source := "198.51.100.7:40000"
	if c := req.Contact(); c != nil {
		if ip := net.ParseIP(c.Address.Host); ip != nil && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsUnspecified() && !ip.IsLinkLocalUnicast() {
			source = net.JoinHostPort(ip.String(), "40000")
		}
	}
	return r.Handle(context.Background(), req, source)
}

// authorize answers the challenge of res for req with algorithm alg: the
// retry (RFC 3261 §8.1.3.5) with the CSeq one higher.
func authorize(t testing.TB, req *sip.Request, res *sip.Response, alg, user, pass string) *sip.Request {
	t.Helper()
	return authorizeURI(t, req, res, alg, user, pass, "sip:a.example")
}

func authorizeURI(t testing.TB, req *sip.Request, res *sip.Response, alg, user, pass, uri string) *sip.Request {
	t.Helper()
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		if chal.Algorithm != alg {
			continue
		}
		return withCredentials(t, req, chal, alg, user, pass, uri)
	}
	t.Fatalf("no %s challenge in %s", alg, res)
	return nil
}

// withCredentials is req's retry answering chal as alg (which may differ
// from what chal offered: an attacker's answer).
func withCredentials(t testing.TB, req *sip.Request, chal *digest.Challenge, alg, user, pass, uri string) *sip.Request {
	t.Helper()
	c := *chal
	c.Algorithm = alg
	cred, err := digest.Digest(&c, digest.Options{Method: "REGISTER", URI: uri,
		Username: user, Password: pass, Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	out := req.Clone()
	out.RemoveHeader("Authorization")
	out.AppendHeader(sip.NewHeader("Authorization", cred.String()))
	out.CSeq().SeqNo++
	return out
}

func contacts(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func want(t testing.TB, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("got %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res)
	}
}

func TestDigest(t *testing.T) {
	r := newTestRegistrar(t, true, nil)
	req := register(t, "sip:alice@a.example", "c1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	res := do(r, req)
	want(t, res, 401)
	if n := len(res.GetHeaders("WWW-Authenticate")); n != 2 {
		t.Fatalf("%d challenges, want SHA-256 and MD5", n)
	}
	for _, alg := range []string{"MD5", "SHA-256"} {
		areq := register(t, "sip:alice@a.example", "c-"+alg, 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
		want(t, do(r, authorize(t, areq, do(r, areq), alg, "alice", "secret-a")), 200)
	}
	want(t, do(r, authorize(t, req, res, "MD5", "alice", "wrong")), 401)
	want(t, do(r, authorize(t, req, res, "SHA-256", "mallory", "secret-a")), 401)
	// bob's valid credentials do not register alice.
	want(t, do(r, authorize(t, req, res, "MD5", "bob", "secret-b")), 403)
	// An expired nonce gets a fresh challenge with stale=true.
	r.nonces.now = func() time.Time { return time.Now().Add(time.Hour) }
	res2 := do(r, authorize(t, req, res, "MD5", "alice", "secret-a"))
	want(t, res2, 401)
	if !strings.Contains(res2.GetHeader("WWW-Authenticate").Value(), "stale=true") {
		t.Fatalf("no stale=true: %s", res2)
	}
	// A forged nonce is not accepted.
	r.nonces.now = time.Now
	forged := strings.Replace(authorize(t, req, res, "MD5", "alice", "secret-a").GetHeader("Authorization").Value(), "nonce=\"", "nonce=\"AAAA", 1)
	req3 := req.Clone()
	req3.AppendHeader(sip.NewHeader("Authorization", forged))
	want(t, do(r, req3), 401)
}

func TestRegisterSemantics(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	alice := "sip:alice@a.example"
	// Through an edge proxy on a trusted network (its Path is kept).
	res := r.Handle(context.Background(), register(t, alice, "c1", 1,
		"Contact: <sip:alice@192.0.2.1:5060>;q=0.8, <sip:alice@192.0.2.2:5060>;expires=120", "Expires: 600",
		"Path: <sip:edge.a.example;lr>"), "127.0.0.1:5070")
	want(t, res, 200)
	cs := contacts(res)
	if len(cs) != 2 || !strings.Contains(strings.Join(cs, " "), "expires=120") || !strings.Contains(strings.Join(cs, " "), "q=0.8") {
		t.Fatalf("200 lists %v", cs)
	}
	if res.GetHeader("Path") == nil {
		t.Fatal("Path not echoed")
	}
	bs, _ := r.loc.Lookup(context.Background(), alice)
	if len(bs) != 2 || bs[0].Received != "127.0.0.1:5070" || len(bs[0].Path) != 1 {
		t.Fatalf("stored %+v", bs)
	}
	// Query: no Contact lists the bindings.
	want(t, do(r, register(t, alice, "c9", 1)), 200)
	if n := len(contacts(do(r, register(t, alice, "c9", 2)))); n != 2 {
		t.Fatalf("query lists %d", n)
	}
	// Older CSeq on the same Call-ID does not overwrite.
	want(t, do(r, register(t, alice, "c1", 1, "Contact: <sip:alice@192.0.2.1:5060>", "Expires: 3000")), 500)
	// 423 below Min-Expires.
	res = do(r, register(t, alice, "c1", 5, "Contact: <sip:alice@192.0.2.3>", "Expires: 30"))
	want(t, res, 423)
	if res.GetHeader("Min-Expires") == nil {
		t.Fatal("423 without Min-Expires")
	}
	// Removal of one contact with expires=0.
	res = do(r, register(t, alice, "c1", 6, "Contact: <sip:alice@192.0.2.2:5060>;expires=0"))
	want(t, res, 200)
	if cs := contacts(res); len(cs) != 1 || !strings.Contains(cs[0], "192.0.2.1") {
		t.Fatalf("after removal: %v", cs)
	}
	// * needs Expires: 0 and no other contact.
	want(t, do(r, register(t, alice, "c1", 7, "Contact: *")), 400)
	want(t, do(r, register(t, alice, "c1", 8, "Contact: *", "Expires: 0")), 200)
	if bs, _ := r.loc.Lookup(context.Background(), alice); len(bs) != 0 {
		t.Fatalf("after *: %+v", bs)
	}
}

func TestInstanceReplacesOwnBinding(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	alice := "sip:alice@a.example"
	inst := `+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`
	want(t, do(r, register(t, alice, "p1", 1, "Contact: <sip:alice@192.0.2.1:5060>;"+inst, "Expires: 600")), 200)
	want(t, do(r, register(t, alice, "d2", 1, "Contact: <sip:alice@192.0.2.50:5060>", "Expires: 600")), 200)
	// The phone moves to a new address: its binding is replaced, the desk phone stays.
	res := do(r, register(t, alice, "p1b", 1, "Contact: <sip:alice@192.0.2.77:5070>;"+inst, "Expires: 600"))
	want(t, res, 200)
	all := strings.Join(contacts(res), " ")
	if len(contacts(res)) != 2 || !strings.Contains(all, "192.0.2.77") || strings.Contains(all, "192.0.2.1:") || !strings.Contains(all, "192.0.2.50") {
		t.Fatalf("bindings %v", contacts(res))
	}
}

func TestRefusals(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	req := register(t, "sip:alice@a.example", "c", 1, "Contact: <sip:a@192.0.2.1>")
	req.Recipient.Host = "b.example"
	want(t, do(r, req), 404)
	want(t, do(r, register(t, "sip:alice@b.example", "c", 1, "Contact: <sip:a@192.0.2.1>")), 403)
	res := do(r, register(t, "sip:alice@a.example", "c", 1, "Contact: <sip:a@192.0.2.1>", "Require: foo"))
	want(t, res, 420)
	if res.GetHeader("Unsupported").Value() != "foo" {
		t.Fatal("420 without Unsupported")
	}
	want(t, do(r, register(t, "sip:alice@a.example", "c", 1, "Contact: <sip:a@192.0.2.1>", "Expires: soon")), 400)
	want(t, do(r, register(t, "sip:alice@a.example", "c", 1, "Contact: <sip:a@192.0.2.1>;q=7")), 400)
	want(t, do(r, register(t, "sip:alice@a.example", "c", 1, "Contact: <sip:a@192.0.2.1>;reg-id=x")), 400)
}

// failing injects a location-service fault.
type failing struct{ err error }

func (f failing) Publish(context.Context, string, ...lsp.Binding) error { return f.err }
func (f failing) Lookup(context.Context, string) ([]lsp.Binding, error) { return nil, nil }
func (f failing) Remove(context.Context, string, ...string) error       { return f.err }

func TestOverlayFailureIsVisible(t *testing.T) {
	r := newTestRegistrar(t, false, failing{fmt.Errorf("%w: write quorum 2 not reached", lsp.ErrUnavailable)})
	res := do(r, register(t, "sip:alice@a.example", "c", 1, "Contact: <sip:a@192.0.2.1>"))
	want(t, res, 503)
	if res.GetHeader("Retry-After") == nil {
		t.Fatal("503 without Retry-After")
	}
}

// countWarns is a slog handler counting Warn records.
type countWarns struct{ n *atomic.Int64 }

func (h countWarns) Enabled(context.Context, slog.Level) bool { return true }
func (h countWarns) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countWarns) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countWarns) WithGroup(string) slog.Handler      { return h }

// TestFailureLogBounded: a location service failing every REGISTER (an
// overload) logs one warning a second, not one a request, and every
// REGISTER is still answered.
func TestFailureLogBounded(t *testing.T) {
	var warns atomic.Int64
	r, err := New(Config{Domain: "a.example", Mode: Stateless, Logger: slog.New(countWarns{&warns}),
		Location: failing{fmt.Errorf("%w: queue full", lsp.ErrUnavailable)}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		want(t, do(r, register(t, "sip:alice@a.example", fmt.Sprint("f", i), 1, "Contact: <sip:a@192.0.2.1>")), 503)
	}
	if n := warns.Load(); n < 1 || n > 3 { // a second boundary or two on a slow machine
		t.Fatalf("%d warnings for 200 failures", n)
	}
}

func FuzzRegister(f *testing.F) {
	base := "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\nTo: <sip:alice@a.example>\r\nFrom: <sip:alice@a.example>;tag=1\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
	for _, extra := range []string{
		"Contact: <sip:a@192.0.2.1>;expires=60\r\n",
		"Contact: *\r\nExpires: 0\r\n",
		"Contact: <sip:a@h>;+sip.instance=\"<urn:x>\";reg-id=1;q=0.5\r\nPath: <sip:p;lr>\r\n",
		"Contact: <sip:a@h>\r\nAuthorization: Digest username=\"alice\", realm=\"a.example\", nonce=\"x\", uri=\"sip:a.example\", response=\"0\"\r\n",
		"Require: path, foo\r\nExpires: 99999999999\r\n",
		"Supported: gruu\r\nContact: <sip:a@192.0.2.1>;+sip.instance=\"<urn:uuid:1>\";reg-id=2\r\nExpires: 60\r\n",
	} {
		f.Add([]byte(base + extra + "Content-Length: 0\r\n\r\n"))
	}
	r := newTestRegistrar(f, true, nil)
	open := newTestRegistrar(f, false, nil)
	open.cfg.GRUUSecret = []byte("0123456789abcdef0123")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sip.ParseMessage(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		for _, reg := range []*Registrar{r, open} {
			res := do(reg, req)
			if res == nil || res.StatusCode < 200 || res.StatusCode > 699 {
				t.Fatalf("bad response %v", res)
			}
		}
	})
}

// switchable is a location service whose reads can be made to fail.
type switchable struct {
	*localStore
	down bool
	err  error // what a read fails with when down (default: no replica answered)
}

func (s *switchable) Lookup(ctx context.Context, aor string) ([]lsp.Binding, error) {
	if s.down {
		if s.err != nil {
			return nil, s.err
		}
		return nil, fmt.Errorf("%w: no replica answered", lsp.ErrUnavailable)
	}
	return s.localStore.Lookup(ctx, aor)
}

func TestHybridFallsBackToMirror(t *testing.T) {
	ov := &switchable{localStore: newLocalStore()}
	r, err := New(Config{Domain: "a.example", Mode: Hybrid, Location: ov, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	alice := "sip:alice@a.example"
	want(t, do(r, register(t, alice, "h1", 1, "Contact: <sip:alice@192.0.2.1>", "Expires: 600")), 200)
	if bs, _ := ov.localStore.Lookup(context.Background(), alice); len(bs) != 1 {
		t.Fatal("hybrid did not publish to the overlay")
	}
	ov.down = true
	res := do(r, register(t, alice, "h2", 1))
	want(t, res, 200)
	if cs := contacts(res); len(cs) != 1 || !strings.Contains(cs[0], "192.0.2.1") {
		t.Fatalf("query with the overlay down: %v", cs)
	}
	// Not joined yet, the mirror's word is not the overlay's (after a
	// restart it holds nothing): 503, not the mirror's bindings.
	ov.err = lsp.ErrNotJoined
	want(t, do(r, register(t, alice, "h4", 1)), 503)
	// Writes still need the overlay: a write it cannot take is a 5xx.
	r2, _ := New(Config{Domain: "a.example", Mode: Hybrid, Location: failing{fmt.Errorf("%w", lsp.ErrUnavailable)}, Logger: quiet()})
	want(t, do(r2, register(t, alice, "h3", 1, "Contact: <sip:alice@192.0.2.2>")), 503)
}

// TestNATEdge: a binding registered from behind a NAT (private Contact,
// another source, no Path) gets the edge's Path first and the edge hears
// of the flow with the binding's expiry; a public Contact, one behind an
// edge proxy's Path, and a removal get no Path (a removal ends the flow).
func TestNATEdge(t *testing.T) {
	type call struct {
		source, tr string
		until      time.Time
	}
	var calls []call
	r, err := New(Config{Domain: "a.example", Mode: Local, Logger: quiet(),
		Edge: func(source, tr string, until time.Time) string {
			calls = append(calls, call{source, tr, until})
			return "<sip:flow@192.0.2.1:5060;lr;ob>"
		}})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := "sip:alice@a.example", "sip:bob@a.example", "sip:carol@a.example"
	want(t, do(r, register(t, alice, "n1", 1, "Contact: <sip:alice@192.168.1.11:5060>", "Expires: 600")), 200)
	bs, _ := r.loc.Lookup(context.Background(), alice)
	if len(bs) != 1 || len(bs[0].Path) != 1 || bs[0].Path[0] != "<sip:flow@192.0.2.1:5060;lr;ob>" {
		t.Fatalf("NAT'd binding stored %+v", bs)
	}
	if len(calls) != 1 || calls[0].source != "198.51.100.7:40000" || calls[0].tr != "UDP" || time.Until(calls[0].until) < 590*time.Second {
		t.Fatalf("edge calls %+v", calls)
	}
	want(t, do(r, register(t, bob, "n2", 1, "Contact: <sip:bob@203.0.113.5:5060>", "Expires: 600")), 200)
	// Through a trusted edge proxy that added its Path: no flow of ours.
	want(t, r.Handle(context.Background(), register(t, carol, "n3", 1, "Contact: <sip:carol@10.0.0.5:5060>", "Expires: 600",
		"Path: <sip:edge.a.example;lr>"), "127.0.0.1:5070"), 200)
	for _, aor := range []string{bob, carol} {
		bs, _ := r.loc.Lookup(context.Background(), aor)
		if len(bs) != 1 || len(bs[0].Path) > 1 || len(bs[0].Path) == 1 && strings.Contains(bs[0].Path[0], "flow@") {
			t.Fatalf("%s stored %+v", aor, bs)
		}
	}
	if len(calls) != 1 {
		t.Fatalf("edge called for a public or pathed Contact: %+v", calls)
	}
	want(t, do(r, register(t, alice, "n1", 2, "Contact: <sip:alice@192.168.1.11:5060>;expires=0")), 200)
	if len(calls) != 2 || !calls[1].until.IsZero() {
		t.Fatalf("removal: edge calls %+v", calls)
	}
	for _, c := range []struct {
		contact, source string
		want            bool
	}{
		{"<sip:a@192.168.1.2:5060>", "198.51.100.7:1", true},
		{"sip:a@10.1.2.3", "198.51.100.7:1", true},
		{"sip:a@100.64.1.1", "198.51.100.7:1", true},
		{"sip:a@[fd00::1]:5060", "[2001:db8::1]:1", true},
		{"sip:a@192.168.1.2", "192.168.1.2:5060", false},
		{"sip:a@198.51.100.8", "198.51.100.7:1", false},
		{"sip:a@host.example", "198.51.100.7:1", false},
		{"not a uri", "198.51.100.7:1", false},
		{"sip:a@192.168.1.2", "garbage", false},
	} {
		if got := natted(c.contact, c.source, "UDP"); got != c.want {
			t.Errorf("natted(%q, %q) = %v", c.contact, c.source, got)
		}
	}
	// A WebSocket UA is reached down its flow whatever its Contact says.
	for _, c := range []string{"sip:a@x.invalid;transport=ws", "sip:a@198.51.100.7", "not a uri"} {
		for _, tr := range []string{"WS", "wss"} {
			if !natted(c, "198.51.100.7:1", tr) {
				t.Errorf("natted(%q) over %s = false", c, tr)
			}
		}
	}
}

// TestUntrustedPathAnyCase: an untrusted sender's Path is neither stored
// nor echoed, however its name is written (header names are
// case-insensitive; sipgo's RemoveHeader is not).
func TestUntrustedPathAnyCase(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	res := do(r, register(t, "sip:alice@a.example", "p1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600",
		"path: <sip:evil.example;lr>", "PATH: <sip:evil2.example;lr>", "Path: <sip:evil3.example;lr>"))
	want(t, res, 200)
	if hs := res.GetHeaders("Path"); len(hs) != 0 {
		t.Fatalf("200 echoes %v", hs)
	}
	bs, _ := r.loc.Lookup(context.Background(), "sip:alice@a.example")
	if len(bs) != 1 || len(bs[0].Path) != 0 {
		t.Fatalf("stored %+v", bs)
	}
}

// TestOverloadShedsNewFirst: with digest on and half of MaxInFlight
// waiting on the location service, a REGISTER that would be challenged
// (no, made-up or wrong credentials) gets 503 with Retry-After instead,
// while one answering its challenge still goes through; at MaxInFlight
// both are shed, before any check, so a shed answer's nonce stays good
// for its retransmission. An open
// registrar (no challenge to save) sheds only at MaxInFlight.
func TestOverloadShedsNewFirst(t *testing.T) {
	r := newTestRegistrar(t, true, nil)
	req := register(t, "sip:alice@a.example", "o1", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	chal := do(r, req)
	want(t, chal, 401)
	req2 := register(t, "sip:alice@a.example", "o4", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	chal2 := do(r, req2)
	want(t, chal2, 401)
	half := int64(r.cfg.MaxInFlight / 2)
	advance := fakeClock(r)
	stand := func() { // half have waited since now, long enough: a queue that stands
		r.inflight.Store(half)
		r.queueStands(half)
		advance(standingQueue)
	}
	stand()
	r.inflight.Store(half - 1) // one short of half waiting besides it
	want(t, do(r, register(t, "sip:alice@a.example", "o0", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")), 401)
	stand()
	shed := do(r, register(t, "sip:alice@a.example", "o2", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600"))
	want(t, shed, 503)
	if shed.GetHeader("Retry-After") == nil {
		t.Fatal("503 without Retry-After")
	}
	// A made-up Authorization does not jump the queue, nor does a wrong
	// password: each would have been challenged.
	fake := register(t, "sip:alice@a.example", "o5", 1, "Contact: <sip:alice@192.0.2.9:5060>",
		`Authorization: Digest username="alice", realm="a.example", nonce="AAAA", uri="sip:a.example", response="00000000000000000000000000000000", algorithm=MD5`)
	want(t, do(r, fake), 503)
	want(t, do(r, authorize(t, req, chal, "MD5", "alice", "wrong")), 503)
	// bob's credentials for alice are refused (403), not shed.
	want(t, do(r, authorize(t, req2, chal2, "SHA-256", "bob", "secret-b")), 403)
	want(t, do(r, authorize(t, req, chal, "MD5", "alice", "secret-a")), 200)
	r.inflight.Store(0)
	req3 := register(t, "sip:alice@a.example", "o6", 1, "Contact: <sip:alice@192.0.2.9:5060>", "Expires: 600")
	chal3 := do(r, req3)
	want(t, chal3, 401)
	r.inflight.Store(int64(r.cfg.MaxInFlight))
	want(t, do(r, authorize(t, req2, chal2, "MD5", "alice", "secret-a")), 503)
	answered := authorize(t, req3, chal3, "MD5", "alice", "secret-a")
	want(t, do(r, answered), 503)
	// Shed before its credentials were checked, it cost its nonce nothing:
	// sent again once there is room, it registers.
	r.inflight.Store(0)
	want(t, do(r, answered), 200)

	open := newTestRegistrar(t, false, nil)
	open.inflight.Store(int64(open.cfg.MaxInFlight / 2))
	want(t, do(open, register(t, "sip:carol@a.example", "o3", 1, "Contact: <sip:carol@192.0.2.9:5060>")), 200)
}
