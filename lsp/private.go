package lsp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"hash"
	"strings"
)

// Private records (Config.PrivateRecords). A replica stores what it needs
// to place, order, expire and check a binding, and nothing that names the
// AOR or where it is reachable:
//
//   - the record's name is priv:<hash of the canonical AOR>@<domain>: the
//     domain stays in clear, for the replica checks the signer may write it;
//   - each binding's identity (instance or Contact) and Call-ID become
//     keyed hashes (the wire Contact and Call-ID fields), so the replica
//     still merges a binding's versions and orders a registration's CSeqs;
//   - expiry, timestamp, CSeq and removal stay in clear (expiry, ordering);
//   - the binding itself (the whole signed content, AOR included) is
//     sealed with AES-256-GCM under a key derived from the canonical AOR, in
//     the wire content's field 13, and the signature covers the ciphertext.
//
// A reader who knows the AOR derives the name and the keys, fetches by
// name, verifies as always, and opens what it merged: a sealed binding
// that does not open, or whose clear fields disagree with what it seals,
// is dropped like a forgery. The keys come from the AOR alone (a fast
// hash): whoever can guess an AOR can read its record, and a replica can
// test guesses against the names it holds (docs/security.md).

// privatePrefix starts a private record's name.
const privatePrefix = "priv:"

// maxSealed bounds a sealed binding: a whole content (its URIs and short
// fields at their limits) plus the nonce and tag.
const maxSealed = 12 << 10

// hiddenLen is the length of a hidden identity or Call-ID, "~" and 26
// base32 characters (128 bits).
const hiddenLen = 27

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// sealer hides and opens the record of one canonical AOR. One goroutine
// uses it at a time (each read or write makes its own).
type sealer struct {
	aor  string // canonical
	name string // what replicas store it under
	aead cipher.AEAD
	mac  []byte    // key of the hidden identities and Call-IDs
	h    hash.Hash // HMAC under mac, made once and reset per use
	// sealed: what this sealer hid, each entry's sealed bytes with its
	// content and clear fields, so open knows its own entries when a
	// write's replies bring them back (a REGISTER's 200 lists the
	// record) without decrypting them or hashing their fields again.
	sealed []hiddenEntry
}

// hiddenEntry is one entry a sealer hid: its sealed bytes, the content
// they seal, and the clear fields it got.
type hiddenEntry struct {
	sealed, plain []byte
	clear         Binding
	removed       bool
}

// derive returns the 32-byte value for purpose from a canonical AOR.
func derive(purpose, canon string) []byte {
	h := sha256.New()
	h.Write([]byte("lsnode private record v1\x00" + purpose + "\x00"))
	h.Write([]byte(canon))
	return h.Sum(nil)
}

// privateName returns the name a private record of canon is stored under,
// and false for an AOR no domain writes (a global tel: number: only its
// own certificate can write it, and the replica checks that in clear) or
// whose domain is too long for a name (over 218 characters).
func privateName(canon string) (string, bool) {
	d := Domain(canon)
	if d == "" {
		return "", false
	}
	if i := strings.LastIndexByte(canon, '@'); i >= 0 && !strings.HasPrefix(canon, "tel:") {
		d = canon[i+1:] // an IPv6 literal keeps its brackets: the name stays canonical
	}
	name := privatePrefix + strings.ToLower(b32.EncodeToString(derive("name", canon)[:20])) + "@" + d
	return name, len(name) <= MaxAORLength
}

// isPrivateName reports whether aor (canonical) names a private record.
func isPrivateName(aor string) bool { return strings.HasPrefix(aor, privatePrefix) }

// sealerFor returns the sealer of canon, or nil when records are not
// private or canon has no private form.
func sealerFor(private bool, canon string) *sealer {
	if !private {
		return nil
	}
	name, ok := privateName(canon)
	if !ok {
		return nil
	}
	block, err := aes.NewCipher(derive("key", canon))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &sealer{aor: canon, name: name, aead: aead, mac: derive("id", canon)}
}

// recordOf returns the canonical form of aor and the sealer of its record
// (nil: kept in clear).
func recordOf(private bool, aor string) (string, *sealer, error) {
	canon, err := Canonical(aor)
	if err != nil {
		return "", nil, err
	}
	return canon, sealerFor(private, canon), nil
}

// nameOf returns what canon's record is stored under: its private name
// with a sealer, canon itself without.
func (k *sealer) nameOf(canon string) string {
	if k == nil {
		return canon
	}
	return k.name
}

// hidden returns the keyed hash of one field value of kind.
func (k *sealer) hidden(kind, v string) string {
	if k.h == nil {
		k.h = hmac.New(sha256.New, k.mac)
	} else {
		k.h.Reset()
	}
	k.h.Write([]byte(kind))
	k.h.Write([]byte{0})
	k.h.Write([]byte(v))
	var sum [sha256.Size]byte
	return "~" + strings.ToLower(b32.EncodeToString(k.h.Sum(sum[:0])[:16]))
}

// hide turns an unsigned entry of k's AOR into its private form, in place.
func (k *sealer) hide(e *entry) {
	if k == nil {
		return
	}
	plain := e.content()
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail
	}
	e.sealed = k.aead.Seal(nonce, nonce, plain, []byte(k.name))
	b := Binding{Contact: k.hidden("id", e.B.ID()), Expires: e.B.Expires, CSeq: e.B.CSeq, Timestamp: e.B.Timestamp}
	if e.B.CallID != "" {
		b.CallID = k.hidden("call-id", e.B.CallID)
	}
	e.AOR, e.B = k.name, b
	k.sealed = append(k.sealed, hiddenEntry{sealed: bytes.Clone(e.sealed), plain: plain, clear: b, removed: e.Removed})
}

// hideAll hides every entry of es.
func (k *sealer) hideAll(es []*entry) {
	for _, e := range es {
		k.hide(e)
	}
}

// open returns the binding e seals, as an entry of k's AOR keeping e's
// signature fields, or an error when it does not open or disagrees with
// e's clear fields. A nil sealer returns e.
func (k *sealer) open(e *entry) (*entry, error) {
	if k == nil {
		return e, nil
	}
	n := k.aead.NonceSize()
	if e.AOR != k.name || len(e.sealed) < n {
		return nil, fmt.Errorf("%w: not a sealed binding of this record", ErrInvalid)
	}
	if h := k.hid(e); h != nil { // one of ours, clear fields and all
		o := &entry{}
		if err := o.decodeContent(h.plain, false); err != nil { // the sealer's, shared by every open
			return nil, err
		}
		if err := o.B.validate(); err != nil {
			return nil, err
		}
		o.CertFP, o.Sig, o.Proof, o.Index, o.leaf = e.CertFP, e.Sig, e.Proof, e.Index, e.leaf
		return o, nil
	}
	plain, err := k.aead.Open(nil, e.sealed[:n], e.sealed[n:], []byte(k.name))
	if err != nil {
		return nil, fmt.Errorf("%w: sealed binding does not open", ErrInvalid)
	}
	o := &entry{}
	if err := o.decodeContent(plain, true); err != nil {
		return nil, err
	}
	if err := o.B.validate(); err != nil {
		return nil, err
	}
	callID := ""
	if o.B.CallID != "" {
		callID = k.hidden("call-id", o.B.CallID)
	}
	if o.AOR != k.aor || len(o.sealed) > 0 || o.Removed != e.Removed || e.B.Contact != k.hidden("id", o.B.ID()) ||
		e.B.CallID != callID || o.B.CSeq != e.B.CSeq || !o.B.Expires.Equal(e.B.Expires) || !o.B.Timestamp.Equal(e.B.Timestamp) {
		return nil, fmt.Errorf("%w: sealed binding disagrees with its clear fields", ErrInvalid)
	}
	o.CertFP, o.Sig, o.Proof, o.Index, o.leaf = e.CertFP, e.Sig, e.Proof, e.Index, e.leaf
	return o, nil
}

// hid returns the entry this sealer hid that e is, sealed bytes and
// clear fields alike (then e opens to what it sealed, which open's checks
// passed when it was made), or nil.
func (k *sealer) hid(e *entry) *hiddenEntry {
	for i := range k.sealed {
		h := &k.sealed[i]
		if bytes.Equal(h.sealed, e.sealed) && h.removed == e.Removed && h.clear.Contact == e.B.Contact && h.clear.CallID == e.B.CallID &&
			h.clear.CSeq == e.B.CSeq && h.clear.Expires.Equal(e.B.Expires) && h.clear.Timestamp.Equal(e.B.Timestamp) {
			return h
		}
	}
	return nil
}

// openAll returns the bindings merged holds, opened and keyed by their own
// identity. A nil sealer returns merged as it is. Entries that do not
// open, and the entries that registrarOnly says carry a registrar's fields
// they may not (checked by replicas on records in clear), are dropped.
func (k *sealer) openAll(merged map[string]*entry, registrarOnly func(*entry) bool) map[string]*entry {
	if k == nil {
		return merged
	}
	out := make(map[string]*entry, len(merged))
	for _, e := range merged {
		o, err := k.open(e)
		if err != nil || (len(o.B.Path) > 0 || o.B.Received != "") && registrarOnly(o) {
			continue
		}
		out[o.B.ID()] = o
	}
	return out
}

// checkHidden is what a replica can check of a private entry: its wire
// identity and Call-ID are hidden values and it seals something. Records in
// clear carry no sealed content.
func checkHidden(e *entry) error {
	if !isPrivateName(e.AOR) {
		if len(e.sealed) > 0 {
			return fmt.Errorf("%w: sealed binding in a record in clear", ErrInvalid)
		}
		return nil
	}
	hiddenField := func(s string) bool {
		return len(s) == hiddenLen && s[0] == '~' && !strings.ContainsFunc(s[1:], func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7') })
	}
	switch {
	case len(e.sealed) == 0:
		return fmt.Errorf("%w: private record entry without a sealed binding", ErrInvalid)
	case !hiddenField(e.B.Contact) || e.B.CallID != "" && !hiddenField(e.B.CallID):
		return fmt.Errorf("%w: private record entry with a Contact or Call-ID in clear", ErrInvalid)
	case e.B.Instance != "" || e.B.RegID != 0 || len(e.B.Path) > 0 || e.B.Received != "" || e.B.Q != 0:
		return fmt.Errorf("%w: private record entry with a binding field in clear", ErrInvalid)
	}
	return nil
}
