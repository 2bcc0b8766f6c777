package testnet_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// TestMetrics: a domain node's admin listener serves /healthz, /readyz and
// a /metrics page that passes promlint; a sipp call through its proxy
// moves the INVITE and BYE counts, the proxy's lookups and the location
// service's lookup histogram.
func TestMetrics(t *testing.T) {
	admin := reservePort(t)
	m, nw := startCallNet(t, func(m *testnet.Manifest, c *node.Config) {
		if c.Name == firstOf(m, "a.example") {
			c.Admin = admin()
		}
	})
	aIdx, bIdx := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")[0]
	adminURL := "http://" + nw.Node(aIdx).AdminAddr()
	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(adminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "/readyz", func() error {
		if code, body := get("/readyz"); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Fatalf("pprof served without admin_pprof: %d", code)
	}
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		code, body := get("/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		problems, err := promlint.New(strings.NewReader(body)).Lint()
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) > 0 {
			t.Fatalf("promlint: %+v", problems)
		}
		return gather(t, nw.Node(aIdx))
	}
	value := func(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		mf := mfs[name]
		if mf == nil {
			return 0
		}
	next:
		for _, mt := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case mt.GetCounter() != nil:
				return mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				return mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				return float64(mt.GetHistogram().GetSampleCount())
			}
		}
		return 0
	}
	before := scrape()
	if value(before, "lsnode_overlay_members") < 2 {
		t.Fatalf("members gauge %v", value(before, "lsnode_overlay_members"))
	}
	// The domain certificate's expiry is there (the testnet's CA issues
	// them for a year); no member certificate in an open overlay.
	if exp := value(before, "lsnode_lsp_domain_certificate_expiry_timestamp_seconds"); exp < float64(time.Now().Add(300*24*time.Hour).Unix()) {
		t.Fatalf("domain certificate expiry %v", exp)
	}
	if before["lsnode_overlay_member_certificate_expiry_timestamp_seconds"] != nil {
		t.Fatal("member certificate expiry in an open overlay")
	}
	// A call: bob@b.example registers, a caller sends through a.example's
	// proxy (it looks bob up in the overlay).
	bob := domainUser(m, "b.example", 0)
	user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
	uasPort := freeUDPPort(t)
	uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "30s")
	if err := (sippRun{registrar: nw.Node(bIdx).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
		domain: "b.example", contact: fmt.Sprintf("<sip:%s@127.0.0.1:%d>", user, uasPort), expires: 600, final: 200}).run(t); err != nil {
		t.Fatal(err)
	}
	uac := startSipp(t, "uac", "uac.xml", freeUDPPort(t), nw.Node(aIdx).SIPAddr(), "-s", user, "-key", "domain", "b.example",
		"-m", "1", "-timeout", "30s")
	if err := uac.wait(40 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	after := scrape()
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"lsnode_proxy_requests_total", []string{"method", "INVITE", "code", "200"}},
		{"lsnode_proxy_requests_total", []string{"method", "BYE", "code", "200"}},
		{"lsnode_proxy_lookups_total", nil},
		{"lsnode_proxy_received_total", nil},
		{"lsnode_lsp_operation_duration_seconds", []string{"op", "lookup", "result", "ok"}},
	} {
		b, a := value(before, c.name, c.labels...), value(after, c.name, c.labels...)
		if a <= b {
			t.Errorf("%s%v did not move with a call: %v → %v", c.name, c.labels, b, a)
		}
	}
	// b.example's registrar counted the REGISTERs (401 then 200).
	bfs := gather(t, nw.Node(bIdx))
	if value(bfs, "lsnode_registrar_requests_total", "method", "REGISTER", "code", "200") < 1 ||
		value(bfs, "lsnode_registrar_requests_total", "method", "REGISTER", "code", "401") < 1 {
		t.Fatalf("registrar counts: %v", bfs["lsnode_registrar_requests_total"])
	}
	t.Logf("after one call: INVITE 200 %v, lookups %v, lsp lookups observed %v",
		value(after, "lsnode_proxy_requests_total", "method", "INVITE", "code", "200"),
		value(after, "lsnode_proxy_lookups_total"), value(after, "lsnode_lsp_operation_duration_seconds", "op", "lookup", "result", "ok"))
}

// gather returns a node's metric families by name.
func gather(t *testing.T, n *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := n.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// reservePort holds a loopback TCP port while a testnet is initialised (so
// Init, which picks free ports, cannot pick it) and returns a function
// that releases it and returns "127.0.0.1:port" for a node's config. A
// listener on port 0 instead could take a port Init reserved for a node
// not started yet (seen in CI).
func reservePort(t *testing.T) func() string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return func() string {
		l.Close()
		return l.Addr().String()
	}
}

// firstOf names the manifest's first node of domain.
func firstOf(m *testnet.Manifest, domain string) string {
	for _, n := range m.Nodes {
		if n.Domain == domain {
			return n.Name
		}
	}
	return ""
}
