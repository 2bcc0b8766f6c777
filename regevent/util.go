package regevent

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// eventOf is a request's event package (Event, or o), without parameters.
func eventOf(req *sip.Request) string {
	h := req.GetHeader("Event")
	if h == nil {
		h = req.GetHeader("o")
	}
	if h == nil {
		return ""
	}
	pkg, _, _ := strings.Cut(h.Value(), ";")
	return strings.TrimSpace(pkg)
}

// accepts reports whether a SUBSCRIBE's Accept (none: the package's
// default) admits reginfo bodies.
func accepts(req *sip.Request) bool {
	hs := req.GetHeaders("Accept")
	if len(hs) == 0 {
		return true
	}
	for _, h := range hs {
		for _, t := range strings.Split(h.Value(), ",") {
			t, _, _ = strings.Cut(t, ";")
			switch strings.ToLower(strings.TrimSpace(t)) {
			case ContentType, "application/*", "*/*":
				return true
			}
		}
	}
	return false
}

// newTag is a random dialog tag.
func newTag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// splitHostPort splits "host:port" (port 0 when absent or bad).
func splitHostPort(hp string) (string, int) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}
