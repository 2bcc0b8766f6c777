package registrar

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"os"

	"github.com/lsnode/lsnode/lsp"
)

// UsersFile is the JSON credentials file of one realm: HA1 hashes only,
// never plaintext passwords.
type UsersFile struct {
	Realm string     `json:"realm"`
	Users []UserHash `json:"users"`
}

// UserHash is one user: the AOR it may register and its HA1 =
// H(username:realm:password) for MD5 and SHA-256 (RFC 8760).
type UserHash struct {
	Username  string `json:"username"`
	AOR       string `json:"aor"`
	HA1MD5    string `json:"ha1_md5"`
	HA1SHA256 string `json:"ha1_sha256"`
}

// NewUserHash hashes a password for realm.
func NewUserHash(username, aor, realm, password string) UserHash {
	return UserHash{Username: username, AOR: aor,
		HA1MD5:    hexHash(md5.New(), username+":"+realm+":"+password),
		HA1SHA256: hexHash(sha256.New(), username+":"+realm+":"+password)}
}

func hexHash(h hash.Hash, s string) string {
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// LoadUsers reads and checks a users file.
func LoadUsers(path string) (*UsersFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsers, err)
	}
	var f UsersFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUsers, path, err)
	}
	if f.Realm == "" {
		return nil, fmt.Errorf("%w: %s: no realm", ErrUsers, path)
	}
	seen := map[string]bool{}
	for i, u := range f.Users {
		canon, err := lsp.Canonical(u.AOR)
		if err != nil || u.Username == "" || len(u.HA1MD5) != 32 || len(u.HA1SHA256) != 64 || seen[u.Username] {
			return nil, fmt.Errorf("%w: %s: user %d (%q) is incomplete, duplicated or has a bad AOR", ErrUsers, path, i, u.Username)
		}
		seen[u.Username] = true
		f.Users[i].AOR = canon
	}
	return &f, nil
}

// Save writes the file (mode 0600).
func (f *UsersFile) Save(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
