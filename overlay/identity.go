package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// GenerateIdentity returns a new Ed25519 libp2p identity key.
func GenerateIdentity() (crypto.PrivKey, error) {
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: generate: %v", ErrIdentity, err)
	}
	return sk, nil
}

// LoadIdentity reads a libp2p private key written by SaveIdentity.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	sk, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrIdentity, path, err)
	}
	return sk, nil
}

// SaveIdentity writes sk to path (mode 0600), creating parent directories.
func SaveIdentity(path string, sk crypto.PrivKey) error {
	b, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	return nil
}

// LoadOrCreateIdentity loads the key at path, or creates and saves a new one
// when the file does not exist, so a node keeps its peer ID across restarts.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	sk, err := LoadIdentity(path)
	if err == nil {
		return sk, nil
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, fs.ErrNotExist) {
		return nil, err
	}
	if sk, err = GenerateIdentity(); err != nil {
		return nil, err
	}
	return sk, SaveIdentity(path, sk)
}

// PeerIDOf returns the peer ID of a private key.
func PeerIDOf(sk crypto.PrivKey) (peer.ID, error) {
	return peer.IDFromPrivateKey(sk)
}
