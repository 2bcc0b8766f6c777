package regevent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// fakeTx records the responses of a server transaction.
type fakeTx struct {
	sip.ServerTransaction
	res []*sip.Response
}

func (f *fakeTx) Respond(r *sip.Response) error { f.res = append(f.res, r); return nil }

// closedWatch is a location service whose watches end at once.
type closedWatch struct{}

func (closedWatch) Watch(context.Context, string) (<-chan []lsp.Binding, error) {
	ch := make(chan []lsp.Binding)
	close(ch)
	return ch, nil
}

// openWatch is a location service whose watches tell nothing and last
// until their subscription ends: a subscription stays counted.
type openWatch struct{}

func (openWatch) Watch(context.Context, string) (<-chan []lsp.Binding, error) {
	return make(chan []lsp.Binding), nil
}

func newTestNotifier(t testing.TB, mutate func(*Config)) *Notifier {
	t.Helper()
	cfg := Config{Domain: "b.example", Watch: closedWatch{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authorize: func(req *sip.Request, aor string) *sip.Response {
			if req.GetHeader("Authorization") == nil {
				return sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
			}
			return nil
		}}
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func subscribeReq(t testing.TB, ruri string, headers ...string) *sip.Request {
	t.Helper()
	raw := "SUBSCRIBE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:bob@b.example>;tag=w\r\nCall-ID: c1\r\nCSeq: 1 SUBSCRIBE\r\n"
	has := map[string]bool{}
	for _, h := range headers {
		raw += h + "\r\n"
		name, _, _ := strings.Cut(h, ":")
		has[strings.ToLower(name)] = true
	}
	for name, line := range map[string]string{"to": "To: <" + ruri + ">", "event": "Event: reg", "contact": "Contact: <sip:w@192.0.2.9>",
		"authorization": "Authorization: ok"} {
		if !has[name] {
			raw += line + "\r\n"
		}
	}
	m, err := sip.ParseMessage([]byte(raw + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestHandle: which SUBSCRIBEs the notifier takes, and its answers.
func TestHandle(t *testing.T) {
	// An open watch: with one that ends at once, the accepted subscription
	// could end (and leave the count) before the SUBSCRIBE one over
	// MaxPerAOR, which then got 200 on a loaded machine.
	n := newTestNotifier(t, func(c *Config) { c.MaxPerAOR = 1; c.Watch = openWatch{} })
	n.self = "127.0.0.1:5060"
	bob := "sip:bob@b.example"
	for _, c := range []struct {
		name string
		req  *sip.Request
		want int // 0: not taken (routed)
	}{
		{"another event package", subscribeReq(t, bob, "Event: presence"), 0},
		{"another domain's AOR", subscribeReq(t, "sip:bob@c.example"), 0},
		{"no user", subscribeReq(t, "sip:b.example"), 0},
		{"no credentials", subscribeReq(t, bob, "Authorization: x-none"), 0},
		{"another body type", subscribeReq(t, bob, "Accept: text/plain"), 406},
		{"too brief", subscribeReq(t, bob, "Expires: 10"), 423},
		{"bad Expires", subscribeReq(t, bob, "Expires: soon"), 400},
		{"an unknown dialog of ours", subscribeReq(t, "sip:127.0.0.1:5060", "To: <sip:bob@b.example>;tag=nosuch"), 481},
		{"another notifier's dialog", subscribeReq(t, bob, "To: <sip:bob@b.example>;tag=theirs"), 0},
		{"reg in the compact form, accepted", subscribeReq(t, bob, "o: reg;id=1", "Accept: application/reginfo+xml"), 200},
		{"one more than MaxPerAOR", subscribeReq(t, bob), 503},
	} {
		if c.name == "no credentials" {
			c.req.RemoveHeader("Authorization")
			c.want = 401
		}
		tx := &fakeTx{}
		took := n.Handle(c.req, tx)
		switch {
		case c.want == 0 && took:
			t.Errorf("%s: taken", c.name)
		case c.want != 0 && (!took || len(tx.res) != 1 || tx.res[0].StatusCode != c.want):
			t.Errorf("%s: taken %v, responses %v, want %d", c.name, took, tx.res, c.want)
		}
		if c.want == 423 && tx.res[0].GetHeader("Min-Expires") == nil {
			t.Errorf("423 without Min-Expires")
		}
		if c.want == 200 {
			if tag, _ := tx.res[0].To().Params.Get("tag"); tag == "" || tx.res[0].GetHeader("Expires").Value() != "3761" {
				t.Errorf("200 without a To tag or with Expires %v", tx.res[0].GetHeader("Expires"))
			}
		}
	}
}

// TestDocument: reginfo documents validate against RFC 3680's schema,
// whatever a Contact holds; a Contact of the last document that is gone is
// told once, terminated, as expired or unregistered.
func TestDocument(t *testing.T) {
	now := time.Now()
	doc := func(v uint64, bs []lsp.Binding, last map[string]lsp.Binding, had bool) []byte {
		d, _ := document("sip:bob@b.example", v, bs, last, had, now)
		return d
	}
	kept := lsp.Binding{Contact: `sip:bob@192.0.2.1;x="<&>"`, Expires: now.Add(time.Hour), Q: 0.5, CallID: `a&b<c>`, CSeq: 7}
	lapsed := lsp.Binding{Contact: "sip:lapsed@192.0.2.3", Expires: now.Add(-time.Second)}
	removed := lsp.Binding{Contact: "sip:removed@192.0.2.4", Expires: now.Add(time.Hour)}
	docs := map[string][]byte{
		"init":       doc(0, nil, nil, false),
		"terminated": doc(3, nil, map[string]lsp.Binding{lapsed.ID(): lapsed, removed.ID(): removed}, true),
		"active":     doc(1, []lsp.Binding{kept, {Contact: "sip:old@192.0.2.2", Expires: now.Add(-time.Second)}}, nil, false),
	}
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Fatal("xmllint not installed (Debian package libxml2-utils; scripts/deps test installs it)")
	}
	for name, doc := range docs {
		f := filepath.Join(t.TempDir(), name+".xml")
		if err := os.WriteFile(f, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("xmllint", "--noout", "--schema", "../testnet/testdata/reginfo/reginfo.xsd", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s\n%s", name, err, out, doc)
		}
		if !strings.Contains(string(doc), `state="`+name+`"`) {
			t.Errorf("%s: %s", name, doc)
		}
	}
	if s := string(docs["active"]); strings.Contains(s, "old@") || !strings.Contains(s, "&lt;&amp;&gt;") {
		t.Errorf("expired Contact listed, or a Contact not escaped: %s", s)
	}
	s := string(docs["terminated"])
	for _, want := range []string{`state="terminated" event="expired" expires="0"><uri>sip:lapsed@`, `state="terminated" event="unregistered" expires="0"><uri>sip:removed@`} {
		if !strings.Contains(s, want) {
			t.Errorf("terminated document lacks %s: %s", want, s)
		}
	}
	// What was told terminated is not told again.
	d, live := document("sip:bob@b.example", 4, nil, map[string]lsp.Binding{}, true, now)
	if strings.Contains(string(d), "<contact") || len(live) != 0 {
		t.Errorf("the next document: %s", d)
	}
	_, live = document("sip:bob@b.example", 2, []lsp.Binding{kept, lapsed}, nil, false, now)
	if len(live) != 1 || live[kept.ID()].Contact != kept.Contact {
		t.Errorf("live bindings of a document: %v", live)
	}
}

// FuzzHandle: any request the SIP parser takes gets no panic and, when
// taken, one final response.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(subscribeReq(f, "sip:bob@b.example").String()))
	f.Add([]byte(subscribeReq(f, "sip:bob@b.example", "Expires: 0", "Accept: */*").String()))
	f.Add([]byte(subscribeReq(f, "sip:bob@b.example", "To: <sip:bob@b.example>;tag=x", "Expires: 99999999999").String()))
	n := newTestNotifier(f, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sip.ParseMessage(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
			return // the proxy's validate refuses these first
		}
		tx := &fakeTx{}
		if n.Handle(req, tx) && (len(tx.res) != 1 || tx.res[0].StatusCode < 200) {
			t.Fatalf("responses %v", tx.res)
		}
	})
}
