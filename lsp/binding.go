package lsp

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Binding is one AOR→Contact binding (RFC 3261 §10).
type Binding struct {
	// Contact URI the AOR is reachable at.
	Contact string `json:"contact"`
	// Expires is the absolute expiry; the binding is never returned after it.
	Expires time.Time `json:"expires"`
	// Q is the contact's preference, 0..1 (0: unspecified).
	Q float64 `json:"q,omitempty"`
	// Instance is the RFC 5626 +sip.instance value; RegID its reg-id.
	Instance string `json:"instance,omitempty"`
	RegID    uint32 `json:"reg_id,omitempty"`
	// Path is the RFC 3327 Path header set, first hop first.
	Path []string `json:"path,omitempty"`
	// CallID and CSeq of the REGISTER that created the binding.
	CallID string `json:"call_id,omitempty"`
	CSeq   uint32 `json:"cseq,omitempty"`
	// Received is the source address (RFC 3581) the REGISTER came from.
	Received string `json:"received,omitempty"`
	// Timestamp is the registrar's write time; Publish sets it when zero.
	Timestamp time.Time `json:"timestamp"`
	// Signer is the subject of the certificate that signed the binding, set
	// on bindings returned by Lookup.
	Signer string `json:"signer,omitempty"`
}

// ID is the binding's identity within its AOR: the instance (and reg-id) if
// present (RFC 5626), else the Contact URI.
func (b Binding) ID() string {
	if b.Instance != "" {
		if b.RegID != 0 {
			return b.Instance + ";reg-id=" + strconv.FormatUint(uint64(b.RegID), 10)
		}
		return b.Instance
	}
	return b.Contact
}

// Field limits of a binding on the wire.
const (
	maxURILength   = 1024
	maxPathEntries = 8
	maxShortField  = 256
)

func (b Binding) validate() error {
	switch {
	case b.Contact == "":
		return fmt.Errorf("%w: empty contact", ErrInvalid)
	case len(b.Contact) > maxURILength:
		return fmt.Errorf("%w: contact longer than %d", ErrTooLarge, maxURILength)
	case len(b.Path) > maxPathEntries:
		return fmt.Errorf("%w: more than %d Path entries", ErrTooLarge, maxPathEntries)
	case len(b.Instance) > maxShortField || len(b.CallID) > maxShortField || len(b.Received) > maxShortField:
		return fmt.Errorf("%w: instance, call-id or received longer than %d", ErrTooLarge, maxShortField)
	case b.Q < 0 || b.Q > 1 || math.IsNaN(b.Q):
		return fmt.Errorf("%w: q %v outside 0..1", ErrInvalid, b.Q)
	}
	for _, p := range b.Path {
		if p == "" || len(p) > maxURILength {
			return fmt.Errorf("%w: bad Path entry", ErrInvalid)
		}
	}
	// Each of these goes into a SIP message as it is (a Request-URI, a
	// Route, a Contact of a 302): a control character (CR LF) would end a
	// header there and start one of the signer's choosing.
	for _, f := range append([]string{b.Contact, b.Instance, b.CallID, b.Received}, b.Path...) {
		if strings.ContainsFunc(f, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%w: control character in a binding", ErrInvalid)
		}
	}
	return nil
}

// entry is a binding as stored and sent: the AOR it belongs to, the binding,
// whether it is a tombstone, and the proof that a domain signed it.
type entry struct {
	AOR     string
	B       Binding
	Removed bool
	// sealed is a private record's binding, encrypted (private.go); nil
	// for a record in clear.
	sealed []byte

	CertFP [32]byte   // SHA-256 of the signing leaf certificate (DER)
	Sig    []byte     // signature over the batch's Merkle root
	Proof  [][32]byte // Merkle inclusion path, leaf level first
	Index  uint64     // leaf index in the batch

	raw  []byte   // signed content as received or sealed
	leaf [32]byte // hash of raw
	wire []byte   // encoded entry, once signed or decoded
	// unchecked (atomic; 1: yes): a replica took e without checking its
	// root signature (from its holder, see holder.go, or loaded from disk)
	// and checks it before handing e to anyone (Service.vetted).
	unchecked uint32
}

// newer reports whether e supersedes o (two entries of one binding).
// Within one registration Call-ID, RFC 3261 §10.3 step 7 orders them: the
// higher CSeq wins, a removal beats its binding, and of two writes of the
// same CSeq the first stays (the later one is a replay or arrived out of
// order). Otherwise the last writer wins by timestamp. Ties are broken by
// the signed content's hash so every replica agrees.
//
// Without the Call-ID rule a REGISTER refused as out of order by the
// replicas that already held the newer CSeq could still land on one that
// had not received it yet, and win every merge with its later timestamp.
func (e *entry) newer(o *entry) bool {
	if e.B.CallID != "" && e.B.CallID == o.B.CallID {
		if e.B.CSeq != o.B.CSeq {
			return e.B.CSeq > o.B.CSeq
		}
		if e.Removed != o.Removed {
			return e.Removed
		}
		if !e.Removed && !e.B.Timestamp.Equal(o.B.Timestamp) {
			return e.B.Timestamp.Before(o.B.Timestamp)
		}
	}
	if !e.B.Timestamp.Equal(o.B.Timestamp) {
		return e.B.Timestamp.After(o.B.Timestamp)
	}
	if e.B.CSeq != o.B.CSeq {
		return e.B.CSeq > o.B.CSeq
	}
	return bytes.Compare(e.leaf[:], o.leaf[:]) > 0
}

// live reports whether e is a binding to return at time now.
func (e *entry) live(now time.Time) bool { return !e.Removed && e.B.Expires.After(now) }
