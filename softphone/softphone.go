// Package softphone is the browser softphone a node serves on its SIP
// WebSocket listeners (sipnet.WS.Handler): a page and a small SIP-over-
// WebSocket user agent in JavaScript (static files embedded in the
// binary, nothing to build), and the TURN credentials a registered user's
// browser needs for ICE, on the page's own origin.
//
// The credentials endpoint is the node's (httpapi.TURNCredentials, its
// challenges for a page to answer); this package mounts it at TurnPath
// and lets pages of other origins (Config.Origins) read it with CORS.
package softphone

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/lsnode/lsnode/internal/httpserve"
)

//go:embed static
var files embed.FS

// Config configures Handler.
type Config struct {
	// Credentials serves TurnPath: TURN credentials for a user who
	// answers its digest challenge. nil: 404 (the page then calls without
	// TURN).
	Credentials http.Handler
	// Origins ("https://host[:port]") whose pages may load the script and
	// read the credentials besides the page's own origin.
	Origins []string
}

// TurnPath is the TURN credentials endpoint.
const TurnPath = "/softphone/turn"

// Handler serves the softphone under /softphone/ (and / redirects there).
func Handler(cfg Config) (http.Handler, error) {
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	origins := map[string]bool{}
	for _, o := range cfg.Origins {
		origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	mux := http.NewServeMux()
	// A page of an allowed origin may load phone.js (a module: fetched
	// with CORS).
	mux.Handle("GET /softphone/", cors(origins, httpserve.Page(http.StripPrefix("/softphone/", http.FileServerFS(static)))))
	mux.Handle("GET /{$}", http.RedirectHandler("/softphone/", http.StatusFound))
	mux.Handle("OPTIONS "+TurnPath, cors(origins, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	creds := cfg.Credentials
	if creds == nil {
		creds = http.NotFoundHandler()
	}
	mux.Handle("GET "+TurnPath, cors(origins, creds))
	return mux, nil
}

// cors lets a page of an allowed other origin call h with its
// Authorization and read the challenge.
func cors(origins map[string]bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if o := r.Header.Get("Origin"); o != "" && origins[strings.ToLower(o)] {
			hd := w.Header()
			hd.Set("Access-Control-Allow-Origin", o)
			hd.Set("Access-Control-Allow-Methods", "GET")
			hd.Set("Access-Control-Allow-Headers", "Authorization")
			hd.Set("Access-Control-Expose-Headers", "X-SIP-Authenticate")
			hd.Set("Access-Control-Max-Age", "600")
		}
		h.ServeHTTP(w, r)
	})
}
