package lsp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEntryRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	full := Binding{Contact: "sip:bob@192.0.2.4:5060;transport=tcp", Expires: time.Now().Add(time.Hour), Q: 0.7,
		Instance: "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>", RegID: 2,
		Path: []string{"<sip:p1.example;lr>", "<sip:p2.example;lr>"}, CallID: "abc@host", CSeq: 42,
		Received: "198.51.100.7:34567"}
	for _, b := range []Binding{binding("sip:bob@h", time.Minute), full} {
		es := signed(t, cred, "sip:bob@biloxi.example", b)
		es = append(es, signed(t, cred, "sip:bob@biloxi.example", Binding{Contact: "sip:x@y", Expires: b.Expires})...)
		es[1].Removed = true
		es[1].seal()
		m := &message{Type: msgStore, Entries: es, Certs: cred.Chain, AORs: []string{"sip:bob@biloxi.example"}, Count: 3, Status: 0}
		got, err := decodeMessage(m.encode())
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Entries) != 2 || !reflect.DeepEqual(got.Certs, m.Certs) || !reflect.DeepEqual(got.AORs, m.AORs) || got.Count != 3 {
			t.Fatalf("message round trip lost fields: %+v", got)
		}
		for i, e := range got.Entries {
			want := es[i]
			if e.AOR != want.AOR || e.Removed != want.Removed || e.leaf != want.leaf || e.CertFP != want.CertFP ||
				!bytes.Equal(e.Sig, want.Sig) || e.Index != want.Index || len(e.Proof) != len(want.Proof) {
				t.Fatalf("entry %d round trip: got %+v want %+v", i, e, want)
			}
			eb, wb := e.B, want.B
			if !eb.Expires.Equal(wb.Expires) || !eb.Timestamp.Equal(wb.Timestamp) {
				t.Fatalf("times differ: %v/%v vs %v/%v", eb.Expires, eb.Timestamp, wb.Expires, wb.Timestamp)
			}
			eb.Expires, eb.Timestamp, wb.Expires, wb.Timestamp = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if !reflect.DeepEqual(eb, wb) {
				t.Fatalf("binding round trip: got %+v want %+v", eb, wb)
			}
		}
	}
}

// TestGolden decodes the committed wire samples: valid ones must decode and
// re-encode byte for byte; invalid ones must fail with the sentinel named in
// their file name.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.bin")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		orig := bytes.Clone(b)
		m, err := decodeMessage(b)
		// The frame's buffer is reused for the next frame (rpc.go): what
		// decoded must not change when it is.
		var held string
		if err == nil {
			held = heldBytes(m)
		}
		for i := range b {
			b[i] = 0xAA
		}
		if err == nil && heldBytes(m) != held {
			t.Errorf("%s: a decoded field changed when the frame's buffer was overwritten", name)
		}
		switch {
		case strings.HasPrefix(name, "valid-"):
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if m.Holder == nil && len(m.Certs) == 0 && strings.Contains(name, "holder") {
				t.Errorf("%s: no holder proof decoded", name)
			}
			if re := m.encode(); !bytes.Equal(re, orig) {
				t.Errorf("%s: re-encoding differs once the frame's buffer is overwritten", name)
			}
		case strings.HasPrefix(name, "toolarge-"):
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s: got %v, want ErrTooLarge", name, err)
			}
		default:
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: got %v, want ErrMalformed", name, err)
			}
		}
	}
}

// TestWriteGolden regenerates testdata/golden (LSP_WRITE_GOLDEN=1).
func TestWriteGolden(t *testing.T) {
	if os.Getenv("LSP_WRITE_GOLDEN") == "" {
		t.Skip("set LSP_WRITE_GOLDEN=1 to regenerate testdata/golden")
	}
	ca := newTestCA(t)
	cred := ca.issue(t, []string{"biloxi.example"}, nil, false)
	exp := time.Unix(1900000000, 0)
	es := signed(t, cred, "sip:bob@biloxi.example", Binding{Contact: "sip:bob@192.0.2.4", Expires: exp, Timestamp: time.Unix(1800000000, 5)},
		Binding{Contact: "sip:bob@192.0.2.5", Expires: exp, Q: 0.5, Instance: "<urn:uuid:1>", RegID: 1, Path: []string{"<sip:edge;lr>"},
			CallID: "c@h", CSeq: 7, Received: "192.0.2.5:5060", Timestamp: time.Unix(1800000000, 6)})
	store := (&message{Type: msgStore, Entries: es, Certs: cred.Chain}).encode()
	var clk clock
	hidden, err := prepare(cred, &clk, "sip:bob@biloxi.example", []Binding{{Contact: "sip:bob@192.0.2.6", Expires: exp, Instance: "<urn:uuid:2>",
		CallID: "d@h", CSeq: 8, Timestamp: time.Unix(1800000000, 7)}}, sealerFor(true, "sip:bob@biloxi.example"))
	if err != nil {
		t.Fatal(err)
	}
	private := (&message{Type: msgStore, Entries: hidden, Certs: cred.Chain}).encode()
	fetch := (&message{Type: msgFetch, AORs: []string{"sip:bob@biloxi.example"}}).encode()
	reply := (&message{Type: msgReply, Status: statusForbidden, Error: "lsp: forbidden: bad signature"}).encode()
	proof, err := cred.holderProof("lsp-test", "12D3KooWholder", exp)
	if err != nil {
		t.Fatal(err)
	}
	register := (&message{Type: msgRegister, Entries: es, Certs: cred.Chain, Holder: proof}).encode()
	samples := map[string][]byte{
		"valid-register-holder.bin":   register,
		"toolarge-holder.bin":         append(append(appendUint(nil, 1, 1), appendUint(nil, 2, 7)...), appendBytes(nil, 10, make([]byte, holderProofSize+1))...),
		"valid-store.bin":             store,
		"valid-store-private.bin":     private,
		"valid-fetch.bin":             fetch,
		"valid-error-reply.bin":       reply,
		"malformed-truncated.bin":     store[:len(store)/2],
		"malformed-version.bin":       append(appendUint(nil, 1, 9), appendUint(nil, 2, 1)...),
		"malformed-no-version.bin":    appendUint(nil, 2, 1),
		"malformed-type.bin":          append(appendUint(nil, 1, 1), appendUint(nil, 2, 99)...),
		"malformed-wiretype.bin":      append(appendUint(nil, 1, 1), appendUint(nil, 6, 1)...),
		"malformed-entry-nosig.bin":   append(append(appendUint(nil, 1, 1), appendUint(nil, 2, 1)...), appendBytes(nil, 6, appendBytes(nil, 1, es[0].raw))...),
		"toolarge-many-certs.bin":     manyCerts(),
		"malformed-bad-fp-length.bin": append(append(appendUint(nil, 1, 1), appendUint(nil, 2, 1)...), appendBytes(nil, 6, append(appendBytes(nil, 1, es[0].raw), appendBytes(nil, 2, []byte{1, 2})...))...),
	}
	if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range samples {
		if err := os.WriteFile(filepath.Join("testdata/golden", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func manyCerts() []byte {
	b := append(appendUint(nil, 1, 1), appendUint(nil, 2, 1)...)
	for i := 0; i <= maxCerts; i++ {
		b = appendBytes(b, 5, []byte{0x30})
	}
	return b
}

func FuzzDecodeMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.bin")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b := bytes.Clone(in)
		m, err := decodeMessage(b)
		if err == nil { // nothing decoded aliases the frame, which is reused
			enc, held := m.encode(), heldBytes(m)
			for i := range b {
				b[i] = 0xAA
			}
			if !bytes.Equal(m.encode(), enc) || heldBytes(m) != held {
				t.Fatalf("the message changed when its frame's buffer was overwritten")
			}
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("decode error without a sentinel: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		m2, err := decodeMessage(m.encode())
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if len(m2.Entries) != len(m.Entries) || len(m2.Certs) != len(m.Certs) || len(m2.AORs) != len(m.AORs) || !bytes.Equal(m2.Holder, m.Holder) {
			t.Fatalf("round trip changed the message")
		}
		for i := range m.Entries {
			if m.Entries[i].leaf != m2.Entries[i].leaf {
				t.Fatalf("entry %d leaf changed on round trip", i)
			}
		}
	})
}

// heldBytes is every byte a decoded message keeps, field by field (the
// entries' encodings are cached, so re-encoding alone would not show an
// entry's signature or content pointing into the frame).
func heldBytes(m *message) string {
	var b strings.Builder
	put := func(v string) { fmt.Fprintf(&b, "%d:%s|", len(v), v) }
	for _, c := range m.Certs {
		put(string(c))
	}
	put(string(m.Holder))
	put(m.Error)
	for _, e := range m.Entries {
		put(string(e.wire))
		put(string(e.raw))
		put(string(e.Sig))
		put(string(e.sealed))
		put(string(e.leaf[:]))
		put(e.AOR + e.B.Contact + e.B.Instance + e.B.CallID + e.B.Received + strings.Join(e.B.Path, ","))
		for _, p := range e.Proof {
			put(string(p[:]))
		}
	}
	for _, a := range append(append([]string{}, m.AORs...), m.Quota...) {
		put(a)
	}
	return b.String()
}
