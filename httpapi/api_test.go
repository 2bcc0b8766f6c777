package httpapi

import (
	"strings"
	"testing"
	"time"
)

// FuzzAPIBinding: a publish body either decodes into a binding within the
// API's bounds, or into a removal of a contact ("expires": 0), or is
// refused with a reason; never a panic.
func FuzzAPIBinding(f *testing.F) {
	f.Add(`{"contact": "sip:alice@192.0.2.7:5060", "expires": 600, "q": 0.5}`)
	f.Add(`{"contact": "sip:a@b", "expires": 604800, "path": ["<sip:p;lr>"], "reg_id": 1, "instance": "<urn:uuid:1>"}`)
	f.Add(`{"contact": "", "expires": 1}`)
	f.Add(`{"contact": "sip:a@b", "expires": 60, "q": 1e309}`)
	f.Add(`{"contact": "sip:a@b", "expires": 60} {"x": 1}`)
	f.Add(`[]`)
	f.Add(`{"contact": "sip:a@b", "expires": 0}`)
	f.Add(`{"contact": "sip:a@b"}`)
	f.Add(`{"contact": "sip:a@b", "expires": null}`)
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, body string) {
		b, remove, err := decodeBinding(strings.NewReader(body), now)
		if err != nil {
			return
		}
		if remove {
			if strings.TrimSpace(b.Contact) == "" {
				t.Fatalf("accepted %q as a removal of no contact", body)
			}
			return
		}
		if strings.TrimSpace(b.Contact) == "" || !b.Expires.After(now) || b.Expires.Sub(now) > 7*24*time.Hour || b.Q < 0 || b.Q > 1 {
			t.Fatalf("accepted %q as %+v", body, b)
		}
	})
}
