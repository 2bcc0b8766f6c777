package softphone

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lsnode/lsnode/httpapi"
)

type users struct{}

func (users) CheckDigest(method, uri, authorization string) (string, []string) {
	if authorization == "Digest good" && method == "GET" && uri == TurnPath {
		return "sip:alice@a.example", nil
	}
	return "", []string{`Digest realm="a.example", nonce="n1", algorithm=SHA-256, qop="auth"`, `Digest realm="a.example", nonce="n1", algorithm=MD5, qop="auth"`}
}

type relay struct{ addr string }

func (r relay) Credentials(user string, _ time.Duration) (string, string) {
	return "123:" + user, "secret"
}
func (r relay) Addr() string    { return r.addr }
func (r relay) TLSAddr() string { return "0.0.0.0:5349" }

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Host = "node.a.example:8089"
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestHandler: the page and its script are served with their security
// headers; a page of an allowed origin may load the script and call the
// credentials endpoint (CORS, the preflight included), another origin
// gets no CORS header; the endpoint challenges with X-SIP-Authenticate
// (never WWW-Authenticate: no browser login box), hands credentials for
// the digest user with the relay's address (the page's host when the
// relay listens on every address), and is 404 without a relay.
func TestHandler(t *testing.T) {
	creds := func(r relay) http.Handler {
		h, err := httpapi.TURNCredentials(users{}, r, 12*time.Hour, true)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h, err := Handler(Config{Credentials: creds(relay{"0.0.0.0:3478"}), Origins: []string{"https://app.a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/softphone/", "/softphone/phone.js", "/softphone/app.js"} {
		w := get(t, h, "GET", p, nil)
		if w.Code != 200 || w.Header().Get("Content-Security-Policy") == "" || w.Body.Len() < 100 {
			t.Errorf("%s: %d %v", p, w.Code, w.Header())
		}
	}
	if w := get(t, h, "GET", "/", nil); w.Code != http.StatusFound || w.Header().Get("Location") != "/softphone/" {
		t.Errorf("/: %d %v", w.Code, w.Header())
	}
	if w := get(t, h, "GET", "/softphone/phone.js", map[string]string{"Origin": "https://app.a.example"}); w.Header().Get("Access-Control-Allow-Origin") != "https://app.a.example" {
		t.Errorf("phone.js for an allowed origin: %v", w.Header())
	}
	if w := get(t, h, "GET", "/softphone/phone.js", map[string]string{"Origin": "https://evil.example"}); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("phone.js for another origin: %v", w.Header())
	}
	pre := get(t, h, "OPTIONS", TurnPath, map[string]string{"Origin": "https://app.a.example", "Access-Control-Request-Headers": "authorization"})
	if pre.Code != http.StatusNoContent || !strings.Contains(pre.Header().Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", pre.Code, pre.Header())
	}
	w := get(t, h, "GET", TurnPath, map[string]string{"Origin": "https://app.a.example"})
	if w.Code != http.StatusUnauthorized || len(w.Header().Values("X-SIP-Authenticate")) != 2 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "X-SIP-Digest ") ||
		!strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "X-SIP-Authenticate") {
		t.Errorf("no credentials: %d %v", w.Code, w.Header())
	}
	if w := get(t, h, "GET", TurnPath, map[string]string{"Authorization": "Digest bad"}); w.Code != http.StatusUnauthorized {
		t.Errorf("bad credentials: %d", w.Code)
	}
	w = get(t, h, "GET", TurnPath, map[string]string{"Authorization": "Digest good"})
	var c struct {
		Username, Password string
		URIs               []string `json:"uris"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil || w.Code != 200 || c.Username != "123:alice@a.example" ||
		len(c.URIs) != 3 || c.URIs[0] != "turn:node.a.example:3478?transport=udp" || c.URIs[2] != "turns:node.a.example:5349?transport=tcp" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("credentials: %d %s %+v", w.Code, w.Body, c)
	}
	for _, c := range []Config{{Credentials: creds(relay{""})}, {}} {
		h2, _ := Handler(c)
		if w := get(t, h2, "GET", TurnPath, map[string]string{"Authorization": "Digest good"}); w.Code != http.StatusNotFound {
			t.Errorf("without a relay (not started, or no credentials): %d", w.Code)
		}
	}
}
