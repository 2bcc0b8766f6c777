package membership

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Entry is a member's own announcement, signed by its identity key: its
// incarnation, addresses, services, and whether it left. Entries are
// immutable once decoded and shared between the views that hold them.
type Entry struct {
	ID       string   // the member's identity (libp2p peer ID bytes)
	Inc      uint64   // incarnation: a wall-clock time in ns, raised on every change
	Addrs    [][]byte // opaque to this package (multiaddr bytes)
	Services []string // announced services (TURN URIs, ...)
	Left     bool
	// Region: the bits of the member's partial view (region.go); 0 for
	// a full one. Full views keep such a member off their rings and
	// probe it from its gaps, since it probes and floods only within
	// its region.
	Region int
	Raw    []byte // the whole signed entry, forwarded verbatim
	body   []byte // the signed part
	sig    []byte
}

// Accusation says that Accuser's probes of Subject's incarnation Inc
// failed. It is signed by the accuser; the subject refutes it by raising
// its incarnation.
type Accusation struct {
	Subject, Accuser string
	Inc              uint64
	Time             uint64 // accuser's wall clock, ns
	Raw              []byte
	body, sig        []byte
}

// Bounds of what one entry may carry.
const (
	maxServices     = 8
	maxServiceBytes = 256
	maxAddrs        = 16
	maxAddrBytes    = 256
	maxIDBytes      = 128
)

// ErrBadMessage is returned for a message that does not decode.
var ErrBadMessage = errors.New("membership: malformed message")

func bad(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadMessage}, a...)...)
}

// EncodeEntry returns the unsigned body of an entry (fields 1-6).
func entryBody(id string, inc uint64, addrs [][]byte, services []string, left bool, region int) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, id)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, inc)
	for _, a := range addrs {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, a)
	}
	if left {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	for _, s := range services {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	if region > 0 {
		b = protowire.AppendTag(b, 8, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(region))
	}
	return b
}

func accusationBody(subject string, inc uint64, accuser string, t uint64) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, subject)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, inc)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, accuser)
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, t)
	return b
}

func appendSig(body, sig []byte) []byte {
	body = protowire.AppendTag(body, 7, protowire.BytesType)
	return protowire.AppendBytes(body, sig)
}

// fields walks a protobuf message, calling f for each field; the signature
// (field 7) must come last. It returns the signed prefix and the signature.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) (body, sig []byte, err error) {
	all := b
	for len(b) > 0 {
		if sig != nil {
			return nil, nil, bad("fields after the signature")
		}
		start := len(all) - len(b)
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, bad("tag")
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, nil, bad("field %d", num)
			}
			b = b[n:]
			if num == 7 {
				if len(v) == 0 {
					return nil, nil, bad("empty signature")
				}
				body, sig = all[:start], v
				continue
			}
			if err := f(num, typ, v, 0); err != nil {
				return nil, nil, err
			}
		case protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, nil, bad("field %d", num)
			}
			b = b[n:]
			if err := f(num, typ, nil, x); err != nil {
				return nil, nil, err
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, nil, bad("field %d", num)
			}
			b = b[n:]
		}
	}
	if sig == nil {
		return nil, nil, bad("unsigned")
	}
	return body, sig, nil
}

// DecodeEntry decodes a signed entry (without checking the signature).
func DecodeEntry(raw []byte) (*Entry, error) {
	e := &Entry{Raw: raw}
	body, sig, err := fields(raw, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if len(v) == 0 || len(v) > maxIDBytes {
				return bad("id of %d bytes", len(v))
			}
			e.ID = string(v)
		case num == 2 && typ == protowire.VarintType:
			e.Inc = x
		case num == 4 && typ == protowire.BytesType:
			if len(e.Addrs) < maxAddrs && len(v) <= maxAddrBytes {
				e.Addrs = append(e.Addrs, v)
			}
		case num == 5 && typ == protowire.VarintType:
			e.Left = x != 0
		case num == 8 && typ == protowire.VarintType:
			if x == 0 || x > maxRegionBits {
				return bad("region of %d bits", x)
			}
			e.Region = int(x)
		case num == 6 && typ == protowire.BytesType:
			if len(v) <= maxServiceBytes && len(e.Services) < maxServices && utf8.Valid(v) {
				e.Services = append(e.Services, string(v))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if e.ID == "" {
		return nil, bad("entry without id")
	}
	e.body, e.sig = body, sig
	return e, nil
}

// DecodeAccusation decodes a signed accusation (without checking the signature).
func DecodeAccusation(raw []byte) (*Accusation, error) {
	a := &Accusation{Raw: raw}
	body, sig, err := fields(raw, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case (num == 1 || num == 3) && typ == protowire.BytesType:
			if len(v) == 0 || len(v) > maxIDBytes {
				return bad("id of %d bytes", len(v))
			}
			if num == 1 {
				a.Subject = string(v)
			} else {
				a.Accuser = string(v)
			}
		case num == 2 && typ == protowire.VarintType:
			a.Inc = x
		case num == 4 && typ == protowire.VarintType:
			a.Time = x
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if a.Subject == "" || a.Accuser == "" {
		return nil, bad("accusation without subject or accuser")
	}
	a.body, a.sig = body, sig
	return a, nil
}

// Message types. Every message is one frame: the type byte, then fields.
const (
	msgPing     = 1  // 1: seq, 2: digest (fixed64), 3: the digest's region
	msgAck      = 2  // 1: seq, 2: digest, 3: region
	msgPingReq  = 3  // 1: seq, 2: target id
	msgHave     = 4  // 1: items
	msgWant     = 5  // 1: items, 2: 1 if the asker takes compact accusations
	msgUpdates  = 6  // 1: entries, 2: accusations, 3: compact accusations (compactAcc)
	msgJoin     = 7  // 1: the joiner's entry (absent for a client), 3: its region
	msgSnapshot = 8  // as msgUpdates, the answer to a join
	msgSync     = 9  // 1: bucket digests (64 fixed64), 3: the region they cover
	msgSummary  = 10 // 1: items, 2: bucket mask or 3: leaves (uint16s)
	msgAccuse   = 11 // 2: a lone accusation, to its subject and other probers
	msgSubSync  = 12 // 1: bucket mask, 2: its buckets' leaf digests (fixed64)
	numMsgTypes = 13
)

// Fields any message may carry besides its own (news.go).
const (
	// fieldNews: announcements riding on another message (items, as a
	// msgHave's field 1), on any message but a msgHave.
	fieldNews = 15
	// fieldTakesNews: a probe's (ping or ack) sender reads fieldNews.
	fieldTakesNews = 4
	// fieldSeed: a msgUpdates is a seed (news.go), to be relayed this
	// many hops more by its receiver.
	fieldSeed = 5
)

// item names one version of one member: its id hash, incarnation and kind.
type item struct {
	h    uint64
	inc  uint64
	kind uint8
	// held, in a want: the asker holds this incarnation's entry already
	// and needs only its accusations (flagHeld on the wire).
	held bool
}

// flagHeld marks a wanted item's kind byte when the asker holds its entry.
const flagHeld = 0x80

// Kinds of a member's state. A same-incarnation update wins by rank:
// alive, suspect, confirmed, left.
const (
	kindAlive     = 1
	kindSuspect   = 2 // accused by one member: still live and probed
	kindLeft      = 3
	kindConfirmed = 4 // accused by two: off the rings, not live
)

// rank orders kinds (the wire values keep left at 3).
func rank(kind uint8) uint8 {
	switch kind {
	case kindConfirmed:
		return 3
	case kindLeft:
		return 4
	}
	return kind
}

func newer(inc uint64, kind uint8, thanInc uint64, thanKind uint8) bool {
	return inc > thanInc || inc == thanInc && rank(kind) > rank(thanKind)
}

func appendItems(b []byte, items []item) []byte { return appendItemsAs(b, 1, items) }

// appendItemsAs appends items as field num.
func appendItemsAs(b []byte, num protowire.Number, items []item) []byte {
	var buf []byte
	for _, it := range items {
		buf = binary.BigEndian.AppendUint64(buf, it.h)
		buf = binary.AppendUvarint(buf, it.inc)
		k := it.kind
		if it.held {
			k |= flagHeld
		}
		buf = append(buf, k)
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, buf)
}

func decodeItems(b []byte, max int, wants bool) ([]item, error) {
	var out []item
	for len(b) > 0 {
		if len(b) < 10 || len(out) >= max {
			return nil, bad("items")
		}
		it := item{h: binary.BigEndian.Uint64(b)}
		inc, n := binary.Uvarint(b[8:])
		if n <= 0 || len(b) < 8+n+1 {
			return nil, bad("items")
		}
		it.inc, it.kind = inc, b[8+n]
		if wants && it.kind&flagHeld != 0 {
			it.kind, it.held = it.kind&^flagHeld, true
		}
		if it.kind < kindAlive || it.kind > kindConfirmed {
			return nil, bad("item kind %d", it.kind)
		}
		out = append(out, it)
		b = b[8+n+1:]
	}
	return out, nil
}

// message is a decoded frame.
type message struct {
	typ     byte
	seq     uint64
	digest  uint64
	target  string
	items   []item
	entries [][]byte
	accs    [][]byte
	compact []compactAccusation // msgUpdates' field 3
	// compactOK: msgWant's field 2, the asker takes compact accusations
	// (an older node's want lacks it, and is answered in full).
	compactOK bool
	buckets   []uint64
	mask      uint64
	leaves    []uint16
	region    region // field 3 of a probe, join or sync (region.go)
	// news: announcements riding on the message (fieldNews); takesNews:
	// a probe's sender reads them (fieldTakesNews).
	news      []item
	takesNews bool
	// seed: a msgUpdates' fieldSeed, the hops to relay it more.
	seed uint64
}

const maxItems = 1 << 16

func decodeMessage(b []byte) (*message, error) {
	if len(b) == 0 || b[0] == 0 || b[0] >= numMsgTypes {
		return nil, bad("message type")
	}
	m := &message{typ: b[0]}
	b = b[1:]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, bad("tag")
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, bad("field %d", num)
		}
		b = b[n:]
		if err := m.field(num, typ, v, x); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *message) field(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
	var err error
	if num == fieldNews && typ == protowire.BytesType && m.typ != msgHave {
		if m.news != nil {
			return bad("news twice")
		}
		m.news, err = decodeItems(v, maxItems, false)
		return err
	}
	if num == fieldTakesNews && typ == protowire.VarintType && (m.typ == msgPing || m.typ == msgAck) {
		m.takesNews = x == 1
		return nil
	}
	if num == 3 && typ == protowire.VarintType && (m.typ == msgPing || m.typ == msgAck || m.typ == msgJoin || m.typ == msgSync) {
		m.region, err = regionFromWire(x)
		return err
	}
	switch m.typ {
	case msgPing, msgAck, msgPingReq:
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.seq = x
		case num == 2 && typ == protowire.Fixed64Type:
			m.digest = x
		case num == 2 && typ == protowire.BytesType && m.typ == msgPingReq:
			m.target = string(v)
		}
	case msgHave, msgWant:
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.items, err = decodeItems(v, maxItems, m.typ == msgWant)
		case num == 2 && typ == protowire.VarintType && m.typ == msgWant:
			m.compactOK = x == 1
		}
	case msgUpdates, msgSnapshot, msgJoin, msgAccuse:
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.entries = append(m.entries, v)
		case num == 2 && typ == protowire.BytesType:
			m.accs = append(m.accs, v)
		case num == 3 && typ == protowire.BytesType && m.typ == msgUpdates:
			err = m.addCompact(v)
		case num == fieldSeed && typ == protowire.VarintType && m.typ == msgUpdates:
			m.seed = x
		}
	case msgSync:
		if num == 1 && typ == protowire.Fixed64Type && len(m.buckets) < buckets {
			m.buckets = append(m.buckets, x)
		}
	case msgSummary:
		switch {
		case num == 1 && typ == protowire.BytesType:
			m.items, err = decodeItems(v, maxItems, false)
		case num == 2 && typ == protowire.Fixed64Type:
			m.mask = x
		case num == 3 && typ == protowire.BytesType:
			m.leaves, err = decodeLeaves(v)
		}
	case msgSubSync:
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			m.mask = x
		case num == 2 && typ == protowire.Fixed64Type && len(m.buckets) < leaves:
			m.buckets = append(m.buckets, x)
		}
	}
	return err
}

func (m *message) addCompact(v []byte) error {
	c, err := decodeCompact(v)
	if err == nil {
		m.compact = append(m.compact, c)
	}
	return err
}

func encodeProbe(typ byte, seq, digest uint64) []byte {
	b := []byte{typ}
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, digest)
}

// appendSeed marks a msgUpdates a seed to relay hops more (fieldSeed).
func appendSeed(b []byte, hops int) []byte {
	if hops <= 0 {
		return b
	}
	b = protowire.AppendTag(b, fieldSeed, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(hops))
}

// appendTakesNews says, on a probe, that its sender reads fieldNews.
func appendTakesNews(b []byte) []byte {
	b = protowire.AppendTag(b, fieldTakesNews, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

// appendRegion adds region g as field 3; the whole space goes without it
// (what full views sent before regions).
func appendRegion(b []byte, g region) []byte {
	if g.bits == 0 {
		return b
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	return protowire.AppendVarint(b, g.wire())
}

func encodePingReq(seq uint64, target string) []byte {
	b := []byte{msgPingReq}
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, target)
}

func encodeItems(typ byte, items []item) []byte { return appendItems([]byte{typ}, items) }

// encodeWant is a msgWant that takes compact accusations (field 2). An
// item not held goes without its incarnation (0: one byte, not nine): the
// answer is the record the peer holds whatever the incarnation asked,
// which only picks the accusations alone for an item held (onWant), in
// this version and before it.
func encodeWant(items []item) []byte {
	wire := make([]item, len(items))
	for i, it := range items {
		if !it.held {
			it.inc = 0
		}
		wire[i] = it
	}
	b := encodeItems(msgWant, wire)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

// appendCompact appends compact accusations (compactAcc) as field 3.
func appendCompact(b []byte, compact [][]byte) []byte {
	for _, c := range compact {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, c)
	}
	return b
}

func encodeUpdates(typ byte, entries, accs [][]byte) []byte {
	b := []byte{typ}
	for _, e := range entries {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	for _, a := range accs {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, a)
	}
	return b
}

// compactAcc is a in the form an answer to a want of its accusations
// alone (flagHeld) carries it, field 3 of msgUpdates: the subject's and
// the accuser's id hashes instead of their ids, then the incarnation, the
// time and the signature (100 bytes instead of 166 with Ed25519 ids: a
// failure's pair is most of what it costs a view). The asker holds the
// subject's entry (it said so) and nearly always the accuser's, and
// rebuilds the signed body from them. Only an accusation encoded as
// accusationBody encodes it can be rebuilt: one its accuser signed in
// another encoding (extra fields, another order) is nil here and goes in
// full, or the asker would check a body the accuser never signed and ban
// the honest member that passed it on.
func compactAcc(a *Accusation) []byte {
	if string(appendSig(accusationBody(a.Subject, a.Inc, a.Accuser, a.Time), a.sig)) != string(a.Raw) {
		return nil
	}
	b := binary.BigEndian.AppendUint64(nil, hashOf(KeyID(a.Subject)))
	b = binary.BigEndian.AppendUint64(b, hashOf(KeyID(a.Accuser)))
	b = binary.AppendUvarint(b, a.Inc)
	b = binary.AppendUvarint(b, a.Time)
	return append(b, a.sig...)
}

// compactAccusation is a decoded compactAcc.
type compactAccusation struct {
	subject, accuser uint64 // id hashes
	inc, time        uint64
	sig              []byte
}

// maxCompactSig bounds a compact accusation's signature (Ed25519's is 64).
const maxCompactSig = 128

func decodeCompact(v []byte) (compactAccusation, error) {
	if len(v) < 16 {
		return compactAccusation{}, bad("compact accusation of %d bytes", len(v))
	}
	c := compactAccusation{subject: binary.BigEndian.Uint64(v), accuser: binary.BigEndian.Uint64(v[8:])}
	v = v[16:]
	var n, k int
	c.inc, n = binary.Uvarint(v)
	if n > 0 {
		c.time, k = binary.Uvarint(v[n:])
	}
	if n <= 0 || k <= 0 || len(v[n+k:]) == 0 || len(v[n+k:]) > maxCompactSig {
		return compactAccusation{}, bad("compact accusation")
	}
	c.sig = v[n+k:]
	return c, nil
}

// expand is the accusation c stands for, by the members of ids subject and
// accuser.
func (c compactAccusation) expand(subject, accuser string) (*Accusation, error) {
	return DecodeAccusation(appendSig(accusationBody(subject, c.inc, accuser, c.time), c.sig))
}

// appendFixed64s appends each of xs as field num.
func appendFixed64s(b []byte, num protowire.Number, xs ...uint64) []byte {
	for _, x := range xs {
		b = protowire.AppendTag(b, num, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, x)
	}
	return b
}

func encodeSync(d *[buckets]uint64, g region) []byte {
	return appendRegion(appendFixed64s([]byte{msgSync}, 1, d[:]...), g)
}

func encodeSummary(mask uint64, items []item) []byte {
	return appendFixed64s(appendItems([]byte{msgSummary}, items), 2, mask)
}

// encodeLeafSummary is a summary of the stable items in the given leaves.
func encodeLeafSummary(ls []uint16, items []item) []byte {
	b := appendItems([]byte{msgSummary}, items)
	buf := make([]byte, 0, 2*len(ls))
	for _, l := range ls {
		buf = binary.BigEndian.AppendUint16(buf, l)
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, buf)
}

// decodeLeaves reads a summary's leaves: distinct, in range, at most all.
func decodeLeaves(v []byte) ([]uint16, error) {
	if len(v)%2 != 0 || len(v)/2 > leaves {
		return nil, bad("leaves")
	}
	var seen [leaves]bool
	out := make([]uint16, 0, len(v)/2)
	for ; len(v) > 0; v = v[2:] {
		l := binary.BigEndian.Uint16(v)
		if int(l) >= leaves || seen[l] {
			return nil, bad("leaf %d", l)
		}
		seen[l] = true
		out = append(out, l)
	}
	return out, nil
}

func encodeSubSync(mask uint64, subs []uint64) []byte {
	return appendFixed64s(appendFixed64s([]byte{msgSubSync}, 1, mask), 2, subs...)
}

// KeyID returns the 32-byte Kademlia ID of a member (SHA-256 of its
// identity bytes, as kad-dht's ConvertPeerID).
func KeyID(id string) [32]byte { return sha256.Sum256([]byte(id)) }

func hashOf(kid [32]byte) uint64 { return binary.BigEndian.Uint64(kid[:8]) | 1 }

// Deferrable tells whether msg is dissemination or repair (a Have, Want,
// Sync, Summary or SubSync): a transport that just failed to reach the
// peer may drop it, since other announcers and anti-entropy make up for
// it. The rest are not: probes, joins and their snapshots, accusations,
// and Updates, which besides answering a Want carry what a subject must
// hear to refute (its confirmed accusation, the accusations a node holds
// of it) and a leave, sent once.
func Deferrable(msg []byte) bool {
	if len(msg) == 0 {
		return false
	}
	switch msg[0] {
	case msgHave, msgWant, msgSync, msgSummary, msgSubSync:
		return true
	}
	return false
}
