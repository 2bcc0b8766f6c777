package registrar

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/icholy/digest"
)

// Nonces are stateless: base64(issued-unix-ms ‖ HMAC(secret, issued-unix-ms
// ‖ realm)), so a front-end keeps no nonce memory and front-ends sharing the
// secret accept each other's nonces.
type nonces struct {
	secret []byte
	realm  string
	ttl    time.Duration
	now    func() time.Time
	algs   []string // offered, most preferred first
}

func (n *nonces) issue() string {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(n.now().UnixMilli()))
	return base64.RawURLEncoding.EncodeToString(append(ts[:], n.mac(ts[:])...))
}

func (n *nonces) mac(ts []byte) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write(ts)
	m.Write([]byte(n.realm))
	return m.Sum(nil)[:16]
}

// check returns (authentic, fresh).
func (n *nonces) check(nonce string) (bool, bool) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 24 || !hmac.Equal(b[8:], n.mac(b[:8])) {
		return false, false
	}
	issued := time.UnixMilli(int64(binary.BigEndian.Uint64(b[:8])))
	age := n.now().Sub(issued)
	return true, age >= -time.Minute && age <= n.ttl
}

// challenges returns one WWW-Authenticate value per offered algorithm, in
// order of preference (RFC 8760 §2.4).
func (n *nonces) challenges(stale bool) []string {
	nonce := n.issue()
	var out []string
	for _, alg := range n.algs {
		c := digest.Challenge{Realm: n.realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

// verifyDigest checks credentials against a user's HA1 (RFC 2617 / 8760).
func verifyDigest(c *digest.Credentials, u *UserHash, method string) bool {
	var ha1 string
	var h func() hash.Hash
	switch strings.ToUpper(c.Algorithm) {
	case "", "MD5":
		ha1, h = u.HA1MD5, md5.New
	case "SHA-256":
		ha1, h = u.HA1SHA256, sha256.New
	default:
		return false
	}
	ha2 := hexHash(h(), method+":"+c.URI)
	var want string
	switch c.QOP {
	case "":
		want = hexHash(h(), ha1+":"+c.Nonce+":"+ha2)
	case "auth":
		nc := fmt.Sprintf("%08x", c.Nc)
		want = hexHash(h(), ha1+":"+c.Nonce+":"+nc+":"+c.Cnonce+":auth:"+ha2)
	default:
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(c.Response))) == 1
}
