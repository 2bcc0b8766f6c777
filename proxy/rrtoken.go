package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// Record-Route tokens. A Route naming this proxy is trusted (it lets a
// request from any sender go on to whatever hop follows) only when it is a
// Record-Route this proxy put into that very dialog: its URI carries
// rrParam, an HMAC of the dialog's Call-ID under the proxy's key. A Route
// an outsider pre-loads with our address or domain is popped like any
// Route naming us, but the next hop after it is then judged as if the
// Route had not been there.

// rrParam is the Record-Route URI parameter holding the token.
const rrParam = "lsrr"

// rrToken is base64url(HMAC-SHA256(key, "rr" 0 callID))[:16 bytes].
func (p *Proxy) rrToken(callID string) string {
	m := hmac.New(sha256.New, p.rrKey)
	m.Write([]byte("rr\x00"))
	m.Write([]byte(callID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// rrTokenValid reports whether tok is the token this proxy mints for callID.
func (p *Proxy) rrTokenValid(tok, callID string) bool {
	if len(tok) > 64 || callID == "" {
		return false
	}
	return hmac.Equal([]byte(tok), []byte(p.rrToken(callID)))
}
