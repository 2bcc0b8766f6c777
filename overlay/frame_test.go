package overlay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestReadFrameInto: a frame goes into the caller's buffer when it fits
// and into a new one when not; a frame over the limit is refused, and a
// cut one is an unexpected EOF.
func TestReadFrameInto(t *testing.T) {
	var w bytes.Buffer
	for _, f := range [][]byte{[]byte("short"), bytes.Repeat([]byte("x"), 300), {}} {
		if err := WriteFrame(&w, f); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&w)
	buf := make([]byte, 0, 64)
	b, err := ReadFrameInto(r, 1024, buf)
	if err != nil || string(b) != "short" || &b[:1][0] != &buf[:1][0] {
		t.Fatalf("first frame %q, %v: want \"short\" in the caller's buffer", b, err)
	}
	b, err = ReadFrameInto(r, 1024, buf)
	if err != nil || len(b) != 300 || cap(b) == cap(buf) {
		t.Fatalf("second frame: %d bytes, %v: want 300 in a new buffer", len(b), err)
	}
	if b, err = ReadFrameInto(r, 1024, buf); err != nil || len(b) != 0 {
		t.Fatalf("empty frame: %q, %v", b, err)
	}

	w.Reset()
	_ = WriteFrame(&w, bytes.Repeat([]byte("y"), 2000))
	if _, err := ReadFrameInto(bufio.NewReader(&w), 1024, buf); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("frame over the limit: %v", err)
	}
	w.Reset()
	_ = WriteFrame(&w, []byte("cut short"))
	w.Truncate(4)
	if _, err := ReadFrameInto(bufio.NewReader(&w), 1024, buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut frame: %v", err)
	}
}
