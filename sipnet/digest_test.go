package sipnet

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/icholy/digest"
)

// Authorization values as SIP UAs send them.
var digestSamples = []string{
	// sipp's [authentication]
	`Digest username="user1",realm="a.example",cnonce="6b8b4567",nc=00000001,qop=auth,uri="sip:a.example:5060",nonce="abc.def",response="0123456789abcdef0123456789abcdef",algorithm=MD5`,
	// baresip
	`Digest username="alice", realm="a.example", nonce="n1", uri="sip:a.example", response="d41d8cd98f00b204e9800998ecf8427e", algorithm=SHA-256, cnonce="0a4f113b", qop=auth, nc=0000000a`,
	// linphone (opaque, quoted algorithm kept as sent)
	`Digest realm="a.example", nonce="n2", algorithm=MD5, opaque="op", username="bob",  uri="sip:a.example", response="r", cnonce="c", nc=00000002, qop=auth`,
	// RFC 7616 userhash
	`Digest username="488869477bf257147b804c45308cd62ac4e25eb717b12b298c79e62dcea254ec", realm="api@example.org", uri="/doe.json", algorithm=SHA-512-256, nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", nc=00000001, cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v", qop=auth, response="ae66e67d6b427bd3f120414a82e4acff38e8ecd9101d6c861229025f607a79dd", opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", userhash=true`,
}

// TestParseDigestSamples: the credentials UAs send come out as
// icholy/digest read them.
func TestParseDigestSamples(t *testing.T) {
	for _, s := range digestSamples {
		got, err := ParseDigest(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		want, err := digest.ParseCredentials(s)
		if err != nil {
			t.Fatal(err)
		}
		if *got != *want {
			t.Fatalf("%s:\n got %+v\nwant %+v", s, *got, *want)
		}
	}
}

// TestParseDigestForms: what the grammar allows beyond those, and what it
// refuses.
func TestParseDigestForms(t *testing.T) {
	c, err := ParseDigest("digest\tUserName = \"a\\\"b\\\\c\\\td\" ,\tREALM=r.example,nonce=\"\",x-ext=\"ignored, really\",nc=000000FF,userhash=TRUE")
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "a\"b\\c\td" || c.Realm != "r.example" || c.Nonce != "" || c.Nc != 255 || !c.Userhash {
		t.Fatalf("parsed %+v", *c)
	}
	for _, bad := range []string{
		"", "Digest", "Digest ", "Basic dXNlcjpwYXNz", "Digestusername=\"a\"",
		`Digest username="a", username="b"`, // twice: which one would a proxy have checked?
		`Digest username="a", USERNAME="b"`,
		`Digest username="a`, `Digest username="a\`, `Digest username`, `Digest username=`, `Digest =x`,
		`Digest username="a",`, `Digest username="a" realm="r"`, `Digest ,username="a"`,
		`Digest nc=zz`, `Digest nc=-1`, `Digest nc=100000000`, `Digest nc=+0000001`, `Digest nc=1`, `Digest username=a b`,
		"Digest username=\"a\nb\"", "Digest username=\"a\x00\"", "Digest username=\"a\\\r\"", "Digest username=\"\x7f\"",
	} {
		if c, err := ParseDigest(bad); !errors.Is(err, ErrDigest) {
			t.Errorf("%q parsed: %+v", bad, c)
		}
	}
}

// FuzzParseDigest: any value parses or is refused with ErrDigest, without
// a panic; a value both ParseDigest and icholy/digest's parser take (UTF-8,
// parameter names in lower case: it matches them in that case alone) comes
// out the same of both, and so do credentials icholy/digest formats.
func FuzzParseDigest(f *testing.F) {
	for _, s := range digestSamples {
		f.Add(s, "", "", "", 0)
	}
	f.Add(`Digest username="a\"b"`, "user\"x", "realm", "sip:a@b;x=\"y\"", 7)
	f.Add("Digest x=y", "ü", "", "\\", 1<<20)
	f.Fuzz(func(t *testing.T, raw, user, realm, uri string, nc int) {
		c, err := ParseDigest(raw)
		if err != nil && !errors.Is(err, ErrDigest) || err == nil && c == nil {
			t.Fatalf("%q: %v, %v", raw, c, err)
		}
		if theirs, errTheirs := digest.ParseCredentials(raw); err == nil && errTheirs == nil && utf8.ValidString(raw) &&
			strings.ToLower(raw[6:]) == raw[6:] && *c != *theirs {
			t.Fatalf("%q:\n ours   %+v\n theirs %+v", raw, *c, *theirs)
		}
		want := digest.Credentials{Username: user, Realm: realm, Nonce: "n", URI: uri, Response: "r", Algorithm: "MD5",
			Cnonce: "c", QOP: "auth", Nc: nc & 0x7fffffff, Opaque: realm}
		if strings.ContainsFunc(user+realm+uri, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return // quoted by Go as \n, \x00: not what a UA sends
		}
		s := want.String()
		theirs, errTheirs := digest.ParseCredentials(s)
		ours, err := ParseDigest(s)
		if errTheirs != nil {
			return
		}
		if err != nil {
			t.Fatalf("%q: %v (icholy/digest read %+v)", s, err, *theirs)
		}
		if *ours != *theirs {
			t.Fatalf("%q:\n ours   %+v\n theirs %+v", s, *ours, *theirs)
		}
	})
}
