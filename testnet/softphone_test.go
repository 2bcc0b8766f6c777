package testnet_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// harnessEvent is one step a softphone harness page reported.
type harnessEvent struct {
	Role     string   `json:"role"`
	Ev       string   `json:"ev"`
	Message  string   `json:"message"`
	Why      string   `json:"why"`
	SetupMs  float64  `json:"setupMs"`
	Inbound  int64    `json:"inbound"`
	Outbound int64    `json:"outbound"`
	Relayed  bool     `json:"relayed"`
	Turn     []string `json:"turn"`
	At       time.Time
}

// harness serves testdata/softphone/harness.html and collects what its
// pages report.
type harness struct {
	srv    *http.Server
	origin string
	mu     sync.Mutex
	events []harnessEvent
}

func startHarness(t testing.TB) *harness {
	t.Helper()
	page, err := os.ReadFile("testdata/softphone/harness.html")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{origin: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /harness", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var ev harnessEvent
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if json.Unmarshal(b, &ev) == nil {
			ev.At = time.Now()
			h.mu.Lock()
			h.events = append(h.events, ev)
			h.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// wait returns the events of role once one named ev arrived, failing on
// an error event or after d.
func (h *harness) wait(t testing.TB, role, ev string, d time.Duration) []harnessEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		h.mu.Lock()
		var mine []harnessEvent
		for _, e := range h.events {
			if e.Role == role {
				mine = append(mine, e)
			}
		}
		h.mu.Unlock()
		for _, e := range mine {
			if e.Ev == "error" {
				t.Fatalf("%s page: %s", role, e.Message)
			}
			if e.Ev == ev {
				return mine
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s page: no %q after %v; it reported %+v", role, ev, d, mine)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startBrowser runs headless Chromium on url with fake media devices
// until the test ends.
func startBrowser(t testing.TB, exe, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--no-default-browser-check", "--disable-extensions", "--user-data-dir=" + t.TempDir(),
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required",
		// The testnet's certificates chain to its own CA, which this
		// profile does not hold.
		"--ignore-certificate-errors", url}
	cmd := exec.CommandContext(ctx, exe, args...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() && os.Getenv("LSNODE_TEST_LOG") != "" {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
}

// TestSoftphoneCalls: two browsers, alice at a.example's node and bob at
// b.example's, load the node's softphone library (from a page of another
// origin the nodes list in sip_ws_origins: its module and the TURN
// credentials come with CORS), fetch TURN credentials with their SIP
// digest, register over wss and call: alice calls sip:bob@b.example, the
// INVITE is routed by the overlay lookup to b.example's node as the
// holder of bob's WebSocket flow, bob answers, and with
// iceTransportPolicy "relay" the media goes through the nodes' TURN
// relays: getStats shows RTP bytes received growing on both sides for 3 s
// over a relayed candidate pair. Then 19 more calls give the call setup
// time (INVITE → 200 at the caller). alice then calls carol, a sipp UA at
// b.example (200, ACK, BYE). Once all are hung up, neither relay keeps an
// allocation.
func TestSoftphoneCalls(t *testing.T) {
	exe := chromium(t)
	h, m, nw := softphoneNet(t)
	a, b := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")[0]
	alice, bob := domainUser(m, "a.example", 0), domainUser(m, "b.example", 0)
	page := func(role string, n int, u testnet.User, domain string, extra url.Values) string {
		return h.page(nw, role, n, u, domain, extra)
	}
	// The page itself: its module runs under its CSP.
	dom := string(headless(t, exe, "http://"+nw.Node(a).SIPWSAddr()+"/softphone/?domain=a.example", "--dump-dom"))
	if !strings.Contains(dom, "Log in as a user of a.example (SIP over ws to") || !strings.Contains(dom, `id="dial"`) {
		t.Errorf("the softphone page did not start:\n%s", dom)
	}
	const calls = 20
	startBrowser(t, exe, page("callee", b, bob, "b.example", nil))
	reg := h.wait(t, "callee", "registered", 30*time.Second)
	if turn := reg[len(reg)-1].Turn; len(turn) == 0 || !strings.Contains(turn[0], nw.Manifest.Nodes[b].TURN) {
		t.Errorf("bob's TURN servers %v, want his node's relay %s", turn, nw.Manifest.Nodes[b].TURN)
	}
	startBrowser(t, exe, page("caller", a, alice, "a.example", url.Values{"target": {bob.AOR}, "calls": {fmt.Sprint(calls)}, "hold": {"6000"}}))
	evs := h.wait(t, "caller", "done", 120*time.Second)

	var setups []float64
	for _, e := range evs {
		if e.Ev == "answered" {
			setups = append(setups, e.SetupMs)
		}
	}
	if len(setups) != calls {
		t.Fatalf("%d of %d calls answered", len(setups), calls)
	}
	for _, role := range []string{"caller", "callee"} {
		h.mu.Lock()
		var stats []harnessEvent
		for _, e := range h.events {
			if e.Role == role && e.Ev == "stats" {
				stats = append(stats, e)
			}
		}
		h.mu.Unlock()
		growing := rtpGrowth(stats)
		if len(stats) > 0 {
			t.Logf("%s: RTP received grew for %v over a relayed pair; last sample %+v", role, growing, stats[len(stats)-1])
		}
		if growing < 3*time.Second {
			t.Errorf("%s: RTP bytes received grew for %v over a relayed pair, want 3 s (%d samples: %+v)", role, growing, len(stats), stats)
		}
	}
	// alice's node found bob in the overlay; bob's node sent the calls down
	// his WebSocket; no media was anchored on an RTP relay.
	sa, sb := nw.Node(a).Proxy().Stats(), nw.Node(b).Proxy().Stats()
	if sa.Lookups+sa.CacheHits < 1 || sb.Flowed < calls || sa.Anchored+sb.Anchored != 0 {
		t.Errorf("a.example's proxy %+v, b.example's %+v: want an overlay lookup at a.example, %d requests down bob's flow at b.example, nothing anchored", sa, sb, calls)
	}
	slices.Sort(setups)
	t.Logf("call setup (INVITE → 200 at the caller), browser to browser over wss and TURN, %d calls: p50 %.1f ms, max %.1f ms",
		calls, setups[len(setups)/2], setups[len(setups)-1])
	// alice calls carol, a sipp UA at b.example on UDP: the signalling
	// (200, ACK, BYE) is the check. The INVITE, with a browser's offer, is
	// a datagram of several KB (sipgo refuses those over 1300 bytes unless
	// told otherwise).
	carol := domainUser(m, "b.example", 1)
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas_webrtc.xml", uasPort, "-m", "1", "-timeout", "40s")
	carolUser := strings.TrimPrefix(strings.Split(carol.AOR, "@")[0], "sip:")
	if err := (sippRun{registrar: nw.Node(b).SIPAddr(), user: carolUser, authUser: carol.Username, pass: carol.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", carolUser, uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	startBrowser(t, exe, page("tosipp", a, alice, "a.example", url.Values{"target": {carol.AOR}, "media": {"0"}}))
	h.wait(t, "tosipp", "done", 60*time.Second)
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ra, rb := nw.Node(a).Relay().Allocations(), nw.Node(b).Relay().Allocations()
		if ra == 0 && rb == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the hang-ups the relays keep %d (a.example) and %d (b.example) allocations", ra, rb)
		}
	}
}

// softphoneNet starts a harness and a 6-node testnet whose domain nodes
// let the harness's pages use their WebSocket listeners.
func softphoneNet(t testing.TB) (*harness, *testnet.Manifest, *testnet.Network) {
	t.Helper()
	h := startHarness(t)
	cert, key := webCert(t)
	m, nw := startCallNetOf(t, testnet.Spec{Dir: t.TempDir(), Nodes: 6, PerDomain: 1}, func(_ *testnet.Manifest, c *node.Config) {
		c.SIPWSOrigins = []string{h.origin}
		// The testnet's domain keys are Ed25519, which browsers do not
		// accept from a TLS server.
		c.SIPWSSCert, c.SIPWSSKey = cert, key
	})
	return h, m, nw
}

// page is the harness's URL for a page of role, as user u of domain at
// node n (over wss), with extra parameters.
func (h *harness) page(nw *testnet.Network, role string, n int, u testnet.User, domain string, extra url.Values) string {
	wss := nw.Node(n).SIPWSSAddr()
	v := url.Values{"role": {role}, "base": {"https://" + wss}, "ws": {"wss://" + wss + "/"}, "user": {u.Username},
		"domain": {domain}, "password": {u.Password}, "media": {"1"}}
	for k, x := range extra {
		v[k] = x
	}
	return h.origin + "/harness?" + v.Encode()
}

// BenchmarkSoftphone: call setup between two headless Chromium browsers
// (alice at a.example's node, bob at b.example's, over wss, ICE through
// the TURN relays only): LSNODE_BENCH_CALLS (20) calls, each timed from
// the INVITE's sending to its 200 at the caller (after the caller's own
// ICE gathering, before the callee's: the answer waits for it). One-line
// lsnode softphone bench: summary.
func BenchmarkSoftphone(b *testing.B) {
	exe := chromium(b)
	h, m, nw := softphoneNet(b)
	an, bn := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")[0]
	alice, bob := domainUser(m, "a.example", 0), domainUser(m, "b.example", 0)
	calls := envInt("LSNODE_BENCH_CALLS", 20)
	startBrowser(b, exe, h.page(nw, "callee", bn, bob, "b.example", url.Values{"media": {"0"}}))
	h.wait(b, "callee", "registered", 30*time.Second)
	b.ResetTimer()
	startBrowser(b, exe, h.page(nw, "caller", an, alice, "a.example", url.Values{"target": {bob.AOR}, "calls": {fmt.Sprint(calls)}, "media": {"0"}}))
	var setups []float64
	for _, e := range h.wait(b, "caller", "done", time.Duration(calls)*10*time.Second) {
		if e.Ev == "answered" {
			setups = append(setups, e.SetupMs)
		}
	}
	b.StopTimer()
	if len(setups) != calls {
		b.Fatalf("%d of %d calls answered", len(setups), calls)
	}
	slices.Sort(setups)
	p99 := setups[min(len(setups)-1, len(setups)*99/100)]
	b.ReportMetric(setups[len(setups)/2], "ms-setup-p50")
	fmt.Printf("lsnode softphone bench: browser to browser over wss, relay-only ICE, %d calls: setup (INVITE → 200 at the caller) p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		calls, setups[len(setups)/2], p99, setups[len(setups)-1])
}

// webCert writes a self-signed ECDSA certificate for 127.0.0.1 (a web
// server's, as a browser takes it) and its key; their paths.
func webCert(t testing.TB) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, keyFile := filepath.Join(dir, "web.pem"), filepath.Join(dir, "web.key")
	if os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644) != nil ||
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600) != nil {
		t.Fatal("writing the web certificate")
	}
	return cert, keyFile
}

// rtpGrowth is how long the RTP bytes received kept growing, over a
// relayed candidate pair, from the first sample that saw any.
func rtpGrowth(stats []harnessEvent) time.Duration {
	var first, last time.Time
	var prev int64
	for _, s := range stats {
		if !s.Relayed || s.Inbound <= prev {
			continue
		}
		if first.IsZero() {
			first = s.At
		}
		last, prev = s.At, s.Inbound
	}
	return last.Sub(first)
}
