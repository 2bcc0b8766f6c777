package relay

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func controlRequest(op int, callID, ip string, port int) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(op))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, callID)
	if ip != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, ip)
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(port))
	}
	return b
}

func TestDecodeControl(t *testing.T) {
	if op, id, ip, port, err := decodeControl(controlRequest(opOffer, "c1", "192.0.2.1", 4000)); err != nil ||
		op != opOffer || id != "c1" || ip.String() != "192.0.2.1" || port != 4000 {
		t.Fatalf("offer: %d %q %v %d %v", op, id, ip, port, err)
	}
	if _, _, _, _, err := decodeControl(controlRequest(opEnd, "c1", "", 0)); err != nil {
		t.Fatalf("end without an address: %v", err)
	}
	for name, b := range map[string][]byte{
		"unknown op":        controlRequest(9, "c1", "192.0.2.1", 4000),
		"no call id":        controlRequest(opOffer, "", "192.0.2.1", 4000),
		"offer without ip":  controlRequest(opOffer, "c1", "", 0),
		"bad ip":            controlRequest(opAnswer, "c1", "host", 4000),
		"port out of range": controlRequest(opOffer, "c1", "192.0.2.1", 70000),
		"truncated":         controlRequest(opOffer, "c1", "192.0.2.1", 4000)[:5],
	} {
		if _, _, _, _, err := decodeControl(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeControl: the media control decoder never panics and accepts
// only complete requests.
func FuzzDecodeControl(f *testing.F) {
	f.Add(controlRequest(opOffer, "c1", "192.0.2.1", 4000))
	f.Add(controlRequest(opEnd, "c1", "", 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		op, id, ip, port, err := decodeControl(b)
		if err != nil {
			return
		}
		if op < opOffer || op > opEnd || id == "" || op != opEnd && (ip == nil || port <= 0 || port > 65535) {
			t.Fatalf("accepted %d %q %v %d", op, id, ip, port)
		}
	})
}
