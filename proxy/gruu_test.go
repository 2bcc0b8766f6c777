package proxy

import (
	"testing"

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
