package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not json":         `{`,
		"unknown field":    `{"overlay":{"name":"x","identity_key":"k"},"trust_anchors":["ca.pem"],"bogus":1}`,
		"no overlay name":  `{"overlay":{"identity_key":"k"},"trust_anchors":["ca.pem"]}`,
		"no identity":      `{"overlay":{"name":"x"},"trust_anchors":["ca.pem"]}`,
		"no trust anchors": `{"overlay":{"name":"x","identity_key":"k"}}`,
		"domain, no cert":  `{"domain":"a.example","overlay":{"name":"x","identity_key":"k"},"trust_anchors":["ca.pem"]}`,
		"bad duration":     `{"overlay":{"name":"x","identity_key":"k","gossip_interval":"soon"},"trust_anchors":["ca.pem"]}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := node.LoadConfig(p); !errors.Is(err, node.ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}

func TestConfigRoundTripAndPaths(t *testing.T) {
	dir := t.TempDir()
	m, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 2, Domains: []string{"a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(filepath.Join(dir, m.Nodes[0].Config))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != "a.example" || time.Duration(cfg.Overlay.GossipInterval) != 500*time.Millisecond {
		t.Fatalf("loaded %+v", cfg)
	}
	if got, want := cfg.Path(cfg.TrustAnchors[0]), filepath.Join(dir, "ca.pem"); got != want {
		t.Fatalf("relative path resolves to %s, want %s", got, want)
	}
}

func TestNewRefusesCredentialForAnotherDomain(t *testing.T) {
	dir := t.TempDir()
	m, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(filepath.Join(dir, m.Nodes[0].Config))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Domain = "b.example" // keeps a.example's certificate
	_, err = node.New(context.Background(), cfg, node.Options{InMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, node.ErrConfig) || !strings.Contains(err.Error(), "does not cover") {
		t.Fatalf("got %v, want a clear ErrConfig", err)
	}
}
