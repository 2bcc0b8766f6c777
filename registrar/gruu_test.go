package registrar

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/sipnet"
)

var (
	pubGRUURe  = regexp.MustCompile(`;pub-gruu="([^"]+)"`)
	tempGRUURe = regexp.MustCompile(`;temp-gruu="([^"]+)"`)
)

// gruusOf returns the public and temporary GRUU the 200 gives the Contact
// at addr ("" for none).
func gruusOf(t *testing.T, cs []string, addr string) (pub, temp string) {
	t.Helper()
	for _, c := range cs {
		if !strings.Contains(c, addr) {
			continue
		}
		if m := pubGRUURe.FindStringSubmatch(c); m != nil {
			pub = m[1]
		}
		if m := tempGRUURe.FindStringSubmatch(c); m != nil {
			temp = m[1]
		}
		return pub, temp
	}
	t.Fatalf("no Contact at %s in %v", addr, cs)
	return "", ""
}

// tempBindings looks a temporary GRUU up as a proxy does: as an AOR.
func tempBindings(t *testing.T, r *Registrar, temp string) []lsp.Binding {
	t.Helper()
	bs, err := r.loc.Lookup(context.Background(), strings.TrimSuffix(temp, ";gr"))
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// TestGRUU: RFC 5627 GRUUs in the 200 of a REGISTER that asks for them,
// and the temporary GRUU's record in the location service living exactly
// as long as the registration it was issued for.
func TestGRUU(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	r.cfg.GRUUSecret = []byte("a.example gruu secret, 32 bytes.")
	alice := "sip:alice@a.example"
	inst1 := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"`
	inst2 := `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000002>"`
	phone, desk := "sip:alice@192.0.2.1:5060", "sip:alice@192.0.2.2:5060"

	// Without Supported: gruu, no GRUU (§5.1) and no record.
	res := do(r, register(t, alice, "p1", 1, "Contact: <"+phone+">"+inst1, "Expires: 600"))
	want(t, res, 200)
	if pub, temp := gruusOf(t, contacts(res), phone); pub != "" || temp != "" {
		t.Fatalf("GRUUs without Supported: gruu: %v", contacts(res))
	}
	res = do(r, register(t, alice, "p1", 2, "Contact: <"+phone+">"+inst1, "Expires: 600", "Supported: path, gruu"))
	want(t, res, 200)
	pub1, temp1 := gruusOf(t, contacts(res), phone)
	if pub1 != "sip:alice@a.example;gr=urn:uuid:00000000-0000-1000-8000-000000000001" {
		t.Fatalf("pub-gruu %q", pub1)
	}
	if !regexp.MustCompile(`^sip:tgruu\.[a-z2-7]{24}@a\.example;gr$`).MatchString(temp1) || strings.Contains(temp1, "alice") {
		t.Fatalf("temp-gruu %q", temp1)
	}
	if bs := tempBindings(t, r, temp1); len(bs) != 1 || bs[0].Contact != phone || bs[0].CallID != "" || strings.Contains(bs[0].Instance, "uuid") {
		t.Fatalf("temporary GRUU record %+v", bs)
	}
	// A refresh under the same Call-ID (compact form k) keeps it.
	res = do(r, register(t, alice, "p1", 3, "Contact: <"+phone+">"+inst1, "Expires: 600", "k: gruu"))
	want(t, res, 200)
	if _, temp := gruusOf(t, contacts(res), phone); temp != temp1 {
		t.Fatalf("refresh under one Call-ID: temp-gruu %q, was %q", temp, temp1)
	}
	// A second instance: both get public GRUUs; the temporary one is the
	// registering instance's alone, and another.
	res = do(r, register(t, alice, "d1", 1, "Contact: <"+desk+">"+inst2, "Expires: 600", "Supported: gruu"))
	want(t, res, 200)
	pubPhone, tempPhone := gruusOf(t, contacts(res), phone)
	pub2, temp2 := gruusOf(t, contacts(res), desk)
	if pubPhone != pub1 || tempPhone != "" || pub2 == pub1 || temp2 == "" || temp2 == temp1 {
		t.Fatalf("second instance: %v", contacts(res))
	}
	// The phone reboots (a new Call-ID): a new temporary GRUU, the old one gone.
	res = do(r, register(t, alice, "p2", 1, "Contact: <"+phone+">"+inst1, "Expires: 600", "Supported: gruu"))
	want(t, res, 200)
	_, temp3 := gruusOf(t, contacts(res), phone)
	if temp3 == "" || temp3 == temp1 {
		t.Fatalf("after a new Call-ID: temp-gruu %q (was %q)", temp3, temp1)
	}
	if bs := tempBindings(t, r, temp1); len(bs) != 0 {
		t.Fatalf("the replaced registration's temporary GRUU still resolves: %+v", bs)
	}
	// The desk phone unregisters: its temporary GRUU goes with it.
	want(t, do(r, register(t, alice, "d1", 2, "Contact: <"+desk+">"+inst2+";expires=0")), 200)
	if bs := tempBindings(t, r, temp2); len(bs) != 0 {
		t.Fatalf("unregistered instance's temporary GRUU resolves: %+v", bs)
	}
	if bs := tempBindings(t, r, temp3); len(bs) != 1 {
		t.Fatalf("the phone's temporary GRUU: %+v", bs)
	}
	// A refresh under another Call-ID that does not ask for GRUUs still
	// ends the last registration's temporary GRUU (no orphan records).
	want(t, do(r, register(t, alice, "p3", 1, "Contact: <"+phone+">"+inst1, "Expires: 600")), 200)
	if bs := tempBindings(t, r, temp3); len(bs) != 0 {
		t.Fatalf("temporary GRUU of a replaced registration: %+v", bs)
	}
	res = do(r, register(t, alice, "p3", 2, "Contact: <"+phone+">"+inst1, "Expires: 600", "Supported: gruu"))
	want(t, res, 200)
	_, temp3 = gruusOf(t, contacts(res), phone)
	// Contact: * ends them all.
	want(t, do(r, register(t, alice, "x1", 1, "Contact: *", "Expires: 0")), 200)
	if bs := tempBindings(t, r, temp3); len(bs) != 0 {
		t.Fatalf("temporary GRUU after Contact *: %+v", bs)
	}
	// A GRUU is never registered: not a temporary one (which would take
	// it over), not a public one.
	for _, to := range []string{strings.TrimSuffix(temp3, ";gr"), "sip:TGRUU.x@a.example", "sip:%74gruu.x@a.example", pub1,
		"sip:alice@a.example;GR=urn:x"} {
		want(t, do(r, register(t, to, "z1", 1, "Contact: <sip:mallory@192.0.2.66>", "Expires: 600")), 403)
	}
}

// TestTempGRUUKeyed: a temporary GRUU depends on the secret, AOR,
// instance and Call-ID; two domains' registrars (two secrets) never make
// the same one, and no part of the AOR shows.
func TestTempGRUUKeyed(t *testing.T) {
	s1, s2 := []byte("0123456789abcdef0123"), []byte("fedcba9876543210fedc")
	base := tempAOR(s1, "a.example", "sip:alice@a.example", "<urn:x>", "c1")
	for _, other := range []string{
		tempAOR(s2, "a.example", "sip:alice@a.example", "<urn:x>", "c1"),
		tempAOR(s1, "a.example", "sip:bob@a.example", "<urn:x>", "c1"),
		tempAOR(s1, "a.example", "sip:alice@a.example", "<urn:y>", "c1"),
		tempAOR(s1, "a.example", "sip:alice@a.example", "<urn:x>", "c2"),
		// The fields are delimited: moving a byte from one to the next
		// makes another.
		tempAOR(s1, "a.example", "sip:alice@a.example", "<urn:x>c", "1"),
	} {
		if other == base {
			t.Fatalf("%s made twice", base)
		}
	}
	if tempAOR(s1, "a.example", "sip:alice@a.example", "<urn:x>", "c1") != base {
		t.Fatal("not deterministic")
	}
}

func TestInstanceGR(t *testing.T) {
	for in, want := range map[string]string{
		"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>": "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		"<urn:x;y=1>":  "urn:x%3By%3D1",
		"<a b\"c>":     "a%20b%22c",
		"no-brackets!": "no-brackets!",
	} {
		if got := sipnet.InstanceGR(in); got != want {
			t.Errorf("InstanceGR(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTempGRUUFlows: an instance with two flows (RFC 5626 reg-id) has one
// temporary GRUU reaching both; one flow ending leaves the other.
func TestTempGRUUFlows(t *testing.T) {
	r := newTestRegistrar(t, false, nil)
	r.cfg.GRUUSecret = []byte("a.example gruu secret, 32 bytes.")
	alice, inst := "sip:alice@a.example", `;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000000000001>"`
	res := do(r, register(t, alice, "f1", 1, "Contact: <sip:alice@192.0.2.1:5060>"+inst+";reg-id=1, <sip:alice@192.0.2.1:5062>"+inst+";reg-id=2",
		"Expires: 600", "Supported: gruu"))
	want(t, res, 200)
	_, temp1 := gruusOf(t, contacts(res), "192.0.2.1:5060")
	_, temp2 := gruusOf(t, contacts(res), "192.0.2.1:5062")
	if temp1 == "" || temp1 != temp2 {
		t.Fatalf("flows' temporary GRUUs %q, %q", temp1, temp2)
	}
	if bs := tempBindings(t, r, temp1); len(bs) != 2 {
		t.Fatalf("temporary GRUU record %+v", bs)
	}
	want(t, do(r, register(t, alice, "f1", 2, "Contact: <sip:alice@192.0.2.1:5062>"+inst+";reg-id=2;expires=0")), 200)
	if bs := tempBindings(t, r, temp1); len(bs) != 1 || bs[0].Contact != "sip:alice@192.0.2.1:5060" {
		t.Fatalf("after one flow ended: %+v", bs)
	}
}

// TestSupportsGRUU: the gruu option tag is found in Supported in any case
// and in its compact form k, among other tags; not elsewhere.
func TestSupportsGRUU(t *testing.T) {
	for _, c := range []struct {
		header string
		want   bool
	}{
		{"Supported: path, gruu", true},
		{"supported: GRUU", true},
		{"k: outbound,gruu", true},
		{"Supported: path, outbound", false},
		{"Require: gruu", false},
		{"X-Supported: gruu", false},
	} {
		req := register(t, "sip:alice@a.example", "sg", 1, "Contact: <sip:alice@192.0.2.9:5060>", c.header)
		if got := supportsGRUU(req); got != c.want {
			t.Errorf("%q: %v, want %v", c.header, got, c.want)
		}
	}
}
