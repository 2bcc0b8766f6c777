package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/lsp"
)

func TestInstanceOf(t *testing.T) {
	bs := []lsp.Binding{
		{Contact: "sip:a@192.0.2.1", Instance: "<urn:uuid:AA>"},
		{Contact: "sip:a@192.0.2.2", Instance: "<urn:uuid:bb>", RegID: 1},
		{Contact: "sip:a@192.0.2.3", Instance: "<urn:uuid:bb>", RegID: 2},
		{Contact: "sip:a@192.0.2.4"},
		{Contact: "sip:a@192.0.2.5", Instance: "<urn:x;y>"},
	}
	for _, c := range []struct {
		ruri string
		want []string // contacts; nil with ok false
		ok   bool
	}{
		{"sip:a@a.example", []string{"sip:a@192.0.2.1", "sip:a@192.0.2.2", "sip:a@192.0.2.3", "sip:a@192.0.2.4", "sip:a@192.0.2.5"}, true},
		{"sip:a@a.example;gr=urn:uuid:aa", []string{"sip:a@192.0.2.1"}, true},
		{"sip:a@a.example;gr=urn:uuid:bb", []string{"sip:a@192.0.2.2", "sip:a@192.0.2.3"}, true},
		{"sip:a@a.example;gr=urn:x%3By", []string{"sip:a@192.0.2.5"}, true},
		{"sip:a@a.example;gr=urn%3Auuid%3AAA", []string{"sip:a@192.0.2.1"}, true},
		{"sip:a@a.example;gr=urn:uuid:cc", nil, false},
		{"sip:a@a.example;gr=", []string{"sip:a@192.0.2.1", "sip:a@192.0.2.2", "sip:a@192.0.2.3", "sip:a@192.0.2.4", "sip:a@192.0.2.5"}, true}, // names no instance
		{"sip:tgruu.abc@a.example;gr", []string{"sip:a@192.0.2.1", "sip:a@192.0.2.2", "sip:a@192.0.2.3", "sip:a@192.0.2.4", "sip:a@192.0.2.5"}, true},
	} {
		var u sip.Uri
		if err := sip.ParseUri(c.ruri, &u); err != nil {
			t.Fatal(err)
		}
		got, ok := instanceOf(u, bs)
		var contacts []string
		for _, b := range got {
			contacts = append(contacts, b.Contact)
		}
		if ok != c.ok || (ok && len(contacts) != len(c.want)) {
			t.Errorf("%s: %v %v, want %v %v", c.ruri, contacts, ok, c.want, c.ok)
			continue
		}
		for i := range c.want {
			if ok && contacts[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.ruri, contacts, c.want)
			}
		}
	}
	if len(bs) != 5 || bs[1].Contact != "sip:a@192.0.2.2" {
		t.Fatalf("instanceOf changed its input (the lookup cache's): %+v", bs)
	}
}

// TestGRUUInDialog: a UA's GRUU is its Contact in dialogs (RFC 5627
// §4.2), a name only the overlay resolves. An untrusted sender's request
// to it is let through only inside a dialog this proxy record-routed for
// that very Contact (its token), as one to an address is; a token of
// another dialog, of another Contact, or on a new request opens nothing.
func TestGRUUInDialog(t *testing.T) {
	_, other, _ := net.ParseCIDR("10.255.0.0/16")
	tp := startProxy(t, Proxying, func(c *Config) {
		c.TrustedNetworks = []*net.IPNet{other} // the senders below are untrusted
		c.Authorize = proxyAuthorizer("a.example", map[string]string{"alice": "secret-a"})
	})
	_ = tp.loc.Publish(context.Background(), "sip:bob@b.example",
		lsp.Binding{Contact: "sip:bob@192.0.2.20:5060", Instance: "<urn:uuid:b1>", Expires: time.Now().Add(time.Hour)},
		lsp.Binding{Contact: "sip:bob@192.0.2.21:5060", Instance: "<urn:uuid:b2>", Expires: time.Now().Add(time.Hour)})
	gruu := "sip:bob@b.example;gr=urn:uuid:b1"
	var u sip.Uri
	if err := sip.ParseUri(gruu, &u); err != nil {
		t.Fatal(err)
	}
	minted := tp.p.rrToken("call-1", gruuHop(u))
	route := func(tok string) string { return "Route: <sip:" + tp.addr + ";lr;" + rrParam + "=" + tok + ">" }
	caller := newUA(t)
	for _, c := range []struct {
		name, msg string
		open      bool
	}{
		{"BYE of the dialog", caller.request("BYE", gruu, "To: <sip:bob@b.example>;tag=b", "Call-ID: call-1", route(minted)), true},
		{"another dialog", caller.request("BYE", gruu, "To: <sip:bob@b.example>;tag=b", "Call-ID: call-2", route(minted)), false},
		{"the AOR, not the GRUU", caller.request("BYE", "sip:bob@b.example", "To: <sip:bob@b.example>;tag=b", "Call-ID: call-1", route(minted)), false},
		{"the GRUU escaped, its parameter's name in capitals", caller.request("BYE", "sip:bob@b.example;GR=urn%3Auuid%3Ab1", "To: <sip:bob@b.example>;tag=b", "Call-ID: call-1", route(minted)), true},
		// The token names one GRUU, not its host: another instance of
		// the AOR, the AOR's every binding (a bare gr), another user of
		// the domain.
		{"another instance", caller.request("BYE", "sip:bob@b.example;gr=urn:uuid:b2", "To: <sip:bob@b.example>;tag=b", "Call-ID: call-1", route(minted)), false},
		{"a bare gr", caller.request("BYE", "sip:bob@b.example;gr", "To: <sip:bob@b.example>;tag=b", "Call-ID: call-1", route(minted)), false},
		{"another user", caller.request("BYE", "sip:eve@b.example;gr=urn:uuid:b1", "To: <sip:bob@b.example>;tag=b", "Call-ID: call-1", route(minted)), false},
		{"a new request", caller.request("INVITE", gruu, "Call-ID: call-1", route(minted)), false},
	} {
		m, err := sip.ParseMessage([]byte(c.msg))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		req.SetSource("198.51.100.9:5060")
		d := tp.p.decide(context.Background(), req, tp.p.gate(req))
		if open := d.deny == nil && d.open && d.minted; open != c.open {
			t.Errorf("%s: open %v (deny %v), want %v", c.name, open, d.deny, c.open)
		}
		if c.open && (len(d.groups) != 1 || len(d.groups[0]) != 1 || d.groups[0][0].dest != "192.0.2.20:5060") {
			t.Errorf("%s: routed to %+v, want bob's first instance alone", c.name, d.groups)
		}
	}
}

// TestCacheKeepsNewerPush: a lookup that began before a change was told
// does not put its older answer over the change.
func TestCacheKeepsNewerPush(t *testing.T) {
	c := newCache(10)
	now := time.Now()
	pushed := []lsp.Binding{{Contact: "sip:new@192.0.2.2", Expires: now.Add(time.Hour)}}
	c.put("sip:a@a.example", pushed, now.Add(time.Minute), now.Add(time.Millisecond))
	c.put("sip:a@a.example", []lsp.Binding{{Contact: "sip:old@192.0.2.1", Expires: now.Add(time.Hour)}}, now.Add(time.Minute), now)
	if bs, ok := c.get("sip:a@a.example", now); !ok || len(bs) != 1 || bs[0].Contact != "sip:new@192.0.2.2" {
		t.Fatalf("cache holds %+v", bs)
	}
}
