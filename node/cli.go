package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
)

// What the lsnode command and package testnet do with nodes beyond
// starting one: several nodes (one per overlay) in one process, a node's
// peer ID, and a location-service client of a running node.

// LoadConfigs loads the config files at paths (overrides, key=value, as in
// LoadConfigWith), for nodes that run in one process: each keeps its own
// store, so no two may share a data_dir.
func LoadConfigs(paths, overrides []string) ([]*Config, error) {
	var cfgs []*Config
	for _, p := range paths {
		cfg, err := CheckConfig(p, overrides)
		if err != nil {
			return nil, err
		}
		cfgs = append(cfgs, cfg)
	}
	return cfgs, CheckStores(paths, cfgs)
}

// CheckStores refuses configs (read from paths) run in one process that
// share a data_dir: two nodes on one would mix their stores (and leveldb
// would refuse the second).
func CheckStores(paths []string, cfgs []*Config) error {
	dirs := map[string]string{}
	for i, cfg := range cfgs {
		if d := cfg.Path(cfg.Overlay.DataDir); d != "" {
			if other, ok := dirs[d]; ok {
				return fmt.Errorf("run: %s and %s share data_dir %s; every overlay needs its own store", other, paths[i], d)
			}
			dirs[d] = paths[i]
		}
	}
	return nil
}

// Refused reports whether err, from RunAll, is one that starting the node
// again will not mend: a config it refuses, or the federation's refusal
// of the node (its member certificate, its private-network key, a
// member's word).
func Refused(err error) bool {
	return errors.Is(err, ErrConfig) || errors.Is(err, overlay.ErrMembership)
}

// RunAll starts a node of each config and runs them until ctx ends, then
// closes them all. If one fails to start, those started are closed.
func RunAll(ctx context.Context, cfgs []*Config, opts Options) error {
	var nodes []*Node
	closeAll := func() error {
		var errs []error
		for _, n := range nodes {
			errs = append(errs, n.Close())
		}
		return errors.Join(errs...)
	}
	for _, cfg := range cfgs {
		n, err := New(ctx, cfg, opts)
		if err != nil {
			_ = closeAll()
			return err
		}
		nodes = append(nodes, n)
	}
	<-ctx.Done()
	if opts.Logger != nil {
		opts.Logger.Info("shutting down")
	}
	return closeAll()
}

// LoadPeerID loads the config at path and the peer ID of its node's
// identity key, creating the key if it does not exist yet (what a
// federation CA needs to enrol the node).
func LoadPeerID(path string) (*Config, overlay.PeerID, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, "", err
	}
	key, err := overlay.LoadOrCreateIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return nil, "", err
	}
	id, err := overlay.PeerIDOf(key)
	return cfg, id, err
}

// Dial connects a location-service client to the node of cfg (or, failing
// that, to one of its bootstrap peers) from a dialer of its own; withCred
// signs the client's writes with the node's domain credential. Close the
// client when done.
func Dial(ctx context.Context, cfg *Config, withCred bool) (*lsp.Client, error) {
	return dial(ctx, cfg, withCred, false)
}

// dial is Dial; strict asks the node alone, never its bootstrap peers.
func dial(ctx context.Context, cfg *Config, withCred, strict bool) (*lsp.Client, error) {
	dc, err := dialConfig(cfg, withCred, strict)
	if err != nil {
		return nil, err
	}
	return lsp.Dial(ctx, dc)
}

// DialConfigOf is how a client reaches the overlay through the node of
// the config at path: that node, then its bootstrap peers; the overlay's
// name, trust anchors and private-network key. No credential: a client
// brings its own (an AOR certificate, 'lsnode ua publish').
func DialConfigOf(path string) (lsp.DialConfig, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return lsp.DialConfig{}, err
	}
	return dialConfig(cfg, false, false)
}

// dialConfig is dial's config: the node itself first, then its bootstrap
// peers (strict: the node alone).
func dialConfig(cfg *Config, withCred, strict bool) (lsp.DialConfig, error) {
	key, err := overlay.LoadIdentity(cfg.Path(cfg.Overlay.IdentityKey))
	if err != nil {
		return lsp.DialConfig{}, err
	}
	id, err := overlay.PeerIDOf(key)
	if err != nil {
		return lsp.DialConfig{}, err
	}
	// The node itself first (on loopback if it listens everywhere), then
	// its bootstrap peers.
	var self []string
	for _, s := range cfg.Overlay.Listen {
		self = append(self, strings.Replace(s, "/ip4/0.0.0.0/", "/ip4/127.0.0.1/", 1)+"/p2p/"+id.String())
	}
	candidates, err := overlay.ParseAddrInfos(self)
	if err != nil {
		return lsp.DialConfig{}, err
	}
	boots, err := overlay.ParseAddrInfos(cfg.Overlay.Bootstrap)
	if err != nil {
		return lsp.DialConfig{}, err
	}
	records := "clear"
	if cfg.PrivateRecords() {
		records = "private"
	}
	dc := lsp.DialConfig{ClientConfig: lsp.ClientConfig{Overlay: cfg.Overlay.Name, Records: records}, Name: "node " + cfg.Name + " or its bootstrap peers",
		Candidates: append(candidates, boots...)}
	if strict {
		dc.Name, dc.Candidates = "node "+cfg.Name, candidates
	}
	if dc.TrustAnchors, err = cfg.LoadTrustAnchors(); err != nil {
		return lsp.DialConfig{}, err
	}
	if withCred {
		if dc.Credential, err = cfg.LoadCredential(); err != nil {
			return lsp.DialConfig{}, err
		}
	}
	fed, err := cfg.LoadFederation()
	if err != nil {
		return lsp.DialConfig{}, err
	}
	if fed != nil {
		dc.PSK = fed.PSK
	}
	return dc, nil
}
