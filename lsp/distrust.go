package lsp

import (
	"log/slog"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// distrustFor: how long a replica caught lying (serving a forgery, or
// refusing a valid write without proof) is left out of this node's replica
// sets.
const (
	distrustFor = 10 * time.Minute
	maxDistrust = 4096
)

// distrustSet holds the peers this node caught lying: a forged entry in an
// answer (no honest replica stores one, since replicas verify before
// storing), or a valid write refused without proof (see vote.go). Reads and writes skip them; the next closest members take
// their place.
type distrustSet struct {
	mu    sync.Mutex
	until map[overlay.PeerID]time.Time
	n     int // entries, for a lock-free-ish count on the hot path
}

func (d *distrustSet) add(p overlay.PeerID, why error, log *slog.Logger) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.until == nil {
		d.until = map[overlay.PeerID]time.Time{}
	}
	now := time.Now()
	if len(d.until) >= maxDistrust {
		for q, t := range d.until {
			if now.After(t) {
				delete(d.until, q)
			}
		}
		if len(d.until) >= maxDistrust {
			return
		}
	}
	if _, ok := d.until[p]; !ok {
		log.Warn("replica caught lying; distrusting it", "peer", p, "for", distrustFor, "err", why)
	}
	d.until[p] = now.Add(distrustFor)
	d.n = len(d.until)
}

func (d *distrustSet) has(p overlay.PeerID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.until[p]
	if ok && time.Now().After(t) {
		delete(d.until, p)
		d.n = len(d.until)
		return false
	}
	return ok
}

// count is how many peers may be distrusted (expired ones included until
// looked at): the extra candidates a replica set needs.
func (d *distrustSet) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// Distrusted returns the peers this node currently distrusts.
func (s *Service) Distrusted() []overlay.PeerID {
	d := &s.distrust
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var out []overlay.PeerID
	for p, t := range d.until {
		if now.Before(t) {
			out = append(out, p)
		}
	}
	return out
}
