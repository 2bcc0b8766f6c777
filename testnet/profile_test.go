package testnet

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHeapOnSignal: each SIGUSR1 writes a heap profile (gzipped protobuf)
// and the memory split line; none is written before a signal, and stop
// ends the goroutine.
func TestHeapOnSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap")
	var out syncBuffer
	stop := HeapOnSignal(context.Background(), path, &out)
	defer stop()
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a heap profile before any signal: %v", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "heap profile "+path); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no heap profile written after SIGUSR1: %q", out.String())
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
	if s := HeapOnSignal(context.Background(), "", &out); s == nil {
		t.Fatal("no stop for an empty path")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader on two
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
