package sipnet

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// GRUU reads a URI's gr parameter (RFC 5627 §3.1; its name matched
// without regard to case, RFC 3261 §19.1.4): ok when there is one, and
// its value percent-decoded ("" for a temporary GRUU's bare gr). A value
// that does not decode is returned as it is.
func GRUU(u *sip.Uri) (gr string, ok bool) {
	for _, kv := range u.UriParams {
		if strings.EqualFold(kv.K, "gr") {
			if v, err := url.PathUnescape(kv.V); err == nil {
				return v, true
			}
			return kv.V, true
		}
	}
	return "", false
}

// InstanceID is the URN of a +sip.instance value ("<urn:...>"), the
// form a public GRUU's gr names once decoded.
func InstanceID(instance string) string {
	return strings.TrimSuffix(strings.TrimPrefix(instance, "<"), ">")
}

// InstanceGR is the gr parameter of a public GRUU for an instance:
// InstanceID with each character a URI parameter may not hold escaped
// (RFC 3261 §25.1 paramchar). GRUU decodes it back.
func InstanceGR(instance string) string {
	id := InstanceID(instance)
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()[]/:&+$", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// AOROf strips a Request-URI to its AOR (scheme, user, host), for
// lsp.Canonical.
func AOROf(u sip.Uri) string {
	scheme := strings.ToLower(u.Scheme)
	if scheme == "" {
		scheme = "sip"
	}
	if u.User == "" {
		return scheme + ":" + u.Host
	}
	return scheme + ":" + u.User + "@" + u.Host
}
