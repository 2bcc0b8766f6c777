package sipnet

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRemoveHeaders: every Path goes, however its name is written, and
// nothing else; a name is matched in ASCII case only.
func TestRemoveHeaders(t *testing.T) {
	raw := "REGISTER sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:a@a>\r\n" +
		"Call-ID: c\r\nCSeq: 1 REGISTER\r\nPath: <sip:p1;lr>\r\npath: <sip:p2;lr>\r\nPATH: <sip:p3;lr>\r\nX-Path: x\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	if n := RemoveHeaders(req, "Path"); n != 3 {
		t.Fatalf("removed %d, want 3", n)
	}
	if hs := req.GetHeaders("Path"); len(hs) != 0 {
		t.Fatalf("left %v", hs)
	}
	if req.GetHeader("X-Path") == nil || req.CallID() == nil {
		t.Fatal("removed another header")
	}
	for _, c := range []struct {
		got, name string
		want      bool
	}{
		{"Supported", "supported", true},
		{"SUPPORTED", "Supported", true},
		{"ſupported", "supported", false}, // U+017F folds to s in Unicode, not in SIP
		{"Supporte", "Supported", false},
		{"k", "K", true},
	} {
		if got := HeaderNameIs(c.got, c.name); got != c.want {
			t.Errorf("HeaderNameIs(%q, %q) = %v", c.got, c.name, got)
		}
	}
}
