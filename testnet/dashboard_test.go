package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// chromium finds headless Chromium (Debian's chromium); CI installs it.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (Debian package chromium; scripts/deps test installs it)")
	}
	t.Skip("chromium not installed")
	return ""
}

// headless runs Chromium headless on url with args (--dump-dom or
// --screenshot=FILE), giving the page's scripts up to 20 s of virtual
// time (which waits for the network), and returns its stdout.
func headless(t *testing.T, exe, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile := t.TempDir()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
		"--user-data-dir=" + profile, "--virtual-time-budget=20000", "--window-size=1400,1600"}
	cmd := exec.CommandContext(ctx, exe, append(append(base, args...), url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestDashboard: every node of a 12-node testnet serves the dashboard on
// its admin listener. Headless Chromium loads one and looks up an AOR
// another domain published: the page draws the path of that real lookup
// (every replica asked, with what it returned, and for an iterative lookup
// the Kademlia route), and a screenshot shows it in the picture's colours.
func TestDashboard(t *testing.T) {
	exe := chromium(t)
	const nodes = 12
	var (
		mu    sync.Mutex
		ports []func() string
	)
	for range nodes {
		ports = append(ports, reservePort(t))
	}
	nw := startNet(t, testnet.Spec{Nodes: nodes, PerDomain: 2}, testnet.RunOptions{Tweak: func(c *node.Config) {
		mu.Lock()
		defer mu.Unlock()
		c.Admin, ports = ports[0](), ports[1:]
	}})
	ctx := context.Background()
	if err := nw.WaitConverged(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	bIdx := domainNodes(nw, "b.example")[0]
	b := nw.Node(bIdx)
	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		if err := b.Location().Publish(ctx, "sip:"+u+"@b.example",
			lsp.Binding{Contact: "sip:" + u + "@192.0.2.7:5060", Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	// The state every node reports: registrations per domain over all
	// replicas are the published bindings times R (a node rescans its
	// store at most every 5 s).
	waitFor(t, 15*time.Second, "every replica holds its bindings", func() error {
		held := 0
		for i := range nodes {
			var st struct {
				Node         string `json:"node"`
				MembersTotal int    `json:"members_total"`
				Domains      []struct {
					Domain   string `json:"domain"`
					Bindings int    `json:"bindings"`
				} `json:"domains"`
				Buckets []int `json:"buckets"`
			}
			getJSON(t, "http://"+nw.Node(i).AdminAddr()+"/dashboard/api/state", &st)
			if st.MembersTotal != nodes {
				t.Fatalf("node %d state: %d members", i, st.MembersTotal)
			}
			for _, d := range st.Domains {
				if d.Domain == "b.example" {
					held += d.Bindings
				}
			}
		}
		if held != len(users)*3 {
			return fmt.Errorf("registrations per domain: b.example bindings held over all replicas = %d, want %d", held, len(users)*3)
		}
		return nil
	})

	// The reader is a.example's first node; the AOR one it holds no replica
	// of, so every answer in the picture crossed the network.
	aIdx := domainNodes(nw, "a.example")[0]
	reader := nw.Node(aIdx)
	user := users[0]
	for _, u := range users {
		if reader.Location().Holds("sip:"+u+"@b.example") == 0 {
			user = u
			break
		}
	}
	aor, contact := "sip:"+user+"@b.example", "sip:"+user+"@192.0.2.7:5060"

	base := "http://" + reader.AdminAddr() + "/dashboard/"
	// Bad input: a clear error, nothing looked up.
	var bad struct {
		Error string `json:"error"`
	}
	if code := getJSON(t, base+"api/lookup?aor="+url.QueryEscape("not an aor"), &bad); code != 400 || !strings.Contains(bad.Error, "bad AOR") {
		t.Fatalf("malformed AOR: %d %q", code, bad.Error)
	}

	// One-hop lookup, read from the DOM the page built.
	dom := string(headless(t, exe, base+"?aor="+url.QueryEscape(aor), "--dump-dom"))
	if !strings.Contains(dom, `data-lookup="done"`) || !strings.Contains(dom, `data-state="ok"`) {
		t.Fatalf("dashboard did not finish its lookup and state:\n%s", lastChars(dom, 3000))
	}
	svg := regexp.MustCompile(`<svg[^>]*id="path-svg"[^>]*data-asked="(\d+)"`).FindStringSubmatch(dom)
	if svg == nil || svg[1] != "3" {
		t.Fatalf("lookup picture: %v\n%s", svg, lastChars(dom, 3000))
	}
	replicas := regexp.MustCompile(`<g class="peer replica" data-peer="([^"]+)" data-status="([^"]+)" data-hops="(\d+)" data-verdict="([^"]+)"`).FindAllStringSubmatch(dom, -1)
	live := 0
	for _, r := range replicas {
		if want := map[bool]string{true: "0", false: "1"}[r[1] == reader.Overlay().ID().String()]; r[3] != want {
			t.Fatalf("one-hop lookup drew a replica at %s hops, want %s: %v", r[3], want, r)
		}
		if r[4] == "live" {
			live++
		}
	}
	if len(replicas) != 3 || live < 2 {
		t.Fatalf("replicas drawn %d, %d returned the binding: %v", len(replicas), live, replicas)
	}
	if !strings.Contains(dom, `data-cert="domain"`) {
		t.Fatalf("no domain certificate card on a domain node's dashboard")
	}
	if !strings.Contains(dom, contact) || !strings.Contains(dom, `class="peer self"`) {
		t.Fatalf("result table lacks %s or the picture lacks this node", contact)
	}
	// Bucket bars carry their counts; link labels are drawn over the boxes
	// (with a halo); R and the shared bits are explained.
	// Members are shown by the names and domains they announce, as claims.
	if !regexp.MustCompile(`<span class="announced" title="name and domain as the member announces them[^"]*">node1 · b\.example</span>`).MatchString(dom) {
		t.Errorf("the members table does not name node1 of b.example")
	}
	if !regexp.MustCompile(`<g class="peer replica"[^>]*>(?:<[^>]*>)*<text[^>]*>node\d`).MatchString(dom) {
		t.Errorf("the lookup picture does not name its replicas")
	}
	for _, want := range []string{`class="count"`, `<g class="labels"><text`, `class="label halo"`, `title="R: the replicas`,
		`<title>leading bits this replica's ID shares`, `class="lines"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("dashboard has no %s", want)
		}
	}

	// Iterative: the Kademlia route is drawn, hop by hop.
	dom = string(headless(t, exe, base+"?iterative=1&aor="+url.QueryEscape(aor), "--dump-dom"))
	route := regexp.MustCompile(`<g class="peer route" data-peer="[^"]+" data-hop="(\d+)"`).FindAllStringSubmatch(dom, -1)
	if !strings.Contains(dom, `data-lookup="done"`) || len(route) == 0 || !strings.Contains(dom, contact) {
		t.Fatalf("iterative lookup: %d route nodes drawn\n%s", len(route), lastChars(dom, 3000))
	}

	// Screenshots: the picture's colours are on screen. Each replica's bar
	// is 8×46 px, so two live replicas make ≥ 600 px of green; route and
	// self bars likewise. The page without its picture has no green and no
	// purple (the routing-table bars are the self blue).
	colour := map[string][3]uint8{"self": {0x09, 0x69, 0xda}, "live": {0x1a, 0x7f, 0x37}, "route": {0x82, 0x50, 0xdf}}
	dir := t.TempDir()
	if d := os.Getenv("LSNODE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	for _, v := range []struct {
		name, query string
		route       int
	}{{"one-hop", "", 0}, {"iterative", "iterative=1&", 300}} {
		shot := filepath.Join(dir, "dashboard-"+v.name+".png")
		headless(t, exe, base+"?"+v.query+"aor="+url.QueryEscape(aor), "--screenshot="+shot)
		counts := colours(t, shot, colour)
		t.Logf("screenshot %s: pixels by colour %v", shot, counts)
		if counts["live"] < 600 || counts["self"] < 300 || counts["route"] < v.route || (v.route == 0 && counts["route"] > 0) {
			t.Fatalf("%s screenshot lacks the lookup picture: %v", v.name, counts)
		}
	}
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %d %v: %s", u, res.StatusCode, err, b)
	}
	return res.StatusCode
}

// lastChars is the end of a page, for a failure message.
func lastChars(s string, n int) string {
	return s[max(0, len(s)-n):]
}

// colours counts the pixels of a PNG that have exactly each colour.
func colours(t *testing.T, file string, want map[string][3]uint8) map[string]int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	bd := img.Bounds()
	if bd.Dx() < 1000 || bd.Dy() < 1000 {
		t.Fatalf("screenshot is %v", bd)
	}
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for k, c := range want {
				if uint8(r>>8) == c[0] && uint8(g>>8) == c[1] && uint8(b>>8) == c[2] {
					out[k]++
				}
			}
		}
	}
	return out
}
