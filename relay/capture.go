package relay

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"

	"github.com/pion/stun/v2"
)

// capture keeps the TURN request pion is handling on each of the server's
// transports, so the auth handler (which pion calls before it checks
// MESSAGE-INTEGRITY, and without the message) can check the integrity
// itself before it charges a user's quota.
//
// pion handles one transport's messages one at a time (one read loop per
// UDP socket and per TCP/TLS connection; the auth handler runs inside it),
// so the request being authenticated for a client address is the last one
// read from that client's transport.
type capture struct {
	mu    sync.Mutex
	udp   []byte // the last STUN message read from the UDP socket
	udpFr string // and who sent it
	conns map[string][]*frameConn
}

type integrity int

const (
	integrityUnknown integrity = iota // no request of src being handled
	integrityBad
	integrityOK
)

// verify checks the MESSAGE-INTEGRITY of the request pion is handling for
// src against key.
func (c *capture) verify(src net.Addr, key []byte) integrity {
	var raws [][]byte
	c.mu.Lock()
	if _, ok := src.(*net.UDPAddr); ok {
		if c.udpFr == src.String() {
			raws = append(raws, bytes.Clone(c.udp))
		}
	} else {
		for _, fc := range c.conns[src.String()] {
			if cur := fc.current(); cur != nil {
				raws = append(raws, cur)
			}
		}
	}
	c.mu.Unlock()
	if len(raws) == 0 {
		return integrityUnknown
	}
	for _, raw := range raws { // one, unless two listeners share a client port
		m := &stun.Message{Raw: raw}
		if m.Decode() == nil && stun.MessageIntegrity(key).Check(m) == nil {
			return integrityOK
		}
	}
	return integrityBad
}

// capturePacketConn is the UDP socket as pion reads it.
type capturePacketConn struct {
	net.PacketConn
	c *capture
}

func (p *capturePacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := p.PacketConn.ReadFrom(b)
	if err == nil && stun.IsMessage(b[:n]) {
		p.c.mu.Lock()
		p.c.udp = append(p.c.udp[:0], b[:n]...)
		p.c.udpFr = addr.String()
		p.c.mu.Unlock()
	}
	return n, addr, err
}

// captureListener hands pion connections that give out one TURN frame per
// Read (pion's STUNConn then handles exactly the frame last read).
type captureListener struct {
	net.Listener
	c *capture
}

func (l *captureListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &frameConn{Conn: conn, c: l.c, key: conn.RemoteAddr().String()}
	l.c.mu.Lock()
	l.c.conns[fc.key] = append(l.c.conns[fc.key], fc)
	l.c.mu.Unlock()
	return fc, nil
}

// frameConn is a TCP or TLS client connection.
type frameConn struct {
	net.Conn
	c   *capture
	key string

	mu   sync.Mutex
	buf  []byte // read, not yet handed out
	cur  []byte // the STUN message last handed out
	raw  bool   // framing lost: pass bytes through (pion closes the connection)
	once sync.Once
}

// maxTURNFrame bounds a buffered frame (a STUN message's length field).
const maxTURNFrame = 20 + 0xffff

// frameLen returns the length of the TURN frame (STUN message or
// ChannelData, padded to 4 over TCP) at the start of b; 0 when incomplete,
// -1 when b starts with neither.
func frameLen(b []byte) int {
	if len(b) < 4 {
		return 0
	}
	var n int
	switch {
	case b[0]>>6 == 0: // STUN
		n = 20 + int(binary.BigEndian.Uint16(b[2:4]))
	case b[0]>>6 == 1: // ChannelData
		n = 4 + (int(binary.BigEndian.Uint16(b[2:4]))+3)&^3
	default:
		return -1
	}
	if len(b) < n {
		return 0
	}
	return n
}

func (f *frameConn) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.raw {
		n := frameLen(f.buf)
		if n < 0 || n > len(p) || n == 0 && len(f.buf) > maxTURNFrame {
			// Not TURN, or a frame larger than pion reads (it drops
			// those): pass the bytes through as they come, capture
			// nothing more (the auth handler then grants nothing).
			f.raw, f.cur = true, nil
			break
		}
		if n > 0 {
			frame := f.buf[:n]
			if stun.IsMessage(frame) {
				f.cur = append(f.cur[:0], frame...)
			}
			copy(p, frame)
			f.buf = f.buf[n:]
			return n, nil
		}
		tmp := make([]byte, 2048)
		f.mu.Unlock()
		m, err := f.Conn.Read(tmp)
		f.mu.Lock()
		f.buf = append(f.buf, tmp[:m]...)
		if err != nil && m == 0 {
			return 0, err
		}
	}
	if len(f.buf) > 0 {
		n := copy(p, f.buf)
		f.buf = f.buf[n:]
		return n, nil
	}
	f.mu.Unlock()
	n, err := f.Conn.Read(p)
	f.mu.Lock()
	return n, err
}

// current returns a copy of the STUN message last handed out.
func (f *frameConn) current() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.cur)
}

func (f *frameConn) Close() error {
	f.once.Do(func() {
		f.c.mu.Lock()
		l := f.c.conns[f.key]
		for i, x := range l {
			if x == f {
				l = append(l[:i:i], l[i+1:]...)
				break
			}
		}
		if len(l) == 0 {
			delete(f.c.conns, f.key)
		} else {
			f.c.conns[f.key] = l
		}
		f.c.mu.Unlock()
	})
	return f.Conn.Close()
}
