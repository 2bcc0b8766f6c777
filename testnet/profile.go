package testnet

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Profile is a CPU profile of this process's first minutes (ProfileCPU).
// A nil *Profile does nothing.
type Profile struct {
	f    *os.File
	once sync.Once
	t    *time.Timer
	nw   atomic.Pointer[Network]
}

// ProfileCPU writes a CPU profile of this process to path for d, or until
// Stop if that is sooner; when d runs out it writes to w what the
// connections of the Network given to Watch were used for (PrintConnUse).
// An empty path profiles nothing: nil, nil.
func ProfileCPU(path string, d time.Duration, w io.Writer) (*Profile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	p := &Profile{f: f}
	p.t = time.AfterFunc(d, func() {
		p.end()
		if nw := p.nw.Load(); nw != nil {
			nw.PrintConnUse(w)
		}
	})
	return p, nil
}

// Watch names the network whose connection use is written when the
// profile ends.
func (p *Profile) Watch(nw *Network) {
	if p != nil {
		p.nw.Store(nw)
	}
}

// Stop ends the profile now if it has not ended; it may be called again.
func (p *Profile) Stop() {
	if p != nil {
		p.t.Stop()
		p.end()
	}
}

func (p *Profile) end() {
	p.once.Do(func() {
		pprof.StopCPUProfile()
		p.f.Close()
	})
}

// PrintConnUse writes every tenth running node's connection use
// (overlay.ConnUse: connections, streams, and the dials the membership
// made, by message type) to w.
func (n *Network) PrintConnUse(w io.Writer) {
	for k, i := range n.Running() {
		if k%10 == 0 {
			if nd := n.Node(i); nd != nil {
				fmt.Fprintf(w, "node%d: %s\n", i, nd.Overlay().ConnUse())
			}
		}
	}
}

// HeapOnSignal writes this process's heap profile to path, after a
// garbage collection, and its goroutines (counted by stack) to
// path.goroutines, each time it receives SIGUSR1, and the runtime's memory
// split as one line to w; until ctx ends or the returned stop is called.
// An empty path does nothing. ChaosSpec.Profile signals its grouped
// processes at the end of the idle window: what a node holds standing
// still.
func HeapOnSignal(ctx context.Context, path string, w io.Writer) (stop func()) {
	if path == "" {
		return func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				if err := writeHeap(path); err != nil {
					fmt.Fprintf(w, "heap profile: %v\n", err)
					continue
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				fmt.Fprintf(w, "heap profile %s: heap in use %d, live %d, idle %d (released %d), stacks %d, goroutines %d\n",
					path, ms.HeapInuse, ms.HeapAlloc, ms.HeapIdle, ms.HeapReleased, ms.StackInuse, runtime.NumGoroutine())
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		cancel()
		<-done
	}
}

func writeHeap(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The goroutines beside it, counted by stack: at idle their stacks
	// are as much of a node's memory as its heap.
	if f, err = os.Create(path + ".goroutines"); err != nil {
		return err
	}
	if err := pprof.Lookup("goroutine").WriteTo(f, 1); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
