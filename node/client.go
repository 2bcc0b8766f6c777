package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
)

// Client is a location-service client of the node of a config file (or of
// its bootstrap peers): what lsnode's lookup, publish, remove, status and
// relays commands ask through.
type Client struct {
	*lsp.Client
	Config *Config // the config of the node dialled
	// Fallback: the node did not answer, one of its bootstrap peers did
	// (Server says which).
	Fallback bool
}

// Connect loads the config at path and dials its node (Dial); withCred
// signs the client's writes with the node's domain credential, which the
// node must have; strict asks the node alone, never its bootstrap peers.
// Close the client when done.
func Connect(ctx context.Context, path string, withCred, strict bool) (*Client, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if withCred && cfg.Domain == "" {
		return nil, fmt.Errorf("node %q has no domain credential: publish needs the config of a domain's node", cfg.Name)
	}
	key, err := overlay.LoadIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return nil, err
	}
	self, err := overlay.PeerIDOf(key)
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx, cfg, withCred, strict)
	if err != nil {
		return nil, err
	}
	return &Client{Client: c, Config: cfg, Fallback: c.Server().ID != self}, nil
}

// Status is what 'lsnode status' reports: the node of the config, the peer
// that answered (the node or one of its bootstrap peers) and what that
// peer tells about itself (lsp.NodeInfo).
type Status struct {
	AnsweredBy   string   `json:"answered_by"`
	Node         string   `json:"node"`
	Overlay      string   `json:"overlay"`
	Reachability string   `json:"reachability"`
	RelayedAddrs []string `json:"relayed_addrs,omitempty"`
	SizeEstimate int      `json:"size_estimate"`
}

// Status asks the answering peer for its Status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return Status{}, err
	}
	return Status{AnsweredBy: c.Server().ID.String(), Node: c.Config.Name, Overlay: c.Config.Overlay.Name,
		Reachability: info.Reachability, RelayedAddrs: info.Relayed, SizeEstimate: info.Size}, nil
}

// Relay is a relay the overlay announces: its peer ID and TURN URIs.
type Relay struct {
	Peer string   `json:"peer"`
	URIs []string `json:"uris"`
}

// RelayList asks the answering peer which relays the overlay announces
// (lsp.Client.Relays), sorted by peer ID; none is an empty list.
func (c *Client) RelayList(ctx context.Context) ([]Relay, error) {
	relays, err := c.Relays(ctx)
	if err != nil {
		return nil, err
	}
	out := []Relay{}
	for id, uris := range relays {
		out = append(out, Relay{id, uris})
	}
	slices.SortFunc(out, func(a, b Relay) int { return strings.Compare(a.Peer, b.Peer) })
	return out, nil
}
