package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/pki"
	"github.com/lsnode/lsnode/registrar"
)

// writeCA writes a CA certificate to dir/ca.pem and returns the CA.
func writeCA(t *testing.T, dir string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test", "lsnode test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCertPEM(filepath.Join(dir, "ca.pem"), ca.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	return ca
}

// domainDir writes what a.example's node reads: the CA, a domain
// certificate and key, a users file, an API token file; and b.example's
// certificate (a certificate for another domain).
func domainDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca := writeCA(t, dir)
	for _, d := range []string{"a.example", "b.example"} {
		der, key, err := ca.IssueDomain([]string{d}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteCertPEM(filepath.Join(dir, d+".pem"), der); err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteKeyPEM(filepath.Join(dir, d+".key"), key); err != nil {
			t.Fatal(err)
		}
	}
	for file, realm := range map[string]string{"users.json": "a.example", "users-b.json": "b.example"} {
		uf := registrar.UsersFile{Realm: realm, Users: []registrar.UserHash{registrar.NewUserHash("alice", "sip:alice@"+realm, realm, "pw")}}
		if err := uf.Save(filepath.Join(dir, file)); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{"tokens": "t0ken-of-32-characters-or-more-xx\n", "junk.pem": "not a certificate\n", "short-tokens": "short\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goodConfig is a.example's node with every role on. Line numbers matter
// to the table below.
const goodConfig = `name: n1
domain: a.example
cert_file: a.example.pem
key_file: a.example.key
trust_anchors: [ca.pem]
overlay:
  name: public
  identity_key: id.key
  listen: [/ip4/127.0.0.1/tcp/0]
  bootstrap: [/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWHe1X5455uzPDV2xL3Kkzxa4PNtbBTG9UjDaa8owofqdt]
sip: 127.0.0.1:5060
turn: 127.0.0.1:3478
http: 127.0.0.1:8080
admin: 127.0.0.1:9100
api: 127.0.0.1:8081
api_tokens_file: tokens
registrar:
  users_file: users.json
proxy:
  cache_ttl: 30s
  trusted_networks: [127.0.0.0/8]
relay:
  media_ip: 127.0.0.1
  media_ports: 40000-40999
`

// TestCheckFindsWhatRunRefuses: each bad config is refused by both
// CheckConfig ('config check') and LoadConfigs ('run') with the same
// words, at the line of the key; a config with several problems gets all
// of them.
func TestCheckFindsWhatRunRefuses(t *testing.T) {
	dir := domainDir(t)
	cases := []struct{ name, from, to, want string }{
		{"sip without a port", "sip: 127.0.0.1:5060", "sip: 127.0.0.1", `line 11: sip: "127.0.0.1": want HOST:PORT`},
		{"port out of range", "sip: 127.0.0.1:5060", "sip: 127.0.0.1:506000", `line 11: sip: "127.0.0.1:506000": port "506000": want 0 to 65535`},
		{"admin without a port", "admin: 127.0.0.1:9100", "admin: localhost", `line 14: admin: "localhost": want HOST:PORT`},
		{"listen not a multiaddr", "listen: [/ip4/127.0.0.1/tcp/0]", "listen: [127.0.0.11:4001]", `line 9: overlay.listen[0]: "127.0.0.11:4001": not a multiaddr`},
		{"placeholder peer ID", "p2p/12D3KooWHe1X5455uzPDV2xL3Kkzxa4PNtbBTG9UjDaa8owofqdt", "p2p/12D3KooW...", `line 10: overlay.bootstrap[0]: "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...": invalid value "12D3KooW..." for protocol p2p`},
		{"bootstrap without a peer ID", "/tcp/4001/p2p/12D3KooWHe1X5455uzPDV2xL3Kkzxa4PNtbBTG9UjDaa8owofqdt", "/tcp/4001", `line 10: overlay.bootstrap[0]: "/ip4/127.0.0.1/tcp/4001": no /p2p/PEER-ID at its end`},
		{"a /33", "[127.0.0.0/8]", "[127.0.0.0/33]", `line 21: proxy.trusted_networks[0]: "127.0.0.0/33" is not a CIDR`},
		{"range upside down", "40000-40999", "5000-4000", `line 24: relay.media_ports: "5000-4000": want 1 <= LOW <= HIGH <= 65535`},
		{"missing cert_file", "cert_file: a.example.pem", "cert_file: gone.pem", `line 3: cert_file: gone.pem: no such file or directory`},
		{"certificate of another domain", "a.example.pem\nkey_file: a.example.key", "b.example.pem\nkey_file: b.example.key", `line 3: cert_file: certificate b.example.pem does not cover domain "a.example"`},
		{"key of another certificate", "key_file: a.example.key", "key_file: b.example.key", `line 3: cert_file: a.example.pem: tls: private key does not match public key`},
		{"trust anchor not a certificate", "trust_anchors: [ca.pem]", "trust_anchors: [ca.pem, junk.pem]", `line 5: trust_anchors[1]: no certificate in`},
		{"users file missing", "users_file: users.json", "users_file: nobody.json", `line 18: registrar.users_file: `},
		{"users file of another realm", "users_file: users.json", "users_file: users-b.json", `line 18: registrar.users_file: users-b.json: realm "b.example", but the domain is "a.example"`},
		{"cache_ttl without a unit", "cache_ttl: 30s", "cache_ttl: 30", `line 20: proxy.cache_ttl: want a duration like "30s" or "1m30s", got "30"`},
		{"a choice", "  users_file: users.json", "  users_file: users.json\n  mode: statefull", `line 19: registrar.mode: "statefull": want stateless, local, hybrid`},
		{"domain overlay of a stateless registrar", "  users_file: users.json", "  users_file: users.json\n  domain_overlay:\n    listen: [/ip4/127.0.0.1/tcp/4101]",
			`line 19: registrar.domain_overlay: is for registrar.mode local or hybrid`},
		{"domain overlay bootstrap without a peer ID", "  users_file: users.json", "  users_file: users.json\n  mode: local\n  domain_overlay:\n    listen: [/ip4/127.0.0.1/tcp/4101]\n    bootstrap: [/ip4/127.0.0.1/tcp/4102]",
			`line 22: registrar.domain_overlay.bootstrap[0]: "/ip4/127.0.0.1/tcp/4102": no /p2p/PEER-ID at its end`},
		{"negative connection target", "  listen: [/ip4/127.0.0.1/tcp/0]", "  listen: [/ip4/127.0.0.1/tcp/0]\n  target_conns: -5",
			`line 10: overlay.target_conns: must be positive`},
		{"negative connection grace", "  listen: [/ip4/127.0.0.1/tcp/0]", "  listen: [/ip4/127.0.0.1/tcp/0]\n  conn_grace: -5s",
			`line 10: overlay.conn_grace: must be positive`},
		{"api tokens missing", "api_tokens_file: tokens", "api_tokens_file: gone", `line 16: api_tokens_file: gone: no such file or directory`},
		{"api token too short", "api_tokens_file: tokens", "api_tokens_file: short-tokens", `line 16: api_tokens_file: line 1: a token needs at least 16 characters`},
		{"a FIFO for a file", "users_file: users.json", "users_file: fifo", `line 18: registrar.users_file: fifo is not a regular file`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(goodConfig, tc.from) {
				t.Fatalf("the good config has no %q", tc.from)
			}
			p := filepath.Join(dir, strings.NewReplacer(" ", "_", "/", "_").Replace(tc.name)+".yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(goodConfig, tc.from, tc.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, checkErr := node.CheckConfig(p, nil)
			_, runErr := node.LoadConfigs([]string{p}, nil)
			if checkErr == nil || !strings.Contains(checkErr.Error(), tc.want) {
				t.Fatalf("check said %v\nwant %q", checkErr, tc.want)
			}
			t.Log(checkErr)
			if runErr == nil || runErr.Error() != checkErr.Error() {
				t.Fatalf("run said %v\ncheck said %v", runErr, checkErr)
			}
		})
	}

	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := node.CheckConfig(good, nil); err != nil {
		t.Fatalf("the good config: %v", err)
	}
	// Every problem at once, in the file's order of checks, each with its line.
	bad := strings.NewReplacer("sip: 127.0.0.1:5060", "sip: 127.0.0.1", "[127.0.0.0/8]", "[127.0.0.0/33]",
		"cert_file: a.example.pem", "cert_file: gone.pem", "40000-40999", "5000-4000").Replace(goodConfig)
	if err := os.WriteFile(good, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := node.CheckConfig(good, nil)
	if err == nil {
		t.Fatal("four problems, none reported")
	}
	for _, line := range []string{"line 11: sip:", "line 24: relay.media_ports:", "line 21: proxy.trusted_networks[0]:", "line 3: cert_file:"} {
		if !strings.Contains(err.Error(), line) {
			t.Errorf("%q missing from:\n%v", line, err)
		}
	}
	// An override has no line in the file: the key alone.
	if _, err := node.CheckConfig(filepath.Join(dir, "a_choice.yaml"), []string{"registrar.mode=local", "sip=x"}); err == nil ||
		!strings.Contains(err.Error(), "\nsip: \"x\": want HOST:PORT") {
		t.Fatalf("an override: %v", err)
	}
}
