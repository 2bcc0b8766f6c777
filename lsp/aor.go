package lsp

import (
	"fmt"
	"net"
	"strings"
)

// MaxAORLength bounds a canonical AOR.
const MaxAORLength = 256

// KeyPrefix is prepended to a canonical AOR to form its overlay key; the
// overlay hashes the key (SHA-256) to place it.
const KeyPrefix = "lsp/v1/"

// Key returns the overlay key of a canonical AOR.
func Key(canonical string) string { return KeyPrefix + canonical }

// Canonical returns the canonical form of an address of record (RFC 3261
// §10.3 step 5): an optional <...> is stripped; scheme, user and host are
// lowercased; password, port, parameters and headers are removed. sip:, sips:,
// xmpp: and other user@host URIs are keyed by user@host; tel: URIs (RFC 3966)
// by the number without visual separators (and phone-context for local
// numbers).
func Canonical(aor string) (string, error) {
	s := strings.TrimSpace(aor)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	if len(s) == 0 || len(s) > 2*MaxAORLength {
		return "", fmt.Errorf("%w: length %d", ErrBadAOR, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' {
			return "", fmt.Errorf("%w: %q: invalid character %q", ErrBadAOR, aor, c)
		}
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return "", fmt.Errorf("%w: %q: no scheme", ErrBadAOR, aor)
	}
	scheme := strings.ToLower(s[:colon])
	if !validScheme(scheme) {
		return "", fmt.Errorf("%w: %q: bad scheme", ErrBadAOR, aor)
	}
	rest := s[colon+1:]
	var out string
	var err error
	switch scheme {
	case "tel":
		out, err = canonicalTel(rest)
	default:
		out, err = canonicalUserHost(scheme, rest)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrBadAOR, aor, err)
	}
	if len(s) == len(scheme)+1+len(out) && s[:colon] == scheme && s[colon+1:] == out {
		out = s // already canonical (as every AOR a replica checks is): nothing to build
	} else {
		out = scheme + ":" + out
	}
	if len(out) > MaxAORLength {
		return "", fmt.Errorf("%w: canonical form longer than %d", ErrBadAOR, MaxAORLength)
	}
	return out, nil
}

func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return len(s) > 0 && len(s) <= 16
}

func canonicalUserHost(scheme, rest string) (string, error) {
	// Cut URI parameters, headers, fragment and (xmpp) resource.
	if i := strings.IndexAny(rest, ";?#"); i >= 0 {
		rest = rest[:i]
	}
	rest = strings.TrimPrefix(rest, "//")
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return "", fmt.Errorf("no user part")
	}
	user, host := rest[:at], rest[at+1:]
	if i := strings.IndexByte(user, ':'); i >= 0 { // password
		user = user[:i]
	}
	if scheme == "xmpp" {
		if i := strings.IndexByte(host, '/'); i >= 0 {
			host = host[:i]
		}
	}
	if user == "" {
		return "", fmt.Errorf("empty user part")
	}
	user, err := unescapeUnreserved(strings.ToLower(user))
	if err != nil {
		return "", err
	}
	host, err = canonicalHost(host)
	if err != nil {
		return "", err
	}
	if len(rest) == len(user)+1+len(host) && rest[:len(user)] == user && rest[len(user)] == '@' && rest[len(user)+1:] == host {
		return rest, nil // already canonical
	}
	return user + "@" + host, nil
}

// canonicalHost lowercases a hostname or IP literal and drops the port.
func canonicalHost(h string) (string, error) {
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", fmt.Errorf("unterminated IPv6 literal")
		}
		ip := net.ParseIP(h[1:end])
		if ip == nil || ip.To4() != nil {
			return "", fmt.Errorf("bad IPv6 literal")
		}
		if r := h[end+1:]; r != "" && !validPort(r) {
			return "", fmt.Errorf("bad port")
		}
		return "[" + ip.String() + "]", nil
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return "", fmt.Errorf("bad port")
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("bad host length")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad host %q", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("bad host %q", h)
			}
		}
	}
	return h, nil
}

func validPort(s string) bool { // ":digits"
	if len(s) < 2 || len(s) > 6 || s[0] != ':' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// unescapeUnreserved decodes %XX escapes of unreserved characters (RFC 3986
// §6.2.2.2) and uppercases the rest, so equivalent user parts compare equal.
func unescapeUnreserved(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", fmt.Errorf("bad percent escape")
		}
		c := unhex(s[i+1])<<4 | unhex(s[i+2])
		if c >= 'A' && c <= 'Z' {
			c |= 0x20 // lowercased like the rest of the user part
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString(strings.ToUpper(s[i : i+3]))
		}
		i += 2
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func canonicalTel(rest string) (string, error) {
	parts := strings.Split(rest, ";")
	var num strings.Builder
	for i := 0; i < len(parts[0]); i++ {
		c := parts[0][i]
		switch {
		case c >= '0' && c <= '9', c == '*', c == '#':
			num.WriteByte(c)
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			num.WriteByte(c | 0x20)
		case c == '+' && i == 0:
			num.WriteByte(c)
		case c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", fmt.Errorf("bad character %q in number", c)
		}
	}
	n := num.String()
	if n == "" || n == "+" {
		return "", fmt.Errorf("empty number")
	}
	if strings.HasPrefix(n, "+") {
		return n, nil
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(k, "phone-context") && v != "" {
			ctx := strings.ToLower(v)
			if !strings.HasPrefix(ctx, "+") {
				h, err := canonicalHost(ctx)
				if err != nil {
					return "", fmt.Errorf("phone-context: %v", err)
				}
				ctx = h
			}
			return n + ";phone-context=" + ctx, nil
		}
	}
	return "", fmt.Errorf("local number without phone-context")
}

// Domain returns the domain whose credential may write a canonical AOR: the
// host of user@host URIs, the phone-context domain of local tel: numbers, or
// "" when no domain is authoritative (global tel: numbers; their writer needs
// a certificate naming the AOR itself as a URI SAN).
func Domain(canonical string) string {
	scheme, rest, _ := strings.Cut(canonical, ":")
	if scheme == "tel" {
		if _, ctx, ok := strings.Cut(rest, ";phone-context="); ok && !strings.HasPrefix(ctx, "+") {
			return ctx
		}
		return ""
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		return strings.Trim(rest[i+1:], "[]")
	}
	return ""
}
