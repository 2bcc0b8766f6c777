package registrar

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/lsnode/lsnode/lsp"
)

// OpenUsers reads the users file at path to edit it, or starts an empty
// one of realm if there is none. realm "" takes the file's; a file of
// another realm is an error (its HA1s are bound to their realm).
func OpenUsers(path, realm string) (*UsersFile, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if realm == "" {
			return nil, fmt.Errorf("%w: %s does not exist: give the realm (--realm) to create it", ErrUsers, path)
		}
		if !validRealm(realm) {
			return nil, fmt.Errorf("%w: realm %q is not a domain name", ErrUsers, realm)
		}
		return &UsersFile{Realm: realm, Users: []UserHash{}}, nil
	}
	f, err := LoadUsers(path)
	switch {
	case err != nil:
		return nil, err
	case realm != "" && f.Realm != realm:
		return nil, fmt.Errorf("%w: %s is realm %q, not %q", ErrUsers, path, f.Realm, realm)
	}
	return f, nil
}

// Add adds username with its AOR (sip:username@realm when aor is "") and
// password; replace allows an existing user's AOR and password to be
// replaced. The AOR must be of the realm's domain.
func (f *UsersFile) Add(username, aor, password string, replace bool) (UserHash, error) {
	if username == "" || strings.ContainsAny(username, ":@ \t\r\n\"\\<>") {
		return UserHash{}, fmt.Errorf("%w: username %q: want a SIP user name (no ':', '@', spaces or quotes)", ErrUsers, username)
	}
	if password == "" {
		return UserHash{}, fmt.Errorf("%w: empty password", ErrUsers)
	}
	if aor == "" {
		aor = "sip:" + username + "@" + f.Realm
	}
	canon, err := lsp.Canonical(aor)
	if err != nil {
		return UserHash{}, fmt.Errorf("%w: AOR %q: %v", ErrUsers, aor, err)
	}
	if d := lsp.Domain(canon); d != f.Realm {
		return UserHash{}, fmt.Errorf("%w: AOR %s is of %q, not of the file's realm %q", ErrUsers, canon, d, f.Realm)
	}
	u := NewUserHash(username, canon, f.Realm, password)
	i := slices.IndexFunc(f.Users, func(x UserHash) bool { return x.Username == username })
	switch {
	case i >= 0 && !replace:
		return UserHash{}, fmt.Errorf("%w: user %q exists (--replace changes its AOR and password)", ErrUsers, username)
	case i >= 0:
		f.Users[i] = u
	default:
		f.Users = append(f.Users, u)
	}
	return u, nil
}

// Remove removes username.
func (f *UsersFile) Remove(username string) error {
	i := slices.IndexFunc(f.Users, func(x UserHash) bool { return x.Username == username })
	if i < 0 {
		return fmt.Errorf("%w: no user %q", ErrUsers, username)
	}
	f.Users = slices.Delete(f.Users, i, i+1)
	return nil
}

// SaveAtomic writes the file through a temporary file in its directory,
// so a reader (a starting node) never sees half of it. A file it replaces
// keeps its mode and, when this process may set them, its owner and group
// (root:lsnode 0640 stays readable by the service); a new one is 0600.
func (f *UsersFile) SaveAtomic(path string) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUsers, path, errors.Unwrap(err))
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("%w: %s: %v", ErrUsers, path, err)
	}
	if st, err := os.Stat(path); err == nil {
		if err := tmp.Chmod(st.Mode().Perm()); err != nil {
			return fail(err)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = tmp.Chown(int(sys.Uid), int(sys.Gid)) // only root may; others keep theirs
		}
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("%w: %s: %v", ErrUsers, path, err)
	}
	return nil
}

// NewPassword is a random password of 16 lower-case letters and digits
// (80 bits).
func NewPassword() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

func validRealm(r string) bool {
	canon, err := lsp.Canonical("sip:x@" + r)
	return err == nil && lsp.Domain(canon) == r
}
