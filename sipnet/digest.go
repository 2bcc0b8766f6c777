package sipnet

import (
	"errors"
	"strconv"
	"strings"

	"github.com/icholy/digest"
)

// ErrDigest is returned for an Authorization or Proxy-Authorization value
// that is not Digest credentials (RFC 3261 §25.1, RFC 7616 §3.4).
var ErrDigest = errors.New("sipnet: malformed digest credentials")

// ParseDigest parses Digest credentials: "Digest" then comma-separated
// name=value parameters, each value a token or a quoted string (with
// backslash escapes). Names are matched in any case (RFC 7235 §2.1), a
// parameter named twice is refused (RFC 7616 §3.4: each at most once; two
// readers of one header taking different ones is how a check is slipped
// past), unknown ones are skipped, and whitespace is spaces and tabs.
//
// What icholy/digest's ParseCredentials did for the registrar and the
// proxy, without its cost: it read the value through a bufio Reader of
// 4 KB and built quoted strings rune by rune (the register bench's
// allocation profile, LSNODE_BENCH_HEAPPROFILE); this reads the string in
// place. A REGISTER with digest on allocated 45.5 KB in 463 objects with
// it, 38.0 KB in 408 with this (LSNODE_BENCH_CPUONLY=1
// LSNODE_BENCH_CPURATE=4000, one run each; CPU per REGISTER within that
// run's noise). The same credentials come out of both for what both
// accept (FuzzParseDigest), nc is 8 hex digits, and a quoted value holds
// no control character but tabs.
func ParseDigest(s string) (*digest.Credentials, error) {
	if len(s) < 7 || !strings.EqualFold(s[:6], "Digest") || s[6] != ' ' && s[6] != '\t' {
		return nil, ErrDigest
	}
	var c digest.Credentials
	var seen uint16
	p := s[7:]
	for i := 0; ; i++ {
		p = skipWS(p)
		if p == "" {
			if i == 0 {
				return nil, ErrDigest
			}
			return &c, nil
		}
		if i > 0 {
			if p[0] != ',' {
				return nil, ErrDigest
			}
			p = skipWS(p[1:])
		}
		n := tokenLen(p)
		if n == 0 {
			return nil, ErrDigest
		}
		name := p[:n]
		p = skipWS(p[n:])
		if p == "" || p[0] != '=' {
			return nil, ErrDigest
		}
		p = skipWS(p[1:])
		var value string
		if p != "" && p[0] == '"' {
			v, rest, ok := quoted(p)
			if !ok {
				return nil, ErrDigest
			}
			value, p = v, rest
		} else {
			n := tokenLen(p)
			if n == 0 {
				return nil, ErrDigest
			}
			value, p = p[:n], p[n:]
		}
		bit, field := fieldOf(&c, name)
		if bit == 0 {
			continue // another parameter (opaque's kin, extensions)
		}
		if seen&bit != 0 {
			return nil, ErrDigest
		}
		seen |= bit
		if field != nil {
			*field = value
			continue
		}
		switch bit {
		case bitNC: // 8LHEX (RFC 7616 §3.4), as it goes into the hash
			nc, err := strconv.ParseUint(value, 16, 32)
			if err != nil || len(value) != 8 || value[0] == '+' {
				return nil, ErrDigest
			}
			c.Nc = int(nc)
		case bitUserhash:
			c.Userhash = strings.EqualFold(value, "true")
		}
	}
}

// The parameters ParseDigest reads, a bit each.
const (
	bitUsername = 1 << iota
	bitRealm
	bitNonce
	bitURI
	bitResponse
	bitAlgorithm
	bitCnonce
	bitOpaque
	bitQOP
	bitNC
	bitUserhash
)

// fieldOf names parameter name's bit, and the string of c it goes in (nil
// for nc and userhash, which are converted); bit 0 for a parameter not
// read.
func fieldOf(c *digest.Credentials, name string) (uint16, *string) {
	switch {
	case strings.EqualFold(name, "username"):
		return bitUsername, &c.Username
	case strings.EqualFold(name, "realm"):
		return bitRealm, &c.Realm
	case strings.EqualFold(name, "nonce"):
		return bitNonce, &c.Nonce
	case strings.EqualFold(name, "uri"):
		return bitURI, &c.URI
	case strings.EqualFold(name, "response"):
		return bitResponse, &c.Response
	case strings.EqualFold(name, "algorithm"):
		return bitAlgorithm, &c.Algorithm
	case strings.EqualFold(name, "cnonce"):
		return bitCnonce, &c.Cnonce
	case strings.EqualFold(name, "opaque"):
		return bitOpaque, &c.Opaque
	case strings.EqualFold(name, "qop"):
		return bitQOP, &c.QOP
	case strings.EqualFold(name, "nc"):
		return bitNC, nil
	case strings.EqualFold(name, "userhash"):
		return bitUserhash, nil
	}
	return 0, nil
}

func skipWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

// tokenLen is the length of the RFC 3261 token s starts with.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		switch c {
		case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
			continue
		}
		return i
	}
	return len(s)
}

// quoted reads the quoted string s starts with: its value (escapes
// undone), the rest of s, and whether it was closed and holds no control
// character but tabs (RFC 3261 qdtext and quoted-pair).
func quoted(s string) (string, string, bool) {
	for i := 1; i < len(s); i++ {
		if ctl(s[i]) {
			return "", "", false
		}
		switch s[i] {
		case '"':
			return s[1:i], s[i+1:], true // no escapes: the value in place
		case '\\':
			var b strings.Builder
			b.WriteString(s[1:i])
			for j := i; j < len(s); j++ {
				switch c := s[j]; {
				case ctl(c) || c == '\\' && j+1 < len(s) && ctl(s[j+1]):
					return "", "", false
				case c == '\\' && j+1 < len(s):
					j++
					b.WriteByte(s[j])
				case c == '\\':
					return "", "", false
				case c == '"':
					return b.String(), s[j+1:], true
				default:
					b.WriteByte(c)
				}
			}
			return "", "", false
		}
	}
	return "", "", false
}

// ctl: a control character other than a tab.
func ctl(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }
