package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lsnode/lsnode/lsp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeLocation holds bindings in memory, and refuses AORs of other
// domains as the location service does.
type fakeLocation struct {
	mu sync.Mutex
	m  map[string][]lsp.Binding
}

func (f *fakeLocation) Publish(_ context.Context, aor string, bs ...lsp.Binding) error {
	if !strings.HasSuffix(aor, "@a.example") {
		return fmt.Errorf("%w: not a.example", lsp.ErrForbidden)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bs {
		if b.Timestamp.IsZero() {
			b.Timestamp = time.Now() // as lsp's clock stamps a write
		}
		b.Signer = "a.example"
		f.m[aor] = append(f.m[aor], b)
	}
	return nil
}

func (f *fakeLocation) Lookup(ctx context.Context, aor string) ([]lsp.Binding, error) {
	if aor == "sip:down@a.example" {
		return nil, lsp.ErrUnavailable
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[aor], nil
}

func (f *fakeLocation) Remove(_ context.Context, aor string, ids ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ids) == 0 {
		delete(f.m, aor)
		return nil
	}
	var keep []lsp.Binding
	for _, b := range f.m[aor] {
		if b.Contact != ids[0] {
			keep = append(keep, b)
		}
	}
	f.m[aor] = keep
	return nil
}

const token = "0123456789abcdef-token"

func do(t *testing.T, method, url, auth, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
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
	return res.StatusCode, res.Header, string(b)
}

// TestAPI: bearer tokens, then publish, look up, remove (by DELETE and by
// "expires": 0), with the location service's errors as statuses.
func TestAPI(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Tokens: [][]byte{[]byte(token)}, Location: &fakeLocation{m: map[string][]lsp.Binding{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr() + "/v1/aors/"
	bearer := "Bearer " + token
	steps := []struct {
		method, path, auth, body string
		code                     int
		want                     string
	}{
		{"GET", "sip:alice@a.example/bindings", "", "", 401, "bearer token"},
		{"GET", "sip:alice@a.example/bindings", "Bearer wrong-token-0000000", "", 401, "bearer token"},
		{"GET", "sip:alice@a.example/bindings", bearer, "", 404, "no binding"},
		{"POST", "sip:alice@a.example/bindings", bearer, `{"contact": "sip:alice@192.0.2.7", "expires": 600}`, 201, `"contact":"sip:alice@192.0.2.7"`},
		{"POST", "sip:alice@a.example/bindings", bearer, `{"contact": "sip:alice@192.0.2.7", "expires": 600}`, 201, `"timestamp":"20`},
		{"POST", "sip:alice@a.example/bindings", bearer, `{"contact": "sip:alice@192.0.2.7", "expires": 600}`, 201, `"signer":"a.example"`},
		{"POST", "sip:alice@a.example/bindings", bearer, `{"contact": "sip:alice@192.0.2.8", "expires": 600}`, 201, ""},
		{"GET", "sip:ALICE@A.example/bindings", bearer, "", 200, `"aor":"sip:alice@a.example"`},
		{"POST", "sip:alice@a.example/bindings", bearer, `{"contact": "sip:alice@192.0.2.8", "expires": 0}`, 204, ""},
		{"POST", "sip:alice@a.example/bindings", bearer, `{"contact": "sip:alice@192.0.2.8"}`, 400, "expires is required"},
		{"POST", "sip:bob@b.example/bindings", bearer, `{"contact": "sip:bob@192.0.2.9", "expires": 60}`, 403, "forbidden"},
		{"GET", "not-an-aor/bindings", bearer, "", 400, "bad AOR"},
		{"GET", "sip:down@a.example/bindings", bearer, "", 503, "unavailable"},
		{"DELETE", "sip:alice@a.example/bindings?contact=sip:alice@192.0.2.7", bearer, "", 204, ""},
		{"GET", "sip:alice@a.example/bindings", bearer, "", 404, "no binding"},
	}
	for i, st := range steps {
		code, hd, body := do(t, st.method, base+st.path, st.auth, st.body)
		if code != st.code || !strings.Contains(body, st.want) {
			t.Fatalf("step %d %s %s: %d %q, want %d with %q", i, st.method, st.path, code, body, st.code, st.want)
		}
		if code == 503 && hd.Get("Retry-After") == "" {
			t.Fatalf("step %d: 503 without Retry-After", i)
		}
	}
}

type fakeUsers struct{}

func (fakeUsers) CheckDigest(method, uri, authorization string) (string, []string) {
	if authorization == "Digest ok" {
		return "sip:alice@a.example", nil
	}
	return "", []string{`Digest realm="a.example", nonce="n"`}
}

type fakeTURN struct{}

func (fakeTURN) Credentials(user string, ttl time.Duration) (string, string) {
	return fmt.Sprintf("%d:%s", int(ttl.Seconds()), user), "secret"
}
func (fakeTURN) Addr() string { return "192.0.2.1:3478" }

func TestTURNCredentials(t *testing.T) {
	s, err := ListenTURN(TURNConfig{Addr: "127.0.0.1:0", Users: fakeUsers{}, Relay: fakeTURN{}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "http://" + s.Addr() + "/turn/credentials"
	if code, hd, _ := do(t, "GET", url, "", ""); code != 401 || !strings.HasPrefix(hd.Get("WWW-Authenticate"), "Digest") {
		t.Fatalf("no credentials: %d %v", code, hd)
	}
	code, _, body := do(t, "GET", url, "Digest ok", "")
	if code != 200 || !strings.Contains(body, `"username":"3600:alice@a.example"`) || !strings.Contains(body, "turn:192.0.2.1:3478?transport=udp") {
		t.Fatalf("credentials: %d %s", code, body)
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ts, err := LoadTokens(write("ok", "# tokens\n\n"+token+"\n  second-token-0123456  \n"))
	if err != nil || len(ts) != 2 || string(ts[1]) != "second-token-0123456" {
		t.Fatalf("tokens %q %v", ts, err)
	}
	for name, text := range map[string]string{"short": "# x\nshort\n", "empty": "# none\n"} {
		if _, err := LoadTokens(write(name, text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadTokens(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file accepted")
	}
}
