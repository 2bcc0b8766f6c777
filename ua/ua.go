// Package ua lets a user agent be its own registrar (p2p-ipcom §4, "pure"
// P2P): holding an AOR certificate its domain issued (pki.IssueAOR: a URI
// SAN naming the AOR, signed by the domain's credential), it publishes its
// binding into the overlay through any member's client protocol, keeps it
// fresh, and removes it when it stops. No registrar takes part: replicas
// verify the AOR certificate and its domain's, and a proxy of any domain
// finds the binding as it finds a registrar's.
//
// A UA embeds it as
//
//	p, err := ua.Start(ctx, ua.Config{Credential: cred, TrustAnchors: anchors,
//		Overlay: "public", Nodes: nodes, AOR: "sip:alice@a.example", Contact: "sip:alice@198.51.100.7:5060"})
//	...
//	defer p.Close() // removes the binding
package ua

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
)

// ErrConfig is returned for an unusable Config.
var ErrConfig = errors.New("ua: config")

// Config is a UA's self-registration.
type Config struct {
	// Credential: the AOR certificate (chain: it, then its domain's
	// certificate) and its key. Required; it must cover AOR.
	Credential *lsp.Credential
	// TrustAnchors verify what the UA reads back. Required.
	TrustAnchors *x509.CertPool
	// Overlay is the overlay's name. Required.
	Overlay string
	// Nodes are overlay members to publish through, tried in order. At
	// least one.
	Nodes []overlay.AddrInfo
	// PSK: the overlay's private-network key; nil for an open overlay.
	PSK overlay.PSK
	// Records: "private" or "clear", how the overlay keeps records
	// (overlay.records); "" takes the word of the node it publishes
	// through (lsp.ClientConfig.Records).
	Records string
	// AOR and the Contact it is reached at. Required.
	AOR, Contact string
	// Expires is the binding's lifetime; it is refreshed at half of it.
	// Default 1h.
	Expires time.Duration
	// Q, Instance, RegID: as a REGISTER's Contact parameters (optional).
	Q        float64
	Instance string
	RegID    uint32
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Credential == nil:
		return c, fmt.Errorf("%w: no credential (the AOR certificate and its key)", ErrConfig)
	case c.TrustAnchors == nil:
		return c, fmt.Errorf("%w: no trust anchors", ErrConfig)
	case c.Overlay == "":
		return c, fmt.Errorf("%w: no overlay name", ErrConfig)
	case len(c.Nodes) == 0:
		return c, fmt.Errorf("%w: no overlay node to publish through", ErrConfig)
	case c.Contact == "":
		return c, fmt.Errorf("%w: no contact", ErrConfig)
	case c.Expires < 0:
		return c, fmt.Errorf("%w: negative expiry", ErrConfig)
	}
	canon, err := lsp.Canonical(c.AOR)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if !c.Credential.Authorizes(canon) {
		return c, fmt.Errorf("%w: the credential %q does not cover %s", ErrConfig, c.Credential.Leaf.Subject.CommonName, canon)
	}
	c.AOR = canon
	if exp := expiry(c.Credential); !time.Now().Before(exp) {
		return c, fmt.Errorf("%w: the credential expired at %s (the AOR certificate, or its domain's)", ErrConfig, exp.UTC().Format(time.RFC3339))
	}
	if c.Expires == 0 {
		c.Expires = time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Target is a Config of the overlay name whose members are nodes
// (multiaddrs with /p2p/PEER-ID), with the trust anchors of anchorFiles
// (PEM) and the private-network key of pskFile ("" for none): where a UA
// publishes. The caller adds the credential and the binding.
func Target(name string, nodes, anchorFiles []string, pskFile string) (Config, error) {
	if name == "" || len(nodes) == 0 || len(anchorFiles) == 0 {
		return Config{}, fmt.Errorf("%w: an overlay name, its members and its trust anchors go together", ErrConfig)
	}
	infos, err := overlay.ParseAddrInfos(nodes)
	if err != nil {
		return Config{}, err
	}
	pool, err := lsp.LoadTrustAnchors(anchorFiles...)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{TrustAnchors: pool, Overlay: name, Nodes: infos}
	if pskFile != "" {
		if cfg.PSK, err = overlay.LoadPSK(pskFile); err != nil {
			return Config{}, err
		}
	}
	return cfg, nil
}

// expiry is when the first certificate of c's chain expires.
func expiry(c *lsp.Credential) time.Time {
	exp := c.Leaf.NotAfter
	for _, der := range c.Chain {
		if cert, err := x509.ParseCertificate(der); err == nil && cert.NotAfter.Before(exp) {
			exp = cert.NotAfter
		}
	}
	return exp
}

// Publish publishes cfg's binding once, through the first of cfg.Nodes that
// answers, and returns the binding written.
func Publish(ctx context.Context, cfg Config) (lsp.Binding, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return lsp.Binding{}, err
	}
	return publish(ctx, cfg)
}

func publish(ctx context.Context, cfg Config) (lsp.Binding, error) {
	c, err := dial(ctx, cfg)
	if err != nil {
		return lsp.Binding{}, err
	}
	defer c.Close()
	b := cfg.binding()
	if err := c.Publish(ctx, cfg.AOR, b); err != nil {
		return lsp.Binding{}, fmt.Errorf("ua: publish %s through %s: %w", cfg.AOR, c.Server().ID, err)
	}
	return b, nil
}

func (c Config) binding() lsp.Binding {
	return lsp.Binding{Contact: c.Contact, Expires: time.Now().Add(c.Expires), Q: c.Q, Instance: c.Instance, RegID: c.RegID}
}

func dial(ctx context.Context, cfg Config) (*lsp.Client, error) {
	return lsp.Dial(ctx, lsp.DialConfig{ClientConfig: lsp.ClientConfig{Overlay: cfg.Overlay,
		Credential: cfg.Credential, TrustAnchors: cfg.TrustAnchors, Records: cfg.Records}, Candidates: cfg.Nodes, PSK: cfg.PSK})
}

// Publisher keeps a binding published: Start publishes it, a goroutine
// refreshes it at half its lifetime (retrying a failed refresh sooner),
// and Close removes it.
type Publisher struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	refreshes int
	lastErr   error
}

// Start publishes cfg's binding (an error if that fails) and keeps it
// published until Close.
func Start(ctx context.Context, cfg Config) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := publish(ctx, cfg); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go p.refresh(rctx)
	return p, nil
}

// retryAfter is the wait after a failed refresh, at most (a quarter of the
// lifetime, if shorter).
const retryAfter = 30 * time.Second

func (p *Publisher) refresh(ctx context.Context) {
	defer close(p.done)
	wait := max(p.cfg.Expires/2, time.Second)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if exp := expiry(p.cfg.Credential); !time.Now().Before(exp) {
			p.mu.Lock()
			p.lastErr = fmt.Errorf("ua: %s: the credential expired at %s; the binding lapses", p.cfg.AOR, exp.UTC().Format(time.RFC3339))
			p.mu.Unlock()
			p.cfg.Logger.Error("ua: refreshing stopped", "aor", p.cfg.AOR, "err", p.lastErr)
			return
		}
		pctx, cancel := context.WithTimeout(ctx, min(p.cfg.Expires/4, retryAfter)+10*time.Second)
		_, err := publish(pctx, p.cfg)
		cancel()
		p.mu.Lock()
		p.lastErr = err
		if err == nil {
			p.refreshes++
		}
		p.mu.Unlock()
		wait = max(p.cfg.Expires/2, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = max(min(p.cfg.Expires/4, retryAfter), time.Second)
			p.cfg.Logger.Warn("ua: refresh failed; retrying", "aor", p.cfg.AOR, "in", wait, "err", err)
		}
	}
}

// Stopped is closed when refreshing stops: at Close, or when the
// credential expired (Refreshes says so).
func (p *Publisher) Stopped() <-chan struct{} { return p.done }

// Refreshes returns how many refreshes succeeded, and the last one's error
// (nil after a success).
func (p *Publisher) Refreshes() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshes, p.lastErr
}

// Close stops refreshing and removes the binding (as a REGISTER with
// expires 0 would), within ctx.
func (p *Publisher) Close(ctx context.Context) error {
	p.cancel()
	<-p.done
	c, err := dial(ctx, p.cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	b := p.cfg.binding()
	if err := c.Remove(ctx, p.cfg.AOR, b.ID()); err != nil {
		return fmt.Errorf("ua: remove %s: %w", p.cfg.AOR, err)
	}
	return nil
}
