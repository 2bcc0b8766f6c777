package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ErrNoMedia: an SDP body without an audio stream to relay.
var ErrNoMedia = errors.New("relay: SDP has no audio stream")

// RewriteSDP points an SDP body's first audio stream at ip:port (RTCP at
// port+1): every c= line, that m= line's port and an a=rtcp attribute
// (RFC 3605). It returns the new body and where the stream pointed before
// (the party's receive address). Other streams are declined (port 0).
func RewriteSDP(body []byte, ip string, port int) ([]byte, net.IP, int, error) {
	relayIP := net.ParseIP(ip)
	if relayIP == nil {
		return nil, nil, 0, fmt.Errorf("relay: bad relay address %q", ip)
	}
	family := "IP4"
	if relayIP.To4() == nil {
		family = "IP6"
	}
	nl := "\r\n"
	if !bytes.Contains(body, []byte("\r\n")) {
		nl = "\n"
	}
	lines := strings.Split(strings.TrimRight(string(body), "\r\n"), nl)
	var sessionAddr, mediaAddr net.IP
	origPort := -1
	inAudio, seenAudio := false, false
	for i, l := range lines {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "m="):
			inAudio = false
			f := strings.Fields(l[2:])
			if !seenAudio && len(f) >= 3 && f[0] == "audio" {
				p, err := strconv.Atoi(f[1])
				if err != nil || p < 0 || p > 65535 {
					return nil, nil, 0, fmt.Errorf("relay: bad m= line %q", l)
				}
				origPort, inAudio, seenAudio = p, true, true
				f[1] = strconv.Itoa(port)
				lines[i] = "m=" + strings.Join(f, " ")
			} else if len(f) >= 3 {
				// Only one stream is relayed; the session address now
				// names the relay, so other streams are declined (port 0).
				f[1] = "0"
				lines[i] = "m=" + strings.Join(f, " ")
			}
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) != 3 {
				return nil, nil, 0, fmt.Errorf("relay: bad c= line %q", l)
			}
			addr := net.ParseIP(strings.SplitN(f[2], "/", 2)[0])
			if addr == nil {
				return nil, nil, 0, fmt.Errorf("relay: c= address %q is not an IP", f[2])
			}
			if !seenAudio {
				sessionAddr = addr
			} else if inAudio {
				mediaAddr = addr
			} else {
				continue // another stream's own address: left alone
			}
			lines[i] = "c=IN " + family + " " + relayIP.String()
		case inAudio && strings.HasPrefix(l, "a=rtcp:"):
			lines[i] = "a=rtcp:" + strconv.Itoa(port+1)
		}
	}
	if origPort < 0 {
		return nil, nil, 0, ErrNoMedia
	}
	orig := mediaAddr
	if orig == nil {
		orig = sessionAddr
	}
	if orig == nil {
		return nil, nil, 0, errors.New("relay: SDP has no connection address")
	}
	return []byte(strings.Join(lines, nl) + nl), orig, origPort, nil
}
