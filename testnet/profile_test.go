package testnet_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestHeapOnSignal: each SIGUSR1 writes a heap profile (gzipped protobuf)
// and the memory split line; none is written before a signal, and stop
// ends the goroutine.
func TestHeapOnSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap")
	var out lockedBuffer
	stop := testnet.HeapOnSignal(context.Background(), path, &out)
	defer stop()
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a heap profile before any signal: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !strings.Contains(string(out.Bytes()), "heap profile "+path); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no heap profile written after SIGUSR1: %q", out.Bytes())
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatalf("the heap profile is not gzipped: %d bytes", len(b))
	}
	stop()
	if s := testnet.HeapOnSignal(context.Background(), "", &out); s == nil {
		t.Fatal("no stop for an empty path")
	}
}
