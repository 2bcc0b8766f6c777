package overlay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrFrameTooLarge is returned by ReadFrame for a frame above its limit.
var ErrFrameTooLarge = errors.New("frame too large")

// WriteFrame writes b prefixed by its length as an unsigned varint, in one write.
func WriteFrame(w io.Writer, b []byte) error {
	buf := make([]byte, 0, binary.MaxVarintLen64+len(b))
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	buf = append(buf, b...)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one varint-length-prefixed frame of at most max bytes. A
// longer frame is refused before anything is allocated for it.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) { return ReadFrameInto(r, max, nil) }

// ReadFrameInto is ReadFrame into buf's storage when it is large enough (a
// new slice otherwise), for a caller that reuses one buffer for frame after
// frame once it has copied out what it keeps.
func ReadFrameInto(r *bufio.Reader, max int, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	var b []byte
	if buf != nil && uint64(cap(buf)) >= n {
		b = buf[:n]
	} else {
		b = make([]byte, n)
	}
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}
