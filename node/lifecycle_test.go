package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// node's Close stops everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// oneNode returns the config of a one-node testnet's domain node (SIP,
// TURN, TURN credentials over HTTP) with an RTP relay, an admin listener
// and the HTTP API on free ports.
func oneNode(t *testing.T) *node.Config {
	t.Helper()
	dir := t.TempDir()
	m, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 1, Domains: []string{"a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(filepath.Join(dir, m.Nodes[0].Config))
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("0123456789abcdef-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Admin, cfg.API, cfg.APITokensFile = "127.0.0.1:0", "127.0.0.1:0", tokens
	cfg.Relay.MediaIP, cfg.Proxy.Media = "127.0.0.1", "always"
	return cfg
}

func get(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestNodeLifecycle: a node with every role answers on each of its HTTP
// listeners, and its Close stops all it started (TestMain checks).
func TestNodeLifecycle(t *testing.T) {
	n, err := node.New(context.Background(), oneNode(t), node.Options{InMemory: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	admin := "http://" + n.AdminAddr()
	if code, body := get(t, admin+"/readyz", ""); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	code, page := get(t, admin+"/metrics", "")
	for _, want := range []string{"lsnode_overlay_members 1", "lsnode_relay_allocations 0", "lsnode_lsp_stored_records 0",
		"lsnode_lsp_domain_certificate_expiry_timestamp_seconds", "lsnode_proxy_nat_flows 0", "lsnode_relay_media_sessions 0",
		"lsnode_node_ready 1", "go_goroutines ", "process_resident_memory_bytes "} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("/metrics: %d, no %q in\n%s", code, want, page)
		}
	}
	var st struct {
		Node         string `json:"node"`
		ID           string `json:"id"`
		MembersTotal int    `json:"members_total"`
		Members      []struct {
			Self bool `json:"self"`
		} `json:"members"`
		Certificates []struct {
			Role string `json:"role"`
		} `json:"certificates"`
		Relay *struct {
			TURN bool `json:"turn"`
		} `json:"relay"`
		Proxy *struct{} `json:"proxy"`
	}
	_, body := get(t, admin+"/dashboard/api/state", "")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.ID != n.Overlay().ID().String() || st.MembersTotal != 1 ||
		len(st.Members) != 1 || !st.Members[0].Self || len(st.Certificates) != 1 || st.Certificates[0].Role != "domain" ||
		st.Relay == nil || !st.Relay.TURN || st.Proxy == nil {
		t.Errorf("dashboard state %v: %s", err, body)
	}
	if code, body := get(t, "http://"+n.APIAddr()+"/v1/aors/sip:nobody@a.example/bindings", "Bearer 0123456789abcdef-token"); code != 404 {
		t.Errorf("API lookup: %d %s", code, body)
	}
	if code, _ := get(t, "http://"+n.HTTPAddr()+"/turn/credentials", ""); code != 401 {
		t.Errorf("TURN credentials without digest: %d", code)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestNewUnwinds: a start step that fails (the API's address is taken)
// stops every part the steps before it started.
func TestNewUnwinds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := oneNode(t)
	cfg.API = ln.Addr().String()
	n, err := node.New(context.Background(), cfg, node.Options{InMemory: true, Logger: quiet()})
	if err == nil || n != nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("New with a taken API address: %v", err)
	}
	cfg.API, cfg.APITokensFile = "127.0.0.1:0", filepath.Join(t.TempDir(), "none")
	if _, err := node.New(context.Background(), cfg, node.Options{InMemory: true, Logger: quiet()}); !errors.Is(err, node.ErrConfig) {
		t.Fatalf("New without its tokens file: %v", err)
	}
}

// TestMetricNamesInDocs: every lsnode metric the README, the docs, the
// alert rules and the Grafana dashboard name is one a node registers
// (go_* and process_* too, in the packaging files).
func TestMetricNamesInDocs(t *testing.T) {
	n, err := node.New(context.Background(), oneNode(t), node.Options{InMemory: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	known := map[string]bool{}
	for _, name := range n.Metrics().Names() {
		known[name] = true
	}
	files, _ := filepath.Glob("../docs/*.md")
	pkg, _ := filepath.Glob("../packaging/*/*")
	files = append(append(files, "../README.md"), pkg...)
	ours := regexp.MustCompile(`\blsnode_(?:node|lsp|overlay|proxy|registrar|relay|sip)_[a-z0-9_]+`)
	std := regexp.MustCompile(`\b(?:go|process)_[a-z0-9_]+`)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names := ours.FindAllString(string(b), -1)
		if strings.HasPrefix(f, "../packaging/") {
			names = append(names, std.FindAllString(string(b), -1)...)
		}
		for _, name := range names {
			base := name
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if trimmed, ok := strings.CutSuffix(name, suffix); ok && known[trimmed] {
					base = trimmed
				}
			}
			if !known[base] {
				t.Errorf("%s names %s, which no node registers", f, name)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Fatalf("checked %d metric names, want at least 40", checked)
	}
}
