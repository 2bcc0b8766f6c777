package membership

import "testing"

// Only dissemination and repair may be held back by a transport; probes,
// joins, accusations and Updates (refutation material, a leave) must
// reach their peer or fail.
func TestDeferrable(t *testing.T) {
	want := map[byte]bool{
		msgPing: false, msgAck: false, msgPingReq: false, msgJoin: false, msgSnapshot: false, msgAccuse: false,
		msgUpdates: false, msgHave: true, msgWant: true, msgSync: true, msgSummary: true, msgSubSync: true,
	}
	if len(want) != numMsgTypes-1 {
		t.Fatalf("%d message types classified, want %d", len(want), numMsgTypes-1)
	}
	for typ, w := range want {
		if got := Deferrable([]byte{typ, 0}); got != w {
			t.Errorf("type %d: Deferrable %v, want %v", typ, got, w)
		}
	}
	if Deferrable(nil) || Deferrable([]byte{msgPingReq}) || !Deferrable(encodeItems(msgHave, nil)) {
		t.Error("Deferrable misclassifies an empty message or an encoded Have")
	}
}
