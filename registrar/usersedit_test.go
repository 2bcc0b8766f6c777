package registrar

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUsersEdit: a users file is created, added to, refused what does not
// belong, and read back by LoadUsers; replacing it keeps its mode and group.
func TestUsersEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	if _, err := OpenUsers(path, ""); err == nil || !strings.Contains(err.Error(), "--realm") {
		t.Fatalf("a new file without a realm: %v", err)
	}
	f, err := OpenUsers(path, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Add("alice", "", "pw-alice", false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ user, aor string }{{"alice", ""}, {"bo b", ""}, {"bob", "sip:bob@b.example"}, {"bob", "not a uri"}} {
		if _, err := f.Add(bad.user, bad.aor, "pw", false); err == nil {
			t.Errorf("Add(%q, %q) succeeded", bad.user, bad.aor)
		}
	}
	if err := f.SaveAtomic(path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("a new users file is %v", st.Mode())
	}
	// The operator gives the service's group read access; an edit keeps it.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	gid := os.Getgid()
	if os.Geteuid() == 0 {
		gid = 65534
		if err := os.Chown(path, 0, gid); err != nil {
			t.Fatal(err)
		}
	}
	again, err := OpenUsers(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Add("alice", "", "new-pw", true); err != nil {
		t.Fatal(err)
	}
	if err := again.Remove("nobody"); err == nil {
		t.Fatal("removed a user who is not there")
	}
	if err := again.SaveAtomic(path); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o640 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("after an edit: %v gid %d, want 0640 gid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, gid)
	}
	loaded, err := LoadUsers(path)
	if err != nil || len(loaded.Users) != 1 || loaded.Users[0].HA1MD5 != NewUserHash("alice", "sip:alice@a.example", "a.example", "new-pw").HA1MD5 {
		t.Fatalf("read back: %+v %v", loaded, err)
	}
	if _, err := OpenUsers(path, "b.example"); err == nil {
		t.Fatal("opened a.example's file as b.example's")
	}
	if err := again.SaveAtomic(filepath.Join(t.TempDir(), "no", "such", "dir.json")); err == nil || strings.Contains(err.Error(), "/.dir.json.") {
		t.Fatalf("a missing directory: %v", err)
	}
}
