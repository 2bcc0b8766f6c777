package node

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lsnode/lsnode/lsp"
)

// The HTTP API (docs/openapi.yaml) lets another SIP server (a Kamailio or
// OpenSIPS registrar with its HTTP client module) publish, look up and
// remove bindings through this node. Writes are signed with the node's
// domain credential, so they are limited to the node's domain's AORs.
// Every request needs "Authorization: Bearer <token>" with a token from
// api_tokens_file.

// maxAPIBody bounds a request body.
const maxAPIBody = 64 << 10

// apiBinding is a binding to publish: expires in seconds from now; 0
// removes the binding of that contact (REGISTER's Expires: 0, for HTTP
// clients that only GET and POST, like Kamailio 5.6's http_client).
type apiBinding struct {
	Contact  string   `json:"contact"`
	Expires  *int     `json:"expires"`
	Q        float64  `json:"q,omitempty"`
	Instance string   `json:"instance,omitempty"`
	RegID    uint32   `json:"reg_id,omitempty"`
	Path     []string `json:"path,omitempty"`
	Received string   `json:"received,omitempty"`
	CallID   string   `json:"call_id,omitempty"`
	CSeq     uint32   `json:"cseq,omitempty"`
}

// loadTokens reads bearer tokens, one per line ('#' comments, blank lines
// skipped); each at least 16 characters.
func loadTokens(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: api_tokens_file: %v", ErrConfig, err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if len(t) < 16 {
			return nil, fmt.Errorf("%w: api_tokens_file line %d: a token needs at least 16 characters", ErrConfig, n)
		}
		out = append(out, []byte(t))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: api_tokens_file: %v", ErrConfig, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: api_tokens_file %s holds no token", ErrConfig, path)
	}
	return out, nil
}

// startAPI serves the HTTP API on cfg.API.
func (n *Node) startAPI(cfg *Config, log *slog.Logger) error {
	tokens, err := loadTokens(cfg.Path(cfg.APITokensFile))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.API)
	if err != nil {
		return fmt.Errorf("node: listen api %s: %w", cfg.API, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/aors/{aor}/bindings", n.apiLookup)
	mux.HandleFunc("POST /v1/aors/{aor}/bindings", n.apiPublish)
	mux.HandleFunc("DELETE /v1/aors/{aor}/bindings", n.apiRemove)
	n.apiLn = ln
	n.api = &http.Server{Handler: bearer(tokens, mux), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = n.api.Serve(ln) }()
	return nil
}

// bearer lets through requests with one of tokens (compared in constant
// time); others get 401.
func bearer(tokens [][]byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		valid := 0
		for _, t := range tokens {
			valid |= subtle.ConstantTimeCompare([]byte(got), t)
		}
		if !ok || valid != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lsnode"`)
			apiError(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func apiJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// apiAOR canonicalises the path's AOR, answering 400 when it is none.
func apiAOR(w http.ResponseWriter, r *http.Request) (string, bool) {
	aor, err := lsp.Canonical(r.PathValue("aor"))
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return aor, true
}

// apiFailed maps a location-service error to a status.
func apiFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, lsp.ErrForbidden), errors.Is(err, lsp.ErrNoCredential):
		apiError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, lsp.ErrInvalid), errors.Is(err, lsp.ErrMalformed), errors.Is(err, lsp.ErrBadAOR):
		apiError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, lsp.ErrTooLarge):
		apiError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, lsp.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, lsp.ErrClosed):
		w.Header().Set("Retry-After", "5")
		apiError(w, http.StatusServiceUnavailable, err.Error())
	default:
		apiError(w, http.StatusInternalServerError, err.Error())
	}
}

func (n *Node) apiLookup(w http.ResponseWriter, r *http.Request) {
	aor, ok := apiAOR(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	bs, err := n.lsp.Lookup(ctx, aor)
	if err != nil {
		apiFailed(w, err)
		return
	}
	if len(bs) == 0 {
		apiError(w, http.StatusNotFound, aor+": no binding")
		return
	}
	apiJSON(w, http.StatusOK, map[string]any{"aor": aor, "bindings": bs})
}

func (n *Node) apiPublish(w http.ResponseWriter, r *http.Request) {
	aor, ok := apiAOR(w, r)
	if !ok {
		return
	}
	b, remove, err := decodeAPIBinding(http.MaxBytesReader(w, r.Body, maxAPIBody), time.Now())
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if remove {
		if err := n.lsp.Remove(ctx, aor, b.Contact); err != nil {
			apiFailed(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := n.lsp.Publish(ctx, aor, b); err != nil {
		apiFailed(w, err)
		return
	}
	apiJSON(w, http.StatusCreated, map[string]any{"aor": aor, "binding": b})
}

// decodeAPIBinding reads a publish request's body (one JSON object, no
// unknown fields) into the binding to publish, expiring from now, or, with
// "expires": 0, into a removal of its contact (remove set; only Contact
// is meaningful).
func decodeAPIBinding(body io.Reader, now time.Time) (b lsp.Binding, remove bool, err error) {
	var in apiBinding
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return lsp.Binding{}, false, fmt.Errorf("body: %w", err)
	}
	if dec.More() {
		return lsp.Binding{}, false, errors.New("body: one JSON object only")
	}
	switch {
	case strings.TrimSpace(in.Contact) == "":
		return lsp.Binding{}, false, errors.New("contact is required")
	case in.Expires == nil:
		return lsp.Binding{}, false, errors.New("expires is required: seconds, 1 to 604800, or 0 to remove the contact's binding")
	case *in.Expires == 0:
		return lsp.Binding{Contact: in.Contact}, true, nil
	case *in.Expires < 0 || *in.Expires > 7*24*3600:
		return lsp.Binding{}, false, errors.New("expires: seconds, 1 to 604800, or 0 to remove the contact's binding")
	case !(in.Q >= 0 && in.Q <= 1):
		return lsp.Binding{}, false, errors.New("q: 0 to 1")
	}
	return lsp.Binding{Contact: in.Contact, Expires: now.Add(time.Duration(*in.Expires) * time.Second), Q: in.Q,
		Instance: in.Instance, RegID: in.RegID, Path: in.Path, Received: in.Received, CallID: in.CallID, CSeq: in.CSeq}, false, nil
}

func (n *Node) apiRemove(w http.ResponseWriter, r *http.Request) {
	aor, ok := apiAOR(w, r)
	if !ok {
		return
	}
	var ids []string
	if c := r.URL.Query().Get("contact"); c != "" {
		ids = []string{c}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := n.lsp.Remove(ctx, aor, ids...); err != nil {
		apiFailed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// APIAddr returns the bound HTTP API address, or "" without one.
func (n *Node) APIAddr() string {
	if n.apiLn == nil {
		return ""
	}
	return n.apiLn.Addr().String()
}
