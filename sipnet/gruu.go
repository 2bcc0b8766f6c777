package sipnet

import (
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
