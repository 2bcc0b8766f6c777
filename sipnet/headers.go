package sipnet

import "github.com/emiago/sipgo/sip"

// HeaderNameIs reports whether a header's name (parsed, or raw bytes) is
// name, in any ASCII case (RFC 3261 §7.3.1: header names are
// case-insensitive; sipgo lowercases ASCII only, so no other folding
// either).
func HeaderNameIs[S ~string | ~[]byte](got S, name string) bool {
	if len(got) != len(name) {
		return false
	}
	for i := 0; i < len(got); i++ {
		if lower(got[i]) != lower(name[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// headered is what RemoveHeaders needs of a request or response.
type headered interface {
	Headers() []sip.Header
	RemoveHeader(name string) bool
}

// RemoveHeaders removes every header of m named name in any case and
// returns how many. sipgo's RemoveHeader matches the name exactly as it
// was received, so a header it does not parse into a type of its own
// (Path, Proxy-Authorization, …) sent as "path:" survived a
// RemoveHeader("Path"), while GetHeaders("Path") found it.
func RemoveHeaders(m headered, name string) int {
	n := 0
	for {
		found := ""
		for _, h := range m.Headers() {
			if HeaderNameIs(h.Name(), name) {
				found = h.Name()
				break
			}
		}
		if found == "" || !m.RemoveHeader(found) {
			return n
		}
		n++
	}
}
