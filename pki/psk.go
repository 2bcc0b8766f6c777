package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// NewPSK returns a new private-network key (32 random bytes) in the
// go-libp2p v1 file format.
func NewPSK() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(k) + "\n")
}

// PSKFingerprint names a private-network key (the decoded key) without
// revealing it.
func PSKFingerprint(psk []byte) string {
	h := sha256.Sum256(psk)
	return hex.EncodeToString(h[:6])
}
