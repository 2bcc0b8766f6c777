package lsp

import (
	"errors"
	"testing"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sip:bob@biloxi.example", "sip:bob@biloxi.example"},
		{"SIP:Bob@Biloxi.Example", "sip:bob@biloxi.example"},
		{"<sip:bob@biloxi.example:5060;transport=udp>", "sip:bob@biloxi.example"},
		{"sip:bob:secret@biloxi.example?subject=x", "sip:bob@biloxi.example"},
		{"sips:alice@atlanta.example.", "sips:alice@atlanta.example"},
		{"sip:%61lice@atlanta.example", "sip:alice@atlanta.example"},
		{"sip:a%2fb@atlanta.example", "sip:a%2Fb@atlanta.example"},
		{"sip:bob@[2001:DB8::1]:5060", "sip:bob@[2001:db8::1]"},
		{"sip:bob@192.0.2.1:5060", "sip:bob@192.0.2.1"},
		{"tel:+1-201-555-0123", "tel:+12015550123"},
		{"tel:+1(201)555.0123;ext=7", "tel:+12015550123"},
		{"tel:7042;phone-context=Example.COM", "tel:7042;phone-context=example.com"},
		{"xmpp:Juliet@Capulet.example/balcony", "xmpp:juliet@capulet.example"},
	} {
		got, err := Canonical(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCanonicalRejects(t *testing.T) {
	for _, in := range []string{
		"", "bob@biloxi.example", "sip:biloxi.example", "sip:@biloxi.example", "sip:bob@",
		"sip:bob@bad_host", "sip:bob@-x.example", "sip:bob@x.example:port", "sip:b ob@x.example",
		"sip:bob@x.exa\r\nmple", "tel:7042", "tel:+", "tel:+1x", "1sip:bob@x", "sip:bob%zz@x.example",
		"sip:bob@[::1", "sip:" + string(make([]byte, 600)),
	} {
		if got, err := Canonical(in); !errors.Is(err, ErrBadAOR) {
			t.Errorf("Canonical(%q) = %q, %v; want ErrBadAOR", in, got, err)
		}
	}
}

func TestDomain(t *testing.T) {
	for aor, want := range map[string]string{
		"sip:bob@biloxi.example":             "biloxi.example",
		"sip:bob@[2001:db8::1]":              "2001:db8::1",
		"tel:+12015550123":                   "",
		"tel:7042;phone-context=example.com": "example.com",
		"tel:7042;phone-context=+1201":       "",
		"xmpp:juliet@capulet.example":        "capulet.example",
	} {
		if got := Domain(aor); got != want {
			t.Errorf("Domain(%q) = %q, want %q", aor, got, want)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"sip:bob@biloxi.example", "<SIPS:A@B.c:5061;x=y>", "tel:+1-201", "tel:12;phone-context=a.b",
		"xmpp:a@b/c", "sip:%41@x", "sip:a@[::1]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Canonical(s)
		if err != nil {
			return
		}
		// Canonical forms are fixed points and within the length bound.
		c2, err := Canonical(c)
		if err != nil || c2 != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical(%q) = %q, %v", s, c, c, c2, err)
		}
		if len(c) > MaxAORLength {
			t.Fatalf("canonical %q too long", c)
		}
	})
}

// TestCanonicalAllocs: an AOR already in canonical form (as every AOR a
// replica checks is) comes back as it is, without a new string or a split
// of its host; one that is not is still rewritten.
func TestCanonicalAllocs(t *testing.T) {
	for _, aor := range []string{"sip:alice@atlanta.example", "sips:bob@biloxi.example.com", "priv:abcdefgh@biloxi.example"} {
		if got, err := Canonical(aor); err != nil || got != aor {
			t.Fatalf("Canonical(%q) = %q, %v", aor, got, err)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = Canonical(aor) }); n != 0 {
			t.Errorf("Canonical(%q): %.0f allocations, want 0", aor, n)
		}
	}
	for in, want := range map[string]string{
		"SIP:Alice@Atlanta.Example:5060;transport=tcp": "sip:alice@atlanta.example",
		"<sip:bob@biloxi.example.>":                    "sip:bob@biloxi.example",
		"sip:carol:secret@chicago.example":             "sip:carol@chicago.example",
	} {
		if got, err := Canonical(in); err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
