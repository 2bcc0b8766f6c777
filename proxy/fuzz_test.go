package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

// FuzzRoute drives the router with arbitrary messages: whatever parses as
// a request is validated and routed without a network. Nothing may panic,
// and a forwarding decision always names where each branch goes.
func FuzzRoute(f *testing.F) {
	seeds := []string{
		"INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		"MESSAGE sip:alice@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK2\r\nMax-Forwards: 0\r\nTo: <sip:alice@a.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: y\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
		"BYE sip:192.0.2.7:5062;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK3\r\nRoute: <sip:192.0.2.9;lr>\r\nTo: <sip:bob@b.example>;tag=9\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: z\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS sips:carol@c.example;maddr=10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK4\r\nTo: <sips:carol@c.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: w\r\nCSeq: 1 OPTIONS\r\nProxy-Require: x\r\nContent-Length: 0\r\n\r\n",
	}
	loc := &memLocation{aor: map[string][]lsp.Binding{}}
	exp := time.Now().Add(24 * time.Hour)
	_ = loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@192.0.2.5:5070", Expires: exp, Path: []string{"<sip:edge.b.example;lr>"}},
		lsp.Binding{Contact: "sip:bob@10.0.0.5", Expires: exp, Received: "198.51.100.1:4000", Q: 0.5})
	p, err := New(Config{Domain: "a.example", Location: loc, Logger: quiet(),
		Static: map[string][]string{"c.example": {"sip:192.0.2.30:5060"}}})
	if err != nil {
		f.Fatal(err)
	}
	p.self = hostPort{"127.0.0.1", 5060}
	seeds = append(seeds,
		"MESSAGE sip:x@192.0.2.77:5099 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK5\r\nRoute: <sip:127.0.0.1:5060;lr;lsrr="+p.rrToken("q", "192.0.2.77:5099")+">\r\nTo: <sip:x@b.example>;tag=9\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: q\r\nCSeq: 2 MESSAGE\r\nContent-Length: 0\r\n\r\n",
		"MESSAGE sip:alice@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK6\r\nRoute: <sip:a.example;lr>, <sip:192.0.2.77:5099;lr>\r\nTo: <sip:alice@a.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: r\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := sip.ParseMessage(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		if code, _ := p.validate(req); code != 0 {
			if code < 400 || code > 499 {
				t.Fatalf("validation answered %d", code)
			}
			return
		}
		minted := false // a Route carries a token: the policy then trusts the dialog
		for _, h := range req.GetHeaders("Route") {
			minted = minted || strings.Contains(h.Value(), rrParam+"=")
		}
		d := p.decide(context.Background(), req, nil)
		if d.code != 0 {
			return
		}
		if d.open && !minted {
			// Open to any sender: only bindings of our own users or a
			// flow of ours (the relay policy rests on this).
			for _, g := range d.groups {
				for _, tg := range g {
					if tg.how != viaOverlay && !tg.flow {
						t.Fatalf("open decision to %+v", tg)
					}
				}
			}
		}
		before := req.String()
		for _, g := range d.groups {
			for _, tg := range g {
				if tg.dest == "" || tg.tr == "" {
					t.Fatalf("branch without destination: %+v", tg)
				}
				out := p.prepare(req, tg)
				if mf := out.MaxForwards(); mf != nil {
					mf.Dec() // a copy's own Max-Forwards, not the request's
				}
			}
		}
		// A branch's copy shares the request's header values: making
		// it leaves the request (which its server transaction answers
		// from) as it was.
		if after := req.String(); after != before {
			t.Fatalf("prepare changed the request:\n%s\nnow:\n%s", before, after)
		}
	})
}
