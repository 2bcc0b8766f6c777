package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrNoMedia: an SDP body without an active media stream (no m= line
// with a port): nothing to relay.
var ErrNoMedia = errors.New("relay: SDP has no active media stream")

// MaxStreams bounds the media streams relayed for one call (audio, video,
// ...): the first MaxStreams m= lines; an offer's later ones are declined
// (port 0).
const MaxStreams = 4

// Stream is one m= line of an SDP body: its media type, and where its
// party receives it (Port 0: declined, or past MaxStreams).
type Stream struct {
	Media string
	IP    net.IP
	Port  int
}

// StreamKey names the relay session of a call's stream i (the i-th m=
// line): the call's own key for the first, key#i for the others, so a
// relay's Has(key) tells whether the call is anchored at all.
func StreamKey(key string, i int) string {
	if i == 0 {
		return key
	}
	return key + "#" + strconv.Itoa(i)
}

// RewriteSDP points an SDP body's streams at the relay: every c= line at
// ip, the i-th m= line's port at ports[i] and its a=rtcp attribute (RFC
// 3605) at ports[i]+1; a stream whose ports[i] is 0, or past len(ports)
// or MaxStreams, or with a port count ("5000/2"), is declined (port 0, its
// a=rtcp line dropped: it may name the party's address). It returns the
// new body and every m= line's stream as it was (its party's receive
// address: the media-level c= line, else the session's; Port 0 for a
// stream that cannot be relayed). ErrNoMedia when no stream is active; an
// error for a body it cannot read. Lines end in CRLF or LF (a body mixing
// them is read line by line all the same: no line hides in another). With
// ports nil it only reads (the body it returns then declines every stream).
func RewriteSDP(body []byte, ip string, ports []int) ([]byte, []Stream, error) {
	relayIP := net.ParseIP(ip)
	if relayIP == nil {
		return nil, nil, fmt.Errorf("relay: bad relay address %q", ip)
	}
	family := "IP4"
	if relayIP.To4() == nil {
		family = "IP6"
	}
	nl := "\r\n"
	if !bytes.Contains(body, []byte("\r\n")) {
		nl = "\n"
	}
	lines := strings.Split(strings.TrimRight(string(body), "\r\n"), "\n")
	var sessionAddr net.IP
	var streams []Stream
	var local []net.IP // each stream's media-level address, if any
	var relayed []bool // each stream is pointed at the relay
	out := lines[:0:0]
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		cur := len(streams) - 1 // the stream this line belongs to (-1: session level)
		switch {
		case strings.HasPrefix(l, "m="):
			f, p, err := mLine(l)
			if err != nil {
				return nil, nil, err
			}
			k := len(streams)
			streams, local = append(streams, Stream{Media: f[0], Port: p}), append(local, nil)
			to := 0
			if p != 0 && k < len(ports) && k < MaxStreams {
				to = ports[k]
			}
			relayed = append(relayed, to != 0)
			f[1] = strconv.Itoa(to)
			l = "m=" + strings.Join(f, " ")
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) != 3 {
				return nil, nil, fmt.Errorf("relay: bad c= line %q", l)
			}
			addr := net.ParseIP(strings.SplitN(f[2], "/", 2)[0])
			if addr == nil {
				return nil, nil, fmt.Errorf("relay: c= address %q is not an IP", f[2])
			}
			if cur < 0 {
				sessionAddr = addr
			} else {
				local[cur] = addr
			}
			l = "c=IN " + family + " " + relayIP.String()
		case cur >= 0 && strings.HasPrefix(l, "a=rtcp:"):
			if !relayed[cur] {
				continue
			}
			l = "a=rtcp:" + strconv.Itoa(ports[cur]+1)
		}
		out = append(out, l)
	}
	if err := addresses(streams, sessionAddr, local); err != nil {
		return nil, nil, err
	}
	return []byte(strings.Join(out, nl) + nl), streams, nil
}

// mLine reads an m= line: its fields and its port, 0 for a port range
// ("5000/2": not one pair the relay can stand for).
func mLine(l string) ([]string, int, error) {
	f := strings.Fields(l[2:])
	if len(f) < 3 {
		return nil, 0, fmt.Errorf("relay: bad m= line %q", l)
	}
	num, count, hasCount := strings.Cut(f[1], "/")
	p, err := strconv.Atoi(num)
	if err != nil || p < 0 || p > 65535 {
		return nil, 0, fmt.Errorf("relay: bad m= line %q", l)
	}
	if n, err := strconv.Atoi(count); hasCount && (err != nil || n < 1) {
		return nil, 0, fmt.Errorf("relay: bad m= line %q", l)
	}
	if hasCount {
		p = 0
	}
	return f, p, nil
}

// addresses sets each stream's address (its media-level one, else the
// session's): ErrNoMedia when no stream is active, an error when an active
// one has none.
func addresses(streams []Stream, session net.IP, local []net.IP) error {
	active := false
	for k := range streams {
		streams[k].IP = session
		if local[k] != nil {
			streams[k].IP = local[k]
		}
		if streams[k].Port != 0 {
			if streams[k].IP == nil {
				return errors.New("relay: SDP has no connection address for a stream")
			}
			active = true
		}
	}
	if !active {
		return ErrNoMedia
	}
	return nil
}
