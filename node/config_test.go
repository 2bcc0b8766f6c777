package node

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigErrorsHaveLines: every unknown key, wrong type and duplicate
// in a file is reported at once, each with its line.
func TestConfigErrorsHaveLines(t *testing.T) {
	p := writeConfig(t, "bad.yaml", `# a node
name: n1
overlay:
  name: testnet
  gosip_interval: 1s
  max_conns_per_ip: many
  identity_key: id.key
trust_anchors: [ca.pem]
proxy:
  record_route: maybe
  static_peers:
    b.example: "sip:10.0.0.2"
lsp:
  replicas: 3
  replicas: 5
sipp: 127.0.0.1:5060
`)
	_, err := LoadConfig(p)
	var ce ConfigErrors
	if !errors.As(err, &ce) || !errors.Is(err, ErrConfig) {
		t.Fatalf("want ConfigErrors, got %v", err)
	}
	want := []string{
		`line 5: overlay.gosip_interval: unknown key (did you mean "gossip_interval"?)`,
		`line 6: overlay.max_conns_per_ip: want a whole number, got "many"`,
		`line 10: proxy.record_route: want true or false, got "maybe"`,
		`line 12: proxy.static_peers.b.example: want a list, got "sip:10.0.0.2"`,
		`line 15: lsp.replicas: key given twice`,
		`line 16: sipp: unknown key (did you mean "sip"?)`,
	}
	var got []string
	for _, e := range ce {
		got = append(got, e.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Broken YAML: the parser's line.
	if _, err := LoadConfig(writeConfig(t, "broken.yaml", "name: [n1\n")); err == nil || !strings.Contains(err.Error(), "line") {
		t.Fatalf("broken YAML: %v", err)
	}
	// Semantic checks still run after the file parses.
	if _, err := LoadConfig(writeConfig(t, "sem.yaml", "overlay: {name: x, identity_key: k}\ntrust_anchors: [ca.pem]\nsip: 127.0.0.1:5060\n")); err == nil || !strings.Contains(err.Error(), "needs a domain") {
		t.Fatalf("semantic error: %v", err)
	}
}

// TestConfigYAMLOverrides: a minimal YAML config, the same as JSON, with
// LSNODE_* variables and --set values on top (in that order).
func TestConfigYAMLOverrides(t *testing.T) {
	y := writeConfig(t, "n.yaml", `overlay:
  name: public
  identity_key: id.key
  listen: [/ip4/0.0.0.0/tcp/4001]
trust_anchors: [ca.pem]
`)
	j := writeConfig(t, "n.json", `{"overlay": {"name": "public", "identity_key": "id.key", "listen": ["/ip4/0.0.0.0/tcp/4001"]}, "trust_anchors": ["ca.pem"]}`)
	a, err := LoadConfig(y)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadConfig(j)
	if err != nil {
		t.Fatal(err)
	}
	a.dir, b.dir = "", ""
	a.lines, b.lines = nil, nil // a JSON file is on one line
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("YAML %+v != JSON %+v", a, b)
	}
	env := EnvOverrides([]string{"LSNODE_OVERLAY__GOSSIP_INTERVAL=2s", "LSNODE_LOG_LEVEL=debug", "LSNODE_TEST_LOG=1",
		"LSNODE_CONFIG=/x", "LSNODE_OVERLAY__BOOTSTRAP=[/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWQNsWoAn3qjwCUUMCo8LuN47Q1ZBqzCRPNkAoQ1eKBvWJ]", "PATH=/bin"})
	if len(env) != 3 {
		t.Fatalf("env overrides %q", env)
	}
	c, err := LoadConfigWith(y, append(env, "overlay.gossip_interval=3s", "proxy.nat_keepalive=5s", "admin=127.0.0.1:9100"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Overlay.GossipInterval) != 3*time.Second || c.LogLevel != "debug" || len(c.Overlay.Bootstrap) != 1 ||
		time.Duration(c.Proxy.NATKeepalive) != 5*time.Second || c.Admin != "127.0.0.1:9100" {
		t.Fatalf("overrides not applied: %+v", c)
	}
	// A bad override is reported like a bad line.
	if _, err := LoadConfigWith(y, []string{"overlay.max_conns_per_ip=lots", "nonsense"}); err == nil ||
		!strings.Contains(err.Error(), "overlay.max_conns_per_ip: want a whole number") || !strings.Contains(err.Error(), "key=value") {
		t.Fatalf("bad overrides: %v", err)
	}
	if _, err := LoadConfigWith(y, []string{"overlay.name.x=1"}); err == nil || !strings.Contains(err.Error(), "not a section") {
		t.Fatalf("override under a scalar: %v", err)
	}
}

// TestExampleConfig: the documented example passes the checks.
func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig("../lsnode.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Domain == "" || c.SIP == "" || c.Admin == "" {
		t.Fatalf("example config lost its settings: %+v", c)
	}
	if c.Registrar.MaxInFlight != 2048 || c.Proxy.MaxInFlight != 8192 {
		t.Fatalf("max_in_flight: registrar %d, proxy %d", c.Registrar.MaxInFlight, c.Proxy.MaxInFlight)
	}
	c.Proxy.MaxInFlight = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "max_in_flight") {
		t.Fatalf("negative proxy.max_in_flight: %v", err)
	}
	c.Proxy.MaxInFlight = 0
	for _, b := range []float64{1.5, math.NaN()} {
		c.Proxy.ShedBacklog = b
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "shed_backlog") {
			t.Fatalf("proxy.shed_backlog %v: %v", b, err)
		}
	}
	c.Proxy.ShedBacklog = -1 // never
	if err := c.Validate(); err != nil {
		t.Fatalf("proxy.shed_backlog -1: %v", err)
	}
}

// FuzzConfig: any file either loads or fails with ConfigErrors (or an
// error of reading it); never a panic.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("overlay: {name: x, identity_key: k}\ntrust_anchors: [a]\n"))
	f.Add([]byte(`{"overlay": {"name": "x"}, "lsp": {"replicas": "3"}}`))
	f.Add([]byte("proxy:\n  static_peers:\n    a: [1, 2]\n  media: [x]\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		c, err := parseConfig(b, []string{"overlay.gossip_interval=1s"})
		if err == nil && c == nil {
			t.Fatal("nil config without an error")
		}
		var ce ConfigErrors
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
