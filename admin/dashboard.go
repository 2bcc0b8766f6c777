package admin

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/lsnode/lsnode/internal/httpserve"
	"github.com/lsnode/lsnode/lsp"
)

// The dashboard is static HTML, CSS and JavaScript embedded in the binary
// (nothing to build) reading two JSON endpoints on the admin listener.
//
//go:embed dashboard
var dashboardFiles embed.FS

const (
	// dashLookups bounds the lookups the dashboard runs at once; the rest
	// get 503. dashLookupTimeout bounds one.
	dashLookups       = 4
	dashLookupTimeout = 15 * time.Second
)

// mountDashboard serves the dashboard under /dashboard/ on mux.
func mountDashboard(mux *http.ServeMux, n Node) {
	files, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	static := http.StripPrefix("/dashboard/", http.FileServerFS(files))
	mux.Handle("GET /dashboard/", httpserve.Page(static))
	mux.Handle("GET /{$}", http.RedirectHandler("/dashboard/", http.StatusFound))
	mux.Handle("GET /dashboard/api/state", httpserve.Page(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpserve.WriteJSON(w, http.StatusOK, n.State())
	})))
	sem := make(chan struct{}, dashLookups)
	mux.Handle("GET /dashboard/api/lookup", httpserve.Page(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aor := strings.TrimSpace(r.URL.Query().Get("aor"))
		if aor == "" {
			httpserve.WriteError(w, http.StatusBadRequest, "aor is required")
			return
		}
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			httpserve.WriteError(w, http.StatusServiceUnavailable, "too many lookups running; try again")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), dashLookupTimeout)
		defer cancel()
		tr, err := n.Trace(ctx, aor, r.URL.Query().Get("iterative") == "1")
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, lsp.ErrBadAOR) {
				code = http.StatusBadRequest
			}
			httpserve.WriteError(w, code, err.Error())
			return
		}
		httpserve.WriteJSON(w, http.StatusOK, tr)
	})))
}
