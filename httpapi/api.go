package httpapi

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lsnode/lsnode/internal/httpserve"
	"github.com/lsnode/lsnode/lsp"
)

// Location is what the API needs of the location service
// (lsp.LocationService has it).
type Location interface {
	Publish(ctx context.Context, aor string, bindings ...lsp.Binding) error
	Lookup(ctx context.Context, aor string) ([]lsp.Binding, error)
	Remove(ctx context.Context, aor string, ids ...string) error
}

// Config is an HTTP API listener's.
type Config struct {
	// Addr (host:port) to listen on.
	Addr string
	// Tokens a request may carry (LoadTokens reads them from a file).
	Tokens   [][]byte
	Location Location
	// Logger; default slog.Default().
	Logger *slog.Logger
}

const (
	// maxBody bounds a request body.
	maxBody = 64 << 10
	// opTimeout bounds one location-service operation.
	opTimeout = 5 * time.Second
)

// Listen starts serving the HTTP API on cfg.Addr. Close stops it.
func Listen(cfg Config) (*Server, error) {
	if cfg.Location == nil || len(cfg.Tokens) == 0 {
		return nil, errors.New("httpapi: a Location and at least one token are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &api{loc: cfg.Location}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/aors/{aor}/bindings", a.lookup)
	mux.HandleFunc("POST /v1/aors/{aor}/bindings", a.publish)
	mux.HandleFunc("DELETE /v1/aors/{aor}/bindings", a.remove)
	return serve(cfg.Addr, bearer(cfg.Tokens, mux), 10*time.Second, 15*time.Second, cfg.Logger)
}

// LoadTokens reads bearer tokens, one per line ('#' comments, blank lines
// skipped); each at least 16 characters, at least one.
func LoadTokens(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
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
			return nil, fmt.Errorf("line %d: a token needs at least 16 characters", n)
		}
		out = append(out, []byte(t))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no token", path)
	}
	return out, nil
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
			httpserve.WriteError(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// api answers the API's requests.
type api struct{ loc Location }

// pathAOR canonicalises the path's AOR, answering 400 when it is none.
func pathAOR(w http.ResponseWriter, r *http.Request) (string, bool) {
	aor, err := lsp.Canonical(r.PathValue("aor"))
	if err != nil {
		httpserve.WriteError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return aor, true
}

// failed maps a location-service error to a status.
func failed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, lsp.ErrForbidden), errors.Is(err, lsp.ErrNoCredential):
		httpserve.WriteError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, lsp.ErrInvalid), errors.Is(err, lsp.ErrMalformed), errors.Is(err, lsp.ErrBadAOR):
		httpserve.WriteError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, lsp.ErrTooLarge):
		httpserve.WriteError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, lsp.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, lsp.ErrClosed):
		w.Header().Set("Retry-After", "5")
		httpserve.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		httpserve.WriteError(w, http.StatusInternalServerError, err.Error())
	}
}

func (a *api) lookup(w http.ResponseWriter, r *http.Request) {
	aor, ok := pathAOR(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	bs, err := a.loc.Lookup(ctx, aor)
	if err != nil {
		failed(w, err)
		return
	}
	if len(bs) == 0 {
		httpserve.WriteError(w, http.StatusNotFound, aor+": no binding")
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, map[string]any{"aor": aor, "bindings": bs})
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	aor, ok := pathAOR(w, r)
	if !ok {
		return
	}
	b, remove, err := decodeBinding(http.MaxBytesReader(w, r.Body, maxBody), time.Now())
	if err != nil {
		httpserve.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	if remove {
		if err := a.loc.Remove(ctx, aor, b.Contact); err != nil {
			failed(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := a.loc.Publish(ctx, aor, b); err != nil {
		failed(w, err)
		return
	}
	// The write's timestamp comes from the location service's own clock
	// (later than any write it made before); read it back, with a budget
	// of its own.
	rctx, rcancel := context.WithTimeout(r.Context(), opTimeout)
	defer rcancel()
	httpserve.WriteJSON(w, http.StatusCreated, map[string]any{"aor": aor, "binding": a.stored(rctx, aor, b)})
}

// stored is the binding as the location service holds it after a publish
// (its write time, expiry rounded, signer): the newest of b's identity read
// back; b as sent if the read fails.
func (a *api) stored(ctx context.Context, aor string, b lsp.Binding) lsp.Binding {
	bs, err := a.loc.Lookup(ctx, aor)
	if err != nil {
		return b
	}
	out, found := b, false
	for _, x := range bs {
		if x.ID() == b.ID() && (!found || x.Timestamp.After(out.Timestamp)) {
			out, found = x, true
		}
	}
	return out
}

func (a *api) remove(w http.ResponseWriter, r *http.Request) {
	aor, ok := pathAOR(w, r)
	if !ok {
		return
	}
	var ids []string
	if c := r.URL.Query().Get("contact"); c != "" {
		ids = []string{c}
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	if err := a.loc.Remove(ctx, aor, ids...); err != nil {
		failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// binding is a binding to publish: expires in seconds from now; 0 removes
// the binding of that contact (REGISTER's Expires: 0, for HTTP clients
// that only GET and POST, like Kamailio 5.6's http_client).
type binding struct {
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

// decodeBinding reads a publish request's body (one JSON object, no
// unknown fields) into the binding to publish, expiring from now, or, with
// "expires": 0, into a removal of its contact (remove set; only Contact
// is meaningful).
func decodeBinding(body io.Reader, now time.Time) (b lsp.Binding, remove bool, err error) {
	var in binding
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
