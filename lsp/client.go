package lsp

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// ClientConfig configures a remote location-service client. Zero values
// take the defaults given per field; negative ones are refused (ErrConfig).
type ClientConfig struct {
	// Streams opens the client's streams: an *overlay.Dialer (see Dial),
	// or a member's *overlay.Overlay. Required.
	Streams overlay.Streams
	// Overlay is the overlay's name (sets the protocol ID). Required.
	Overlay string
	// Server is the lsnode to talk to. Its addresses, if given, are handed
	// to Streams when it keeps addresses (overlay.Dialer does); else
	// Streams must already know how to reach it.
	Server overlay.AddrInfo
	// Credential signs writes locally; nil: lookups only.
	Credential *Credential
	// TrustAnchors verify every binding read. Required.
	TrustAnchors *x509.CertPool
	// MaxClockSkew, MaxTTL, MaxMessage: as in Config. RequestTimeout
	// bounds one request to the server; default 10s.
	MaxClockSkew   time.Duration
	MaxTTL         time.Duration
	MaxMessage     int
	RequestTimeout time.Duration
	// Records: "private" or "clear", how the overlay keeps its records
	// (Config.PrivateRecords); "" (default): as the server's INFO says,
	// asked once before the first read or write.
	Records string
}

// withDefaults validates c, then returns it with every zero field set to
// its default. Errors wrap ErrConfig.
func (c ClientConfig) withDefaults() (ClientConfig, error) {
	switch {
	case c.Streams == nil:
		return c, fmt.Errorf("%w: client: no streams", ErrConfig)
	case c.Overlay == "":
		return c, fmt.Errorf("%w: client: no overlay name", ErrConfig)
	case c.Server.ID == "":
		return c, fmt.Errorf("%w: client: no server", ErrConfig)
	case c.TrustAnchors == nil:
		return c, fmt.Errorf("%w: client: no trust anchors", ErrConfig)
	case c.Records != "" && c.Records != "private" && c.Records != "clear":
		return c, fmt.Errorf("%w: client: records %q: want private or clear", ErrConfig, c.Records)
	}
	if err := nonNegative([]named{
		{"max clock skew", float64(c.MaxClockSkew)}, {"max TTL", float64(c.MaxTTL)},
		{"max message", float64(c.MaxMessage)}, {"request timeout", float64(c.RequestTimeout)},
	}); err != nil {
		return c, err
	}
	def(&c.MaxClockSkew, 30*time.Second)
	def(&c.MaxTTL, 7*24*time.Hour)
	def(&c.MaxMessage, DefaultMaxMessage)
	def(&c.RequestTimeout, 10*time.Second)
	return c, nil
}

// Client is the registrar/proxy side of the draft's split: it signs writes
// with its own domain credential and verifies reads itself, while a remote
// lsnode does the replication.
type Client struct {
	cfg      ClientConfig
	rpc      *rpc
	proto    overlay.Protocol
	verifier *Verifier
	clk      clock
	mu       sync.Mutex // guards records
	records  string     // "private" or "clear" once known
	owned    io.Closer  // the dialer Dial made for this client; nil: none
}

// addrBook is what a Streams that keeps addresses offers (overlay.Dialer).
type addrBook interface{ AddAddrs(overlay.AddrInfo) }

// NewClient returns a client of cfg.Server.
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if ab, ok := cfg.Streams.(addrBook); ok && len(cfg.Server.Addrs) > 0 {
		ab.AddAddrs(cfg.Server)
	}
	return &Client{
		cfg:      cfg,
		rpc:      newRPC(cfg.Streams, cfg.MaxMessage, cfg.RequestTimeout),
		proto:    overlay.Protocol(overlay.ProtocolPrefix(cfg.Overlay) + "/client/1.0.0"),
		verifier: NewVerifier(cfg.TrustAnchors, cfg.MaxClockSkew, cfg.MaxTTL),
	}, nil
}

// Close releases the client's pooled streams, and the dialer if Dial made
// it (a Streams given in ClientConfig is the caller's to close).
func (c *Client) Close() error {
	c.rpc.close()
	if c.owned != nil {
		return c.owned.Close()
	}
	return nil
}

// Server returns the node this client talks to (with Dial: the candidate
// that answered).
func (c *Client) Server() overlay.AddrInfo { return c.cfg.Server }

// Publish implements LocationService.
func (c *Client) Publish(ctx context.Context, aor string, bindings ...Binding) error {
	private, err := c.private(ctx)
	if err != nil {
		return err
	}
	canon, k, err := recordOf(private, aor)
	if err != nil {
		return err
	}
	es, err := prepare(c.cfg.Credential, &c.clk, canon, bindings, k)
	if err != nil {
		return err
	}
	return c.putEntries(ctx, es)
}

func (c *Client) putEntries(ctx context.Context, es []*entry) error {
	c.verifier.signedHere(es)
	_, err := c.rpc.call(ctx, c.cfg.Server.ID, c.proto, &message{Type: msgPut, Entries: es,
		Certs: flatten(chainsOf(c.cfg.Credential))})
	return err
}

// Lookup implements LocationService.
func (c *Client) Lookup(ctx context.Context, aor string) ([]Binding, error) {
	_, _, merged, err := c.get(ctx, aor)
	if err != nil {
		return nil, err
	}
	return liveBindings(merged, func(e *entry) string {
		ch, _ := c.verifier.chainFor(e.CertFP, nil) // verified (and cached) by get
		return subjectName(ch)
	}, time.Now()), nil
}

// get fetches and verifies the merged entries of aor.
func (c *Client) get(ctx context.Context, aor string) (string, *sealer, map[string]*entry, error) {
	private, err := c.private(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	canon, k, err := recordOf(private, aor)
	if err != nil {
		return "", nil, nil, err
	}
	name := k.nameOf(canon)
	reply, err := c.rpc.call(ctx, c.cfg.Server.ID, c.proto, &message{Type: msgGet, AORs: []string{name}})
	if err != nil {
		return "", nil, nil, err
	}
	merged := map[string]*entry{}
	var ok []*entry
	for _, e := range reply.Entries {
		if e.AOR != name {
			continue
		}
		if _, err := c.verifier.verify(e, reply.Certs); err != nil {
			continue // a reader discards what fails verification
		}
		ok = append(ok, e)
	}
	merge(merged, ok)
	return canon, k, k.openAll(merged, func(e *entry) bool {
		ch, _ := c.verifier.chainFor(e.CertFP, reply.Certs) // verified above
		return ch == nil || ch.by != nil
	}), nil
}

// Remove implements LocationService.
func (c *Client) Remove(ctx context.Context, aor string, ids ...string) error {
	if c.cfg.Credential == nil {
		return ErrNoCredential
	}
	canon, k, merged, err := c.get(ctx, aor)
	if err != nil {
		return err
	}
	current := make([]*entry, 0, len(merged))
	for _, e := range merged {
		current = append(current, e)
	}
	es, err := tombstones(c.cfg.Credential, &c.clk, canon, current, ids, k)
	if err != nil || len(es) == 0 {
		return err
	}
	return c.putEntries(ctx, es)
}

// private reports whether the overlay keeps private records: as configured,
// else as the server said (asked once; an older server's silence: clear).
func (c *Client) private(ctx context.Context) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.records == "" {
		c.records = c.cfg.Records
	}
	if c.records == "" {
		info, err := c.Info(ctx)
		if err != nil {
			return false, err
		}
		c.records = info.Records
		if c.records != "private" {
			c.records = "clear"
		}
	}
	return c.records == "private", nil
}

// OverlaySize asks the server for its estimate of the overlay's size.
func (c *Client) OverlaySize(ctx context.Context) (int, error) {
	reply, err := c.rpc.call(ctx, c.cfg.Server.ID, c.proto, &message{Type: msgInfo})
	if err != nil {
		return 0, err
	}
	return int(reply.Count), nil
}

// NodeInfo is what a node tells about itself (Client.Info).
type NodeInfo struct {
	Size         int      // its estimate of the overlay's size
	Reachability string   // "public", "private" or "unknown" ("" from older nodes)
	Relayed      []string // its circuit relay addresses (reservations)
	Records      string   // "private" or "clear" (Config.PrivateRecords; "" from older nodes)
}

// Info asks the server for its overlay size estimate, its reachability
// and its relayed addresses.
func (c *Client) Info(ctx context.Context) (NodeInfo, error) {
	reply, err := c.rpc.call(ctx, c.cfg.Server.ID, c.proto, &message{Type: msgInfo})
	if err != nil {
		return NodeInfo{}, err
	}
	info := NodeInfo{Size: int(reply.Count)}
	for _, kv := range reply.AORs {
		k, v, _ := strings.Cut(kv, " ")
		switch k {
		case "reachability":
			info.Reachability = v
		case "relayed":
			info.Relayed = append(info.Relayed, v)
		case "records":
			info.Records = v
		}
	}
	return info, nil
}

// Relays asks the server which relays the overlay announces: TURN URIs by
// peer ID.
func (c *Client) Relays(ctx context.Context) (map[string][]string, error) {
	reply, err := c.rpc.call(ctx, c.cfg.Server.ID, c.proto, &message{Type: msgRelays})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, e := range reply.AORs {
		id, uri, ok := strings.Cut(e, " ")
		if ok {
			out[id] = append(out[id], uri)
		}
	}
	return out, nil
}
