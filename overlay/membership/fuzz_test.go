package membership

import (
	"crypto/ed25519"
	"testing"
	"time"
)

type drop struct{}

func (drop) Send(string, []byte) {}

// FuzzReceive: any bytes from a peer either decode or are refused with
// ErrBadMessage; a refused message changes nothing in the view, and no
// input panics.
func FuzzReceive(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	id := string(pub)
	sign := func(msg []byte) ([]byte, error) { return ed25519.Sign(priv, msg), nil }
	verify := func(id string, msg, sig []byte) bool {
		return len(id) == ed25519.PublicKeySize && ed25519.Verify(ed25519.PublicKey(id), msg, sig)
	}
	raw, err := SignEntry("fuzz", id, 1, [][]byte{{4, 127, 0, 0, 1}}, []string{"turn:127.0.0.1:3478"}, false, 0, sign)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeUpdates(msgUpdates, [][]byte{raw}, nil))
	f.Add(encodeUpdates(msgJoin, [][]byte{raw}, nil))
	f.Add(encodeProbe(msgPing, 7, 99))
	f.Add(encodePingReq(3, id))
	f.Add(encodeItems(msgHave, []item{{h: 5, inc: 9, kind: kindAlive}}))
	f.Add(encodeSummary(1, []item{{h: 5, inc: 9, kind: kindSuspect}}))
	body := accusationBody(id, 1, id+"x", 5)
	accRaw := appendSig(body, ed25519.Sign(priv, append([]byte("lsnode/suspect/fuzz\x00"), body...)))
	f.Add(encodeUpdates(msgAccuse, nil, [][]byte{accRaw}))
	f.Add(encodeUpdates(msgUpdates, [][]byte{raw}, [][]byte{accRaw, accRaw}))
	f.Add(encodeItems(msgWant, []item{{h: 5, inc: 9, kind: kindConfirmed}}))
	if a, err := DecodeAccusation(accRaw); err == nil {
		f.Add(appendCompact([]byte{msgUpdates}, [][]byte{compactAcc(a), compactAcc(a)}))
	}
	var d [buckets]uint64
	f.Add(encodeSync(&d, region{}))
	f.Add(encodeSync(&d, region{bits: 2, prefix: 3}))
	f.Add(appendRegion(encodeProbe(msgAck, 7, 99), region{bits: 6, prefix: 63}))
	f.Add(appendRegion(encodeUpdates(msgJoin, [][]byte{raw}, nil), region{bits: 1, prefix: 1}))
	partialRaw, err := SignEntry("fuzz", id, 2, nil, nil, false, 3, sign)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeUpdates(msgUpdates, [][]byte{partialRaw}, nil))
	f.Add(encodeSubSync(3, make([]uint64, 2*subBuckets)))
	f.Add(encodeLeafSummary([]uint16{0, 17, leaves - 1}, []item{{h: 5, inc: 9, kind: kindAlive}}))
	news := []item{{h: 5, inc: 9, kind: kindAlive}, {h: 7, inc: 3, kind: kindConfirmed}}
	f.Add(appendItemsAs(appendTakesNews(encodeProbe(msgPing, 7, 99)), fieldNews, news))
	f.Add(appendItemsAs(encodeUpdates(msgUpdates, [][]byte{raw}, nil), fieldNews, news))
	f.Add(appendSeed(encodeUpdates(msgUpdates, [][]byte{raw}, nil), 2))
	f.Add(appendSeed(encodeUpdates(msgUpdates, nil, [][]byte{accRaw, accRaw}), 1<<40))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub2, priv2, _ := ed25519.GenerateKey(nil)
		now := time.Unix(1_800_000_000, 0)
		m, err := New(Config{Name: "fuzz", Self: string(pub2), Serve: true, RegionBits: len(b) % 7, // full and partial views
			Sign: func(msg []byte) ([]byte, error) { return ed25519.Sign(priv2, msg), nil }, Verify: verify}, drop{}, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, dg := m.Size(), m.Digest()
		if err := m.Receive(now, id, b); err != nil {
			if m.Size() != n || m.Digest() != dg {
				t.Fatalf("a refused message changed the view")
			}
			return
		}
		m.Tick(now.Add(time.Minute))
	})
}
