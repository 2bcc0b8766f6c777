package testnet_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lsnode/lsnode/testnet"
)

// TestProfileCPU: the profile is written once its time runs out, Stop may
// come after that and again, and no path profiles nothing.
func TestProfileCPU(t *testing.T) {
	if p, err := testnet.ProfileCPU("", time.Second, os.Stderr); p != nil || err != nil {
		t.Fatalf("no path: %v, %v", p, err)
	}
	path := filepath.Join(t.TempDir(), "cpu")
	p, err := testnet.ProfileCPU(path, 200*time.Millisecond, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no profile written within 10 s of a 200 ms profile")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop()
	p.Stop()
	if _, err := testnet.ProfileCPU(filepath.Join(t.TempDir(), "none", "cpu"), time.Second, os.Stderr); err == nil {
		t.Fatal("a path in a missing directory: no error")
	}
}
