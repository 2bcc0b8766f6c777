package testnet_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// sippRun is one sipp REGISTER run against a registrar.
type sippRun struct {
	registrar string // host:port
	user      string // whose AOR (To/From)
	authUser  string // digest username (default user)
	pass      string
	domain    string
	contact   string
	expires   int
	final     int      // status the authenticated REGISTER must get
	headers   []string // more header lines of both REGISTERs
	messages  *string  // when set, receives sipp's message trace
}

// freeUDPPort returns a port free on 127.0.0.1 for sipp's own socket.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func (r sippRun) run(t *testing.T) error {
	t.Helper()
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatal("sipp not installed (Debian package sip-tester; scripts/deps test installs it)")
	}
	tmpl, err := os.ReadFile("testdata/sipp/register.xml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	scen := filepath.Join(dir, "register.xml")
	extra := ""
	for _, h := range r.headers {
		extra += "      " + h + "\n"
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(tmpl), "FINAL_STATUS", fmt.Sprint(r.final)), "      EXTRA_HEADERS\n", extra)
	if err := os.WriteFile(scen, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if r.authUser == "" {
		r.authUser = r.user
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipp", r.registrar, "-sf", scen, "-m", "1", "-i", "127.0.0.1",
		"-p", fmt.Sprint(freeUDPPort(t)), "-au", r.authUser, "-ap", r.pass, "-auth_uri", r.domain,
		"-key", "user", r.user, "-key", "domain", r.domain, "-key", "contact", r.contact,
		"-key", "expires", fmt.Sprint(r.expires), "-timeout", "20s", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if r.messages != nil {
		msgs, _ := os.ReadFile(filepath.Join(dir, "messages.log"))
		*r.messages = string(msgs)
	}
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
		return fmt.Errorf("sipp %s (%s, contact %s, want %d): %v\n%s\n%s", r.user, r.registrar, r.contact, r.final, err, tail(out), errs)
	}
	return nil
}

func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// TestRegistrarWithSipp drives the stateless registrars of a testnet with
// sipp (digest on): register, multi-contact, refresh, removal, *, 423,
// wrong password, wrong user, and two front-ends registering two devices of
// one AOR at once. A node of the other domain must then see exactly the
// live bindings.
func TestRegistrarWithSipp(t *testing.T) {
	spec := testnet.Spec{Dir: t.TempDir(), Nodes: 6, PerDomain: 2}
	m, err := testnet.Init(spec)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := testnet.Start(context.Background(), spec.Dir, testnet.RunOptions{Logger: quiet(), DisableDHTRefresh: true,
		Tweak: func(c *node.Config) {
			fastGossip(c)
			// sipp 3.6.1 answers only the topmost challenge and knows MD5 only.
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	a := m.Domains[0]
	if a.Name != "a.example" {
		t.Fatalf("first domain %s", a.Name)
	}
	var fronts []string
	for _, n := range m.Nodes {
		if n.Domain == "a.example" {
			fronts = append(fronts, n.SIP)
		}
	}
	if len(fronts) != 2 {
		t.Fatalf("want two a.example front-ends, have %v", fronts)
	}
	reader := nw.Node(domainNodes(nw, "b.example")[0]).Location()
	alice, bob, carol := a.Users[0], a.Users[1], a.Users[2]
	live := func(aor string) []string {
		t.Helper()
		bs, err := reader.Lookup(context.Background(), aor)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range bs {
			out = append(out, b.Contact)
		}
		slices.Sort(out)
		return out
	}
	expect := func(aor string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if got := live(aor); !slices.Equal(got, want) {
			t.Fatalf("%s: b.example sees %v, want %v", aor, got, want)
		}
	}
	must := func(r sippRun) {
		t.Helper()
		if err := r.run(t); err != nil {
			t.Fatal(err)
		}
	}
	reg := func(u testnet.User, front, contact string, expires, final int) sippRun {
		return sippRun{registrar: front, user: u.Username, pass: u.Password, domain: "a.example",
			contact: contact, expires: expires, final: final}
	}

	// Register (401 then 200) and multi-contact.
	must(reg(alice, fronts[0], "<sip:alice@127.0.0.1:6001>", 600, 200))
	expect(alice.AOR, "sip:alice@127.0.0.1:6001")
	must(reg(alice, fronts[1], "<sip:alice@127.0.0.1:6002>, <sip:alice@127.0.0.1:6003>;expires=300", 600, 200))
	expect(alice.AOR, "sip:alice@127.0.0.1:6001", "sip:alice@127.0.0.1:6002", "sip:alice@127.0.0.1:6003")

	// Refresh extends the expiry.
	before, _ := reader.Lookup(context.Background(), alice.AOR)
	must(reg(alice, fronts[0], "<sip:alice@127.0.0.1:6003>", 3600, 200))
	after, _ := reader.Lookup(context.Background(), alice.AOR)
	expiry := func(bs []lsp.Binding, c string) time.Time {
		for _, b := range bs {
			if b.Contact == c {
				return b.Expires
			}
		}
		return time.Time{}
	}
	if !expiry(after, "sip:alice@127.0.0.1:6003").After(expiry(before, "sip:alice@127.0.0.1:6003").Add(30 * time.Minute)) {
		t.Fatal("refresh did not extend the expiry")
	}

	// Removal of one contact, then of all with *.
	must(reg(alice, fronts[1], "<sip:alice@127.0.0.1:6002>;expires=0", 600, 200))
	expect(alice.AOR, "sip:alice@127.0.0.1:6001", "sip:alice@127.0.0.1:6003")
	must(reg(alice, fronts[0], "*", 0, 200))
	expect(alice.AOR)

	// Refusals change nothing.
	must(reg(bob, fronts[0], "<sip:bob@127.0.0.1:6010>", 30, 423))
	wrongPass := reg(bob, fronts[0], "<sip:bob@127.0.0.1:6010>", 600, 401)
	wrongPass.pass = "not-" + bob.Password
	must(wrongPass)
	// carol's valid credentials do not register bob's AOR.
	wrongUser := reg(bob, fronts[1], "<sip:bob@127.0.0.1:6010>", 600, 403)
	wrongUser.authUser, wrongUser.pass = carol.Username, carol.Password
	must(wrongUser)
	expect(bob.AOR)

	// Two front-ends, one AOR, two devices, at the same moment.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = reg(carol, fronts[i], fmt.Sprintf("<sip:carol@127.0.0.1:%d>", 6020+i), 600, 200).run(t)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	expect(carol.AOR, "sip:carol@127.0.0.1:6020", "sip:carol@127.0.0.1:6021")
}
