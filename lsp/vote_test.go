package lsp

import (
	"context"
	"errors"
	"testing"
)

// TestTallyInterrupted: an unproven refusal is the answer when the replicas
// ran out, but a write cut short by its context is unavailable (retryable),
// whatever a replica claimed without proof; a proven refusal is final
// either way.
func TestTallyInterrupted(t *testing.T) {
	doubt := errors.New("domain over its quota (unverifiable)")
	cases := []struct {
		name        string
		verdict     verdict
		interrupted error
		want        error
	}{
		{"doubt, replicas ran out", voteDoubt, nil, doubt},
		{"doubt, context ended", voteDoubt, context.DeadlineExceeded, ErrUnavailable},
		{"lie, context ended", voteLie, context.DeadlineExceeded, ErrUnavailable},
		{"proven refusal, context ended", voteRefused, context.DeadlineExceeded, doubt},
	}
	for _, c := range cases {
		tl := newTally(3, 2)
		tl.sent("p1")
		tl.count(c.verdict, answer{claim: doubt})
		if c.interrupted != nil {
			tl.failure, tl.interrupted = c.interrupted, true
		}
		err := tl.fail()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if c.interrupted != nil && errors.Is(err, ErrUnavailable) && !errors.Is(err, c.interrupted) {
			t.Errorf("%s: %v does not wrap %v", c.name, err, c.interrupted)
		}
	}
}
