package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// TestHTTPAPI: another SIP server's registrar (as Kamailio's http_client
// would) publishes a binding through a.example's HTTP API; b.example's
// proxy then finds it in the overlay and routes a sipp call to it. The
// API refuses a missing or wrong token (401), another domain's AOR (403)
// and bad bodies (400); a removal (DELETE, or POST with "expires": 0)
// empties the AOR (404). The paths and
// methods are the ones docs/openapi.yaml documents.
func TestHTTPAPI(t *testing.T) {
	token := "api-token-for-the-test-0123456789"
	nw, aIdx, bIdx := startAPINet(t, token)
	base := "http://" + nw.Node(aIdx).APIAddr() + "/v1/aors/"
	do := func(method, aor, tok, body string, query ...string) (int, string) {
		t.Helper()
		u := base + url.PathEscape(aor) + "/bindings"
		if len(query) > 0 {
			u += "?" + query[0]
		}
		req, err := http.NewRequest(method, u, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	carol := "sip:carol@a.example"
	uasPort := freeUDPPort(t)
	contact := fmt.Sprintf("sip:carol@127.0.0.1:%d", uasPort)
	pub := fmt.Sprintf(`{"contact": %q, "expires": 600, "q": 0.5}`, contact)
	for _, c := range []struct {
		tok, aor, body string
		want           int
	}{
		{"", carol, pub, 401},
		{"wrong-token-wrong-token", carol, pub, 401},
		{token, "sip:dave@b.example", pub, 403},
		{token, "not an aor", pub, 400},
		{token, carol, `{"contact": "sip:x@127.0.0.1"}`, 400},
		{token, carol, `{"contact": "sip:x@127.0.0.1", "expires": -1}`, 400},
		{token, carol, `{"contact": "", "expires": 0}`, 400},
		{token, carol, `{"contact": "sip:x@127.0.0.1", "expires": 60, "colour": "red"}`, 400},
		{token, carol, `{"contact": `, 400},
		{token, carol, `{"expires": 60}`, 400},
	} {
		if code, body := do("POST", c.aor, c.tok, c.body); code != c.want || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s (token %q) %s: %d %s, want %d", c.aor, c.tok, c.body, code, body, c.want)
		}
	}
	if code, body := do("GET", carol, token, ""); code != 404 {
		t.Fatalf("GET before publishing: %d %s", code, body)
	}
	st := time.Now()
	// The answer is the binding as stored: its write time and signer.
	if code, body := do("POST", carol, token, pub); code != 201 || strings.Contains(body, "0001-01-01") || !strings.Contains(body, `"signer"`) {
		t.Fatalf("publish: %d %s", code, body)
	}
	published := time.Since(st)
	code, body := do("GET", carol, token, "")
	var got struct {
		AOR      string
		Bindings []struct{ Contact, Signer string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Bindings) != 1 || got.Bindings[0].Contact != contact {
		t.Fatalf("GET: %d %s", code, body)
	}
	// b.example's proxy routes a call to the published contact.
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "30s")
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(bIdx).SIPAddr(), "-s", "carol", "-key", "domain", "a.example",
		"-m", "1", "-timeout", "30s")
	if err := uac.wait(40 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := nw.Node(bIdx).Proxy().Stats(); st.Direct < 1 {
		t.Fatalf("b.example's proxy sent nothing straight to the contact: %+v", st)
	}
	if code, body := do("DELETE", carol, token, "", "contact="+url.QueryEscape(contact)); code != 204 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, body := do("GET", carol, token, ""); code != 404 {
		t.Fatalf("GET after DELETE: %d %s", code, body)
	}
	// The same removal by POST with "expires": 0, for HTTP clients that
	// only GET and POST (Kamailio 5.6's http_client).
	if code, body := do("POST", carol, token, pub); code != 201 {
		t.Fatalf("republish: %d %s", code, body)
	}
	if code, body := do("POST", carol, token, fmt.Sprintf(`{"contact": %q, "expires": 0}`, contact)); code != 204 {
		t.Fatalf("POST expires 0: %d %s", code, body)
	}
	if code, body := do("GET", carol, token, ""); code != 404 {
		t.Fatalf("GET after POST expires 0: %d %s", code, body)
	}
	// The documented API is the served one.
	b, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	ops := doc.Paths["/v1/aors/{aor}/bindings"]
	for _, method := range []string{"get", "post", "delete"} {
		if ops[method] == nil {
			t.Errorf("docs/openapi.yaml has no %s /v1/aors/{aor}/bindings", method)
		}
	}
	t.Logf("HTTP API publish %v; the call through b.example's proxy reached the published contact", published.Round(time.Microsecond))
}

// TestKamailioHTTPAPI: Kamailio, as another SIP server's registrar with
// its own location table, publishes each REGISTER's binding into the
// overlay through a.example's HTTP API with its http_client module
// (testdata/kamailio/http-registrar.cfg); b.example's lsnode proxy then
// finds the binding in the overlay and routes a sipp call to the UA. The
// UA's unregistration (Expires: 0) removes the binding from the overlay.
func TestKamailioHTTPAPI(t *testing.T) {
	for _, tool := range []string{"kamailio", "sipp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian: kamailio, kamailio-utils-modules, sip-tester; scripts/deps test installs them)", tool)
		}
	}
	token := "kamailio-token-0123456789abcdef"
	nw, aIdx, bIdx := startAPINet(t, token)
	kamAddr := fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t))
	cfg, _ := filepath.Abs("testdata/kamailio/http-registrar.cfg")
	var kamLog lockedBuffer // written by exec's copying goroutine
	kam := exec.Command("kamailio", "-f", cfg, "-l", "udp:"+kamAddr, "-DD", "-E", "-m", "64", "-M", "16", "-w", t.TempDir(),
		"-A", `API="http://`+nw.Node(aIdx).APIAddr()+`"`, "-A", `TOKEN="`+token+`"`)
	kam.Stdout, kam.Stderr = &kamLog, &kamLog
	kam.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := kam.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-kam.Process.Pid, syscall.SIGKILL)
		_ = kam.Wait()
	})
	// carol's UA registers with Kamailio (no digest in this config).
	uasPort := freeUDPPort(t)
	contact := fmt.Sprintf("sip:carol@127.0.0.1:%d", uasPort)
	register := func(expires int) {
		t.Helper()
		reg := startSippText(t, fmt.Sprintf("register-kamailio-%d", expires), `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:a.example SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:carol@a.example>;tag=[call_number]
      To: <sip:carol@a.example>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <`+contact+`>
      Expires: `+fmt.Sprint(expires)+`
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
`, freeUDPPort(t), kamAddr, "-m", "1", "-timeout", "20s")
		// Kamailio needs a moment to come up: sipp retransmits meanwhile.
		if err := reg.wait(30 * time.Second); err != nil {
			t.Fatalf("REGISTER (Expires %d) to Kamailio: %v\nkamailio:\n%s", expires, err, tail(kamLog.Bytes()))
		}
	}
	register(600)
	st := time.Now()
	waitFor(t, 10*time.Second, "the binding Kamailio published", func() error {
		bs, err := nw.Node(bIdx).Location().Lookup(context.Background(), "sip:carol@a.example")
		if err != nil || len(bs) == 0 || bs[0].Contact != contact {
			return fmt.Errorf("%v %v\nkamailio:\n%s", bs, err, tail(kamLog.Bytes()))
		}
		return nil
	})
	visible := time.Since(st)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "30s")
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(bIdx).SIPAddr(), "-s", "carol", "-key", "domain", "a.example",
		"-m", "1", "-timeout", "30s")
	if err := uac.wait(40 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// carol unregisters: Kamailio removes the binding from the overlay too.
	register(0)
	waitFor(t, 10*time.Second, "the binding Kamailio removed to go", func() error {
		bs, err := nw.Node(bIdx).Location().Lookup(context.Background(), "sip:carol@a.example")
		if err != nil || len(bs) != 0 {
			return fmt.Errorf("%v %v\nkamailio:\n%s", bs, err, tail(kamLog.Bytes()))
		}
		return nil
	})
	t.Logf("Kamailio's REGISTER 200 → binding visible from b.example's node within %v; the call through b.example's proxy reached the UA; its removal left the overlay", visible.Round(time.Millisecond))
}

// startAPINet starts a call testnet whose first a.example node serves the
// HTTP API with token; it returns the first a.example and b.example nodes.
func startAPINet(t *testing.T, token string) (nw *testnet.Network, aIdx, bIdx int) {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("# test\n"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := reservePort(t)
	_, nw = startCallNet(t, func(m *testnet.Manifest, c *node.Config) {
		if c.Name == firstOf(m, "a.example") {
			c.API, c.APITokensFile = api(), tokens
		}
	})
	return nw, domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")[0]
}

// lockedBuffer is a bytes.Buffer a process's output may be copied into
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
