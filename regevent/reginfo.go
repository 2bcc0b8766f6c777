package regevent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lsnode/lsnode/lsp"
)

// ContentType is the reg event package's body type (RFC 3680 §5).
const ContentType = "application/reginfo+xml"

// The registration information document (RFC 3680 §5.1), full state.
type reginfo struct {
	XMLName      xml.Name       `xml:"urn:ietf:params:xml:ns:reginfo reginfo"`
	Version      uint64         `xml:"version,attr"`
	State        string         `xml:"state,attr"`
	Registration []registration `xml:"registration"`
}

type registration struct {
	AOR     string    `xml:"aor,attr"`
	ID      string    `xml:"id,attr"`
	State   string    `xml:"state,attr"`
	Contact []contact `xml:"contact"`
}

type contact struct {
	ID      string `xml:"id,attr"`
	State   string `xml:"state,attr"`
	Event   string `xml:"event,attr"`
	Expires uint64 `xml:"expires,attr"`
	Q       string `xml:"q,attr,omitempty"`
	CallID  string `xml:"callid,attr,omitempty"`
	CSeq    uint32 `xml:"cseq,attr,omitempty"`
	URI     string `xml:"uri"`
}

// document is the full state of aor's registration, version v: its live
// bindings (state "init" when it never had one here, "terminated" when
// it had and has none now), and once, as terminated contacts (RFC 3680
// §5.3), the bindings of the last document (last, by ID) that are not live
// now: "expired" when their expiry has passed, else "unregistered". It
// returns the document and its live bindings by ID (the next one's last).
func document(aor string, v uint64, bs []lsp.Binding, last map[string]lsp.Binding, had bool, now time.Time) ([]byte, map[string]lsp.Binding) {
	reg := registration{AOR: aor, ID: shortID("r", aor), State: "active"}
	live := map[string]lsp.Binding{}
	for _, b := range bs {
		left := math.Ceil(b.Expires.Sub(now).Seconds())
		if left <= 0 {
			continue
		}
		live[b.ID()] = b
		reg.Contact = append(reg.Contact, contactOf(aor, b, "active", "registered", uint64(left)))
	}
	var gone []contact
	for id, b := range last {
		if _, ok := live[id]; !ok {
			event := "unregistered"
			if !b.Expires.After(now) {
				event = "expired"
			}
			gone = append(gone, contactOf(aor, b, "terminated", event, 0))
		}
	}
	slices.SortFunc(gone, func(a, b contact) int { return strings.Compare(a.ID, b.ID) })
	reg.Contact = append(reg.Contact, gone...)
	switch {
	case len(live) > 0:
	case had:
		reg.State = "terminated"
	default:
		reg.State = "init"
	}
	out, err := xml.Marshal(reginfo{Version: v, State: "full", Registration: []registration{reg}})
	if err != nil { // strings and numbers only: cannot fail
		panic(err)
	}
	return append([]byte(xml.Header), out...), live
}

// contactOf is the contact element of binding b of aor.
func contactOf(aor string, b lsp.Binding, state, event string, expires uint64) contact {
	c := contact{ID: shortID("c", aor+"\x00"+b.ID()), State: state, Event: event, Expires: expires,
		CallID: b.CallID, CSeq: b.CSeq, URI: b.Contact}
	if b.Q > 0 {
		c.Q = strconv.FormatFloat(b.Q, 'f', -1, 64)
	}
	return c
}

// shortID is a stable identifier of s: the same binding keeps its id
// across notifications (RFC 3680 §5.2), and no id shows what it names.
func shortID(prefix, s string) string {
	h := sha256.Sum256([]byte(s))
	return prefix + hex.EncodeToString(h[:6])
}
