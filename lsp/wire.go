package lsp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Wire format. Messages use the protobuf encoding (decoded by hand, unknown
// fields skipped) inside varint-length-prefixed frames.
//
//	message  {1: version=1, 2: type, 3: status, 4: error, 5: repeated cert DER,
//	          6: repeated entry, 7: repeated aor, 8: count, 9: repeated aor
//	          over its record quota (reply to REGISTER), 10: the sender's
//	          holder proof (STORE, REGISTER: fingerprint, then signature)}
//	types    1 STORE, 2 FETCH, 7 REGISTER, 9 WATCH (replica protocol); 3 PUT, 4 GET,
//	         6 INFO, 8 RELAYS (client protocol); 5 REPLY (status, error text, entries,
//	         certs, count; to a REGISTER: the records of the accepted AORs
//	         and, as aors, the AORs refused as out of order)
//	entry    {1: signed content (bytes), 2: cert fingerprint, 3: signature,
//	          4: repeated merkle sibling, 5: leaf index}
//	content  {1: aor, 2: contact, 3: expires unix ms, 4: q×1000, 5: instance,
//	          6: reg-id, 7: repeated path, 8: call-id, 9: cseq, 10: received,
//	          11: timestamp unix ns, 12: removed, 13: sealed binding of a
//	          private record (private.go)}
//
// The signed content is re-encoded deterministically by the signer, and its
// SHA-256 (with a leaf prefix) is the Merkle leaf.
const wireVersion = 1

type msgType uint64

const (
	msgStore msgType = iota + 1 // replica: store entries
	msgFetch                    // replica: entries of AORs
	msgPut                      // client: publish entries (node replicates)
	msgGet                      // client: merged read of AORs
	msgReply
	msgInfo     // client: overlay size estimate (reply Count)
	msgRegister // replica: conditional store; reply carries the AORs' records
	msgRelays   // client: relays announced in the overlay (reply aors: "peer-id service")
	msgWatch    // replica: answer when the AOR's record is past a version (watch.go; reply Count)
)

// Limits applied while decoding, before anything is allocated for a field.
const (
	DefaultMaxMessage = 1 << 20
	maxEntries        = 4096
	maxCerts          = 64 // a batched FETCH's reply (batch.go) carries its AORs' chains
	maxCertSize       = 8 << 10
	maxSigSize        = 256
	maxProofDepth     = 32
	maxAORs           = 1024
	maxErrorText      = 1024
)

type message struct {
	Type    msgType
	Status  uint64
	Error   string
	Certs   [][]byte
	Entries []*entry
	AORs    []string
	Count   uint64
	Quota   []string // in a reply to REGISTER: AORs refused by the record quota
	Holder  []byte   // the sender's holder proof (holder.go), on STORE and REGISTER
}

func (m *message) encode() []byte {
	b, start := m.appendFrame(nil)
	return b[start:]
}

// frame is encode with the varint length prefix of a stream frame, built in
// one buffer.
func (m *message) frame() []byte { return m.frameIn(nil) }

// frameIn is frame built in buf when it has the room (a buffer the caller
// reuses once the frame is written), in a new one otherwise.
func (m *message) frameIn(buf []byte) []byte {
	b, _ := m.appendFrame(buf)
	n := len(b) - binary.MaxVarintLen64
	var pre [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(pre[:], uint64(n))
	start := binary.MaxVarintLen64 - k
	copy(b[start:], pre[:k])
	return b[start:]
}

// appendFrame encodes m after binary.MaxVarintLen64 reserved bytes, into
// buf if it has the room, else into a buffer sized once. It returns the
// buffer and where the message starts.
func (m *message) appendFrame(buf []byte) ([]byte, int) {
	entries := make([][]byte, len(m.Entries))
	size := 4*binary.MaxVarintLen64 + len(m.Error) + binary.MaxVarintLen64
	for i, e := range m.Entries {
		entries[i] = e.encode()
		size += len(entries[i]) + 1 + binary.MaxVarintLen64
	}
	for _, c := range m.Certs {
		size += len(c) + 1 + binary.MaxVarintLen64
	}
	for _, a := range m.AORs {
		size += len(a) + 1 + binary.MaxVarintLen64
	}
	for _, a := range m.Quota {
		size += len(a) + 1 + binary.MaxVarintLen64
	}
	size += len(m.Holder) + 1 + binary.MaxVarintLen64
	var b []byte
	if cap(buf) >= binary.MaxVarintLen64+size {
		b = buf[:binary.MaxVarintLen64]
	} else {
		b = make([]byte, binary.MaxVarintLen64, binary.MaxVarintLen64+size)
	}
	b = appendUint(b, 1, wireVersion)
	b = appendUint(b, 2, uint64(m.Type))
	if m.Status != 0 {
		b = appendUint(b, 3, m.Status)
	}
	if m.Error != "" {
		b = appendString(b, 4, m.Error)
	}
	for _, c := range m.Certs {
		b = appendBytes(b, 5, c)
	}
	for _, raw := range entries {
		b = appendBytes(b, 6, raw)
	}
	for _, a := range m.AORs {
		b = appendString(b, 7, a)
	}
	if m.Count != 0 {
		b = appendUint(b, 8, m.Count)
	}
	for _, a := range m.Quota {
		b = appendString(b, 9, a)
	}
	if len(m.Holder) > 0 {
		b = appendBytes(b, 10, m.Holder)
	}
	return b, binary.MaxVarintLen64
}

// decodeMessage decodes one message. What it keeps it copies (entries,
// certificates, the holder proof, strings), so the caller may reuse b as
// soon as it returns.
func decodeMessage(b []byte) (*message, error) {
	m := &message{}
	version := uint64(0)
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch num {
		case 1:
			version = u
		case 2:
			m.Type = msgType(u)
		case 3:
			m.Status = u
		case 4:
			if len(v) > maxErrorText {
				v = v[:maxErrorText]
			}
			m.Error = string(v)
		case 5:
			if len(m.Certs) >= maxCerts || len(v) > maxCertSize {
				return fmt.Errorf("%w: certificates", ErrTooLarge)
			}
			m.Certs = append(m.Certs, bytes.Clone(v))
		case 6:
			if len(m.Entries) >= maxEntries {
				return fmt.Errorf("%w: more than %d entries", ErrTooLarge, maxEntries)
			}
			e, err := decodeEntry(v)
			if err != nil {
				return err
			}
			m.Entries = append(m.Entries, e)
		case 7:
			if len(m.AORs) >= maxAORs || len(v) > 2*MaxAORLength {
				return fmt.Errorf("%w: AOR list", ErrTooLarge)
			}
			m.AORs = append(m.AORs, string(v))
		case 8:
			m.Count = u
		case 9:
			if len(m.Quota) >= maxAORs || len(v) > 2*MaxAORLength {
				return fmt.Errorf("%w: quota list", ErrTooLarge)
			}
			m.Quota = append(m.Quota, string(v))
		case 10:
			if len(v) > holderProofSize {
				return fmt.Errorf("%w: holder proof", ErrTooLarge)
			}
			m.Holder = bytes.Clone(v)
		}
		return nil
	}, ".vvvbbbbvbb")
	if err != nil {
		return nil, err
	}
	if version != wireVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrMalformed, version)
	}
	if m.Type < msgStore || m.Type > msgWatch {
		return nil, fmt.Errorf("%w: unknown message type %d", ErrMalformed, m.Type)
	}
	return m, nil
}

// content encodes the signed fields of e deterministically.
func (e *entry) content() []byte {
	b := make([]byte, 0, 128+len(e.AOR)+len(e.B.Contact)+len(e.sealed))
	b = appendString(b, 1, e.AOR)
	b = appendString(b, 2, e.B.Contact)
	b = appendUint(b, 3, uint64(e.B.Expires.UnixMilli()))
	if q := uint64(math.Round(e.B.Q * 1000)); q != 0 {
		b = appendUint(b, 4, q)
	}
	if e.B.Instance != "" {
		b = appendString(b, 5, e.B.Instance)
	}
	if e.B.RegID != 0 {
		b = appendUint(b, 6, uint64(e.B.RegID))
	}
	for _, p := range e.B.Path {
		b = appendString(b, 7, p)
	}
	if e.B.CallID != "" {
		b = appendString(b, 8, e.B.CallID)
	}
	if e.B.CSeq != 0 {
		b = appendUint(b, 9, uint64(e.B.CSeq))
	}
	if e.B.Received != "" {
		b = appendString(b, 10, e.B.Received)
	}
	b = appendUint(b, 11, uint64(e.B.Timestamp.UnixNano()))
	if e.Removed {
		b = appendUint(b, 12, 1)
	}
	if len(e.sealed) > 0 {
		b = appendBytes(b, 13, e.sealed)
	}
	return b
}

func leafHash(content []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(content)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// seal fixes the signed content of a new entry and its leaf hash.
func (e *entry) seal() {
	e.raw = e.content()
	e.leaf = leafHash(e.raw)
	e.wire = nil
}

// encode returns the entry's wire form: cached for signed and decoded
// entries (they are immutable), built otherwise.
func (e *entry) encode() []byte {
	if e.wire != nil {
		return e.wire
	}
	if e.raw == nil {
		e.seal()
	}
	c := e.raw
	b := make([]byte, 0, len(c)+len(e.Sig)+33*len(e.Proof)+48)
	b = appendBytes(b, 1, c)
	b = appendBytes(b, 2, e.CertFP[:])
	b = appendBytes(b, 3, e.Sig)
	for i := range e.Proof {
		b = appendBytes(b, 4, e.Proof[i][:])
	}
	if e.Index != 0 {
		b = appendUint(b, 5, e.Index)
	}
	return b
}

// decodeEntry decodes one entry from a copy of b, so a stored entry keeps
// its own bytes and not the whole message it came in.
func decodeEntry(b []byte) (*entry, error) {
	b = bytes.Clone(b)
	e := &entry{wire: b}
	var content []byte
	haveFP := false
	var proof [maxProofDepth][32]byte // copied out at its length: one exact allocation
	depth := 0
	err := walk(b, func(num protowire.Number, _ protowire.Type, v []byte, u uint64) error {
		switch num {
		case 1:
			content = v
		case 2:
			if len(v) != 32 {
				return fmt.Errorf("%w: certificate fingerprint of %d bytes", ErrMalformed, len(v))
			}
			copy(e.CertFP[:], v)
			haveFP = true
		case 3:
			if len(v) > maxSigSize {
				return fmt.Errorf("%w: signature", ErrTooLarge)
			}
			e.Sig = v
		case 4:
			if len(v) != 32 || depth >= maxProofDepth {
				return fmt.Errorf("%w: merkle path", ErrMalformed)
			}
			proof[depth] = [32]byte(v)
			depth++
		case 5:
			e.Index = u
		}
		return nil
	}, ".bbbbv")
	if err != nil {
		return nil, err
	}
	if content == nil || !haveFP || len(e.Sig) == 0 {
		return nil, fmt.Errorf("%w: entry lacks content, fingerprint or signature", ErrMalformed)
	}
	if depth > 0 {
		e.Proof = slices.Clone(proof[:depth])
	}
	if e.Index >= 1<<len(e.Proof) {
		return nil, fmt.Errorf("%w: leaf index %d beyond a path of %d", ErrMalformed, e.Index, len(e.Proof))
	}
	if err := e.decodeContent(content, true); err != nil {
		return nil, err
	}
	e.raw = content
	e.leaf = leafHash(content)
	return e, nil
}

// decodeContent decodes an entry's signed fields from b. With own, b is
// the entry's alone and never written again (decodeEntry's copy, a freshly
// opened binding): its strings then point into b instead of each taking a
// copy, four or five allocations fewer per entry (every replica decodes
// every entry of a REGISTER it holds). b stays as long as any of them, and
// b can be far larger than they are (a sender may pad an entry with unknown
// fields up to a message's size): a string that outlives its entry is
// copied where it leaves it (keyOf, ownBinding, the certificate's domains).
func (e *entry) decodeContent(b []byte, own bool) error {
	var expires, ts, q uint64
	var haveAOR, haveExp, haveTS bool
	err := walk(b, func(num protowire.Number, _ protowire.Type, v []byte, u uint64) error {
		s := func(max int) (string, error) {
			if len(v) > max {
				return "", fmt.Errorf("%w: field %d longer than %d", ErrTooLarge, num, max)
			}
			if own && len(v) > 0 {
				return unsafe.String(&v[0], len(v)), nil
			}
			return string(v), nil
		}
		var err error
		switch num {
		case 1:
			e.AOR, err = s(MaxAORLength)
			haveAOR = true
		case 2:
			e.B.Contact, err = s(maxURILength)
		case 3:
			expires, haveExp = u, true
		case 4:
			q = u
		case 5:
			e.B.Instance, err = s(maxShortField)
		case 6:
			if u > math.MaxUint32 {
				return fmt.Errorf("%w: reg-id", ErrMalformed)
			}
			e.B.RegID = uint32(u)
		case 7:
			if len(e.B.Path) >= maxPathEntries {
				return fmt.Errorf("%w: Path", ErrTooLarge)
			}
			var p string
			p, err = s(maxURILength)
			e.B.Path = append(e.B.Path, p)
		case 8:
			e.B.CallID, err = s(maxShortField)
		case 9:
			if u > math.MaxUint32 {
				return fmt.Errorf("%w: cseq", ErrMalformed)
			}
			e.B.CSeq = uint32(u)
		case 10:
			e.B.Received, err = s(maxShortField)
		case 11:
			ts, haveTS = u, true
		case 12:
			e.Removed = u != 0
		case 13:
			if len(v) > maxSealed {
				return fmt.Errorf("%w: sealed binding longer than %d", ErrTooLarge, maxSealed)
			}
			e.sealed = v
		}
		return err
	}, ".bbvvbvbbvbvvb")
	if err != nil {
		return err
	}
	if !haveAOR || !haveExp || !haveTS {
		return fmt.Errorf("%w: binding lacks aor, expires or timestamp", ErrMalformed)
	}
	if q > 1000 || expires > math.MaxInt64/2 || ts > math.MaxInt64 {
		return fmt.Errorf("%w: q, expires or timestamp out of range", ErrMalformed)
	}
	e.B.Q = float64(q) / 1000
	e.B.Expires = time.UnixMilli(int64(expires))
	e.B.Timestamp = time.Unix(0, int64(ts))
	return nil
}

// walk iterates the fields of a protobuf message, checking each known field
// has its expected wire type and skipping unknown ones. v is the value of a
// bytes field (aliasing b), u of a varint field. schema[n] is field n's
// wire type: 'v' varint, 'b' bytes; any other byte (or none) an unknown
// field. (A string, not a map: walk runs for every entry of every message.)
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error, schema string) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad tag", ErrMalformed)
		}
		b = b[n:]
		want, ok := fieldType(schema, num)
		if !ok {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: bad field %d", ErrMalformed, num)
			}
			b = b[n:]
			continue
		}
		if typ != want {
			return fmt.Errorf("%w: field %d has wire type %d", ErrMalformed, num, typ)
		}
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
			v = v[:len(v):len(v)] // an append to v must not write into what follows it in b
		}
		if n < 0 {
			return fmt.Errorf("%w: truncated field %d", ErrMalformed, num)
		}
		b = b[n:]
		if err := fn(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}

// fieldType is field num's wire type in a walk schema.
func fieldType(schema string, num protowire.Number) (protowire.Type, bool) {
	if num < 0 || int(num) >= len(schema) {
		return 0, false
	}
	switch schema[num] {
	case 'v':
		return protowire.VarintType, true
	case 'b':
		return protowire.BytesType, true
	}
	return 0, false
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}
