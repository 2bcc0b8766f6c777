package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lsnode/lsnode/lsp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeNode struct {
	ready   atomic.Value // string
	slow    chan struct{}
	slowEnd atomic.Bool
}

func (f *fakeNode) Ready() string {
	r, _ := f.ready.Load().(string)
	return r
}

func (f *fakeNode) State() any { return map[string]any{"node": "n1", "members_total": 3} }

func (f *fakeNode) Trace(ctx context.Context, aor string, iterative bool) (*lsp.Trace, error) {
	switch aor {
	case "bad":
		return nil, fmt.Errorf("%w: %q", lsp.ErrBadAOR, aor)
	case "sip:slow@a.example":
		close(f.slow)
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // Close must wait for this
		f.slowEnd.Store(true)
		return nil, ctx.Err()
	}
	return &lsp.Trace{AOR: aor, Iterative: iterative}, nil
}

func get(t *testing.T, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// TestAdmin: health, readiness, metrics, the dashboard's files and JSON,
// pprof only when asked for; Close cancels a lookup being answered and
// waits for it.
func TestAdmin(t *testing.T) {
	n := &fakeNode{slow: make(chan struct{})}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "lsnode_up 1") })
	s, err := Listen(Config{Addr: "127.0.0.1:0", Node: n, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + s.Addr()
	for _, tc := range []struct {
		path, want string
		code       int
	}{
		{"/healthz", "ok", 200},
		{"/readyz", "ready", 200},
		{"/metrics", "lsnode_up 1", 200},
		{"/dashboard/", "<html", 200},
		{"/dashboard/app.js", "api/state", 200},
		{"/dashboard/api/state", `"members_total":3`, 200},
		{"/dashboard/api/lookup?aor=sip:bob@b.example&iterative=1", `"iterative":true`, 200},
		{"/dashboard/api/lookup?aor=bad", "bad AOR", 400},
		{"/dashboard/api/lookup", "aor is required", 400},
		{"/debug/pprof/", "", 404},
		{"/", "", 302},
	} {
		code, hd, body := get(t, c, base+tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.want)
		}
		if strings.HasPrefix(tc.path, "/dashboard/") && hd.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no Content-Security-Policy", tc.path)
		}
	}
	n.ready.Store("no other overlay member reached yet")
	if code, _, body := get(t, c, base+"/readyz"); code != 503 || !strings.Contains(body, "no other overlay member") {
		t.Errorf("not ready: %d %q", code, body)
	}
	var st map[string]any
	if _, _, body := get(t, c, base+"/dashboard/api/state"); json.Unmarshal([]byte(body), &st) != nil || st["node"] != "n1" {
		t.Errorf("state %q", body)
	}

	done := make(chan error, 1)
	go func() {
		res, err := c.Get(base + "/dashboard/api/lookup?aor=sip:slow@a.example")
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	<-n.slow
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !n.slowEnd.Load() {
		t.Fatal("Close returned before the lookup being answered")
	}
	<-done
	if _, err := c.Get(base + "/healthz"); err == nil {
		t.Fatal("served after Close")
	}
	_ = s.Close() // twice: nothing
}

func TestAdminPprof(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Node: &fakeNode{}, Metrics: http.NotFoundHandler(), Pprof: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if code, _, _ := get(t, c, "http://"+s.Addr()+"/debug/pprof/"); code != 200 {
		t.Fatalf("pprof: %d", code)
	}
	if _, err := Listen(Config{Addr: s.Addr(), Node: &fakeNode{}, Metrics: http.NotFoundHandler()}); err == nil {
		t.Fatal("listened twice on one address")
	}
}
