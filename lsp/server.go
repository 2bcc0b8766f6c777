package lsp

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lsnode/lsnode/overlay"
)

// The client protocol's server side: what a node does for registrars,
// proxies and tools that are not overlay members (Client).

// handleClient answers one request of the client protocol.
func (s *Service) handleClient(ctx context.Context, from overlay.PeerID, m *message) *message {
	switch m.Type {
	case msgPut:
		return s.handlePut(ctx, from, m)
	case msgGet:
		return s.handleGet(ctx, from, m)
	case msgInfo:
		return s.handleInfo()
	case msgRelays:
		return s.handleRelays()
	}
	return errorReply(fmt.Errorf("%w: message type %d on the client protocol", ErrMalformed, m.Type))
}

// handlePut writes a client's signed entries: verified here, then a quorum
// write like Publish's.
func (s *Service) handlePut(ctx context.Context, from overlay.PeerID, m *message) *message {
	if len(m.Entries) == 0 {
		return errorReply(fmt.Errorf("%w: PUT without entries", ErrMalformed))
	}
	if !s.ov.Joined() {
		return errorReply(ErrNotJoined) // before verifying what the write would refuse anyway
	}
	// A PUT is written to R replicas per AOR: one token per AOR (the
	// request's own paid for the first).
	aors := map[string]bool{}
	for _, e := range m.Entries {
		aors[e.AOR] = true
	}
	if len(aors) > maxGetAORs {
		return errorReply(fmt.Errorf("%w: %d AORs in one PUT (at most %d)", ErrTooLarge, len(aors), maxGetAORs))
	}
	if !s.limit.allowN(from, len(aors)-1) {
		return errorReply(ErrRateLimited)
	}
	chains, err := s.verifyAll(m.Entries, m.Certs, nil)
	if err != nil {
		return errorReply(err)
	}
	if err := s.put(ctx, m.Entries, chains); err != nil {
		return errorReply(err)
	}
	return &message{Type: msgReply, Count: uint64(len(m.Entries))}
}

// handleGet reads AORs for a client: the merged records, which the client
// verifies again.
//
// Each AOR is a read of R replicas, maybe more rounds: it is charged to the
// peer as it is done, one token per round (the request's own token paid for
// the first AOR's first round), and a GET holds at most maxGetAORs.
func (s *Service) handleGet(ctx context.Context, from overlay.PeerID, m *message) *message {
	if len(m.AORs) > maxGetAORs {
		return errorReply(fmt.Errorf("%w: %d AORs in one GET (at most %d)", ErrTooLarge, len(m.AORs), maxGetAORs))
	}
	reply := &message{Type: msgReply}
	chains := map[[32]byte][][]byte{}
	for i, aor := range m.AORs {
		canon, err := Canonical(aor)
		if err != nil {
			return errorReply(err)
		}
		if i > 0 && !s.limit.allowN(from, 1) {
			return errorReply(ErrRateLimited)
		}
		rounds := 0
		merged, cs, err := s.fetchTraced(ctx, canon, nil, &rounds)
		s.limit.charge(from, rounds-1)
		if err != nil {
			return errorReply(err)
		}
		for _, e := range merged {
			reply.Entries = append(reply.Entries, e)
			chains[e.CertFP] = cs[e.CertFP]
		}
	}
	reply.Certs = flatten(chains)
	return reply
}

// handleInfo tells about this node: the size estimate in Count; "key value"
// facts in AORs (older clients read only Count).
func (s *Service) handleInfo() *message {
	reach := strings.ToLower(strings.TrimPrefix(s.ov.Reachability().String(), "Reachability"))
	records := "clear"
	if s.cfg.PrivateRecords {
		records = "private"
	}
	reply := &message{Type: msgReply, Count: uint64(s.ov.Size()), AORs: []string{"reachability " + reach, "records " + records}}
	for _, a := range s.ov.RelayedAddrs() {
		if len(reply.AORs) < maxAORs {
			reply.AORs = append(reply.AORs, "relayed "+a.String())
		}
	}
	return reply
}

// handleRelays lists the TURN relays the overlay announces, "peer uri".
func (s *Service) handleRelays() *message {
	reply := &message{Type: msgReply}
	for id, svcs := range s.ov.Services() {
		for _, sv := range svcs {
			if (strings.HasPrefix(sv, "turn:") || strings.HasPrefix(sv, "turns:")) && len(reply.AORs) < maxAORs {
				reply.AORs = append(reply.AORs, id.String()+" "+sv)
			}
		}
	}
	slices.Sort(reply.AORs)
	return reply
}
