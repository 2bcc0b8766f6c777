package testnet

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
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
