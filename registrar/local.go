package registrar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lsnode/lsnode/lsp"
)

// maxLocalBindings bounds the bindings one AOR may hold in the local store.
const maxLocalBindings = 64

// localStore is the embedded binding store of "local" mode: bindings live in
// this process only and are not published to the overlay.
type localStore struct {
	mu   sync.Mutex
	aors map[string]map[string]lsp.Binding
}

func newLocalStore() *localStore { return &localStore{aors: map[string]map[string]lsp.Binding{}} }

func (s *localStore) Publish(_ context.Context, aor string, bs ...lsp.Binding) error {
	canon, err := lsp.Canonical(aor)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishLocked(canon, bs)
}

func (s *localStore) publishLocked(canon string, bs []lsp.Binding) error {
	s.expireLocked(canon, time.Now())
	m := s.aors[canon]
	if m == nil {
		m = map[string]lsp.Binding{}
		s.aors[canon] = m
	}
	for _, b := range bs {
		if _, ok := m[b.ID()]; !ok && len(m) >= maxLocalBindings {
			return fmt.Errorf("%w: more than %d bindings for %s", lsp.ErrInvalid, maxLocalBindings, canon)
		}
		if b.Timestamp.IsZero() {
			b.Timestamp = time.Now()
		}
		m[b.ID()] = b
	}
	return nil
}

// Register implements lsp.Registry: the Call-ID/CSeq check and the write
// under one lock.
func (s *localStore) Register(ctx context.Context, aor string, bs ...lsp.Binding) ([]lsp.Binding, error) {
	canon, err := lsp.Canonical(aor)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(canon, time.Now())
	for _, b := range bs {
		if old, ok := s.aors[canon][b.ID()]; ok && old.CallID == b.CallID && old.CSeq >= b.CSeq {
			return nil, lsp.ErrOutOfOrder
		}
	}
	if err := s.publishLocked(canon, bs); err != nil {
		return nil, err
	}
	out := []lsp.Binding{}
	for _, b := range s.aors[canon] {
		out = append(out, b)
	}
	return out, nil
}

func (s *localStore) Lookup(_ context.Context, aor string) ([]lsp.Binding, error) {
	canon, err := lsp.Canonical(aor)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(canon, time.Now())
	out := []lsp.Binding{}
	for _, b := range s.aors[canon] {
		out = append(out, b)
	}
	return out, nil
}

func (s *localStore) Remove(_ context.Context, aor string, ids ...string) error {
	canon, err := lsp.Canonical(aor)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ids) == 0 {
		delete(s.aors, canon)
		return nil
	}
	for _, id := range ids {
		delete(s.aors[canon], id)
	}
	return nil
}

func (s *localStore) expireLocked(canon string, now time.Time) {
	for id, b := range s.aors[canon] {
		if !b.Expires.After(now) {
			delete(s.aors[canon], id)
		}
	}
	if len(s.aors[canon]) == 0 {
		delete(s.aors, canon)
	}
}

// hybrid writes to the overlay and mirrors to the domain's shared location
// service (or the embedded store); reads come from the overlay and fall back
// to the mirror while the overlay is unavailable, so the domain's front-ends
// can still answer for what they registered.
type hybrid struct {
	overlay lsp.LocationService
	local   lsp.LocationService
	log     func(msg string, args ...any)
}

// Publish writes to the overlay; the mirror's failure is logged, not the
// REGISTER's: the binding is where it must be.
func (h *hybrid) Publish(ctx context.Context, aor string, bs ...lsp.Binding) error {
	if err := h.overlay.Publish(ctx, aor, bs...); err != nil {
		return err
	}
	if err := h.local.Publish(ctx, aor, bs...); err != nil {
		h.log("local mirror refused a binding", "aor", aor, "err", err)
	}
	return nil
}

func (h *hybrid) Remove(ctx context.Context, aor string, ids ...string) error {
	if err := h.overlay.Remove(ctx, aor, ids...); err != nil {
		return err
	}
	if err := h.local.Remove(ctx, aor, ids...); err != nil {
		h.log("local mirror kept a removed binding", "aor", aor, "err", err)
	}
	return nil
}

func (h *hybrid) Lookup(ctx context.Context, aor string) ([]lsp.Binding, error) {
	bs, err := h.overlay.Lookup(ctx, aor)
	// Not joined yet: the mirror may be empty (a restart), and its "none"
	// would pass for the overlay's.
	if err == nil || errors.Is(err, lsp.ErrNotJoined) || !errors.Is(err, lsp.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		return bs, err
	}
	h.log("overlay unavailable, answering from the local mirror", "aor", aor, "err", err)
	return h.local.Lookup(ctx, aor)
}

// hybridRegistry is hybrid over a location service with one-round-trip
// registration.
type hybridRegistry struct {
	*hybrid
	reg lsp.Registry
}

func (h *hybridRegistry) Register(ctx context.Context, aor string, bs ...lsp.Binding) ([]lsp.Binding, error) {
	final, err := h.reg.Register(ctx, aor, bs...)
	if err != nil {
		return nil, err
	}
	if err := h.local.Publish(ctx, aor, bs...); err != nil {
		h.log("local mirror refused a binding", "aor", aor, "err", err)
	}
	return final, nil
}
