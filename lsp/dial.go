package lsp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// dialTimeout bounds the connection attempt to one candidate.
const dialTimeout = 3 * time.Second

// DialConfig configures Dial: which nodes to try, and the client to make of
// the one that answers.
type DialConfig struct {
	// ClientConfig is the client's; Dial sets its Streams and Server.
	ClientConfig
	// Name, if set, names the server in Dial's error ("node x"); default:
	// the candidates' short peer IDs.
	Name string
	// Candidates are tried in order (a node, then its bootstrap peers,
	// say); the first that connects is the client's server. At least one.
	Candidates []overlay.AddrInfo
	// PSK is the overlay's private-network key; nil: none.
	PSK overlay.PSK
}

// clientConfig is the ClientConfig of a client of server over streams.
func (c DialConfig) clientConfig(streams overlay.Streams, server overlay.AddrInfo) ClientConfig {
	cc := c.ClientConfig
	cc.Streams, cc.Server = streams, server
	return cc
}

// Dial connects to the first reachable of cfg.Candidates from a dialer of
// its own (an ephemeral identity, no listener: not an overlay member),
// giving each candidate dialTimeout, and returns a client of it that owns
// the dialer: Client.Close closes both.
func Dial(ctx context.Context, cfg DialConfig) (*Client, error) {
	if len(cfg.Candidates) == 0 {
		return nil, fmt.Errorf("%w: dial: no candidates", ErrConfig)
	}
	for i, ai := range cfg.Candidates {
		if ai.ID == "" {
			return nil, fmt.Errorf("%w: dial: candidate %d has no peer ID", ErrConfig, i)
		}
	}
	d, err := overlay.NewDialer(cfg.PSK)
	if err != nil {
		return nil, fmt.Errorf("lsp: dial: %w", err)
	}
	// The rest of the config is the client's: checked before any dial.
	if _, err := cfg.clientConfig(d, cfg.Candidates[0]).withDefaults(); err != nil {
		d.Close()
		return nil, err
	}
	var errs []error
	for _, ai := range cfg.Candidates {
		cctx, cancel := context.WithTimeout(ctx, dialTimeout)
		err := d.Connect(cctx, ai)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ai.ID.ShortString(), err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c, err := NewClient(cfg.clientConfig(d, ai))
		if err != nil {
			d.Close()
			return nil, err
		}
		c.owned = d
		return c, nil
	}
	d.Close()
	return nil, fmt.Errorf("lsp: cannot reach %s (is it running?): %w", cfg.server(), errors.Join(errs...))
}

// server names what Dial tried to reach.
func (c DialConfig) server() string {
	if c.Name != "" {
		return c.Name
	}
	ids := make([]string, len(c.Candidates))
	for i, ai := range c.Candidates {
		ids[i] = ai.ID.ShortString()
	}
	return strings.Join(ids, " or ")
}
