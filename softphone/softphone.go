// Package softphone is the browser softphone a node serves on its SIP
// WebSocket listeners (sipnet.WS.Handler): a page and a small SIP-over-
// WebSocket user agent in JavaScript (static files embedded in the
// binary, nothing to build), and the TURN credentials a registered user's
// browser needs for ICE, on the page's own origin.
//
// The credentials endpoint takes the user's SIP digest (SHA-256, the
// registrar's users and nonces). Its challenge travels as
// X-SIP-Authenticate, not WWW-Authenticate, so a browser never shows its
// own login box: the page answers the challenge itself. Pages of other
// origins (Config.Origins) may read it with CORS.
package softphone

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// DigestChecker authenticates a request with a SIP user's digest
// credentials: the user's AOR, or "" and the challenges to send.
type DigestChecker interface {
	CheckDigest(method, uri, authorization string) (aor string, challenges []string)
}

// TURNIssuer hands out TURN REST credentials (the relay).
type TURNIssuer interface {
	Credentials(user string, ttl time.Duration) (username, password string)
	Addr() string // the TURN server's host:port
}

// Config configures Handler.
type Config struct {
	// Users checks the credentials endpoint's digest; Relay issues TURN
	// credentials. Without either, /softphone/turn is 404 (the page then
	// calls without TURN).
	Users DigestChecker
	Relay TURNIssuer
	// TTL of the TURN credentials; default 12 h.
	TTL time.Duration
	// Origins ("https://host[:port]") whose pages may read the
	// credentials endpoint besides the page's own origin.
	Origins []string
	Logger  *slog.Logger
}

// TurnPath is the TURN credentials endpoint.
const TurnPath = "/softphone/turn"

// Handler serves the softphone under /softphone/ (and / redirects there).
func Handler(cfg Config) (http.Handler, error) {
	if cfg.TTL == 0 {
		cfg.TTL = 12 * time.Hour
	}
	if cfg.TTL < 0 {
		return nil, errors.New("softphone: negative credential TTL")
	}
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
	mux.Handle("GET /softphone/", cors(origins, secured(http.StripPrefix("/softphone/", http.FileServerFS(static)))))
	mux.Handle("GET /{$}", http.RedirectHandler("/softphone/", http.StatusFound))
	mux.Handle("OPTIONS "+TurnPath, cors(origins, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.Handle("GET "+TurnPath, cors(origins, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		turn(cfg, w, r)
	})))
	return mux, nil
}

// turn hands a digest-authenticated user TURN credentials.
func turn(cfg Config, w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if cfg.Users == nil || cfg.Relay == nil || cfg.Relay.Addr() == "" {
		http.Error(w, "this node has no TURN relay", http.StatusNotFound)
		return
	}
	aor, challenges := cfg.Users.CheckDigest(r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
	if aor == "" {
		for _, c := range challenges {
			w.Header().Add("X-SIP-Authenticate", c)
		}
		// A 401 names a scheme (RFC 9110 §11.6.1): one no browser knows,
		// so none shows a login box.
		w.Header().Set("WWW-Authenticate", `X-SIP-Digest realm="softphone"`)
		http.Error(w, "digest authentication with a SIP user's credentials required", http.StatusUnauthorized)
		return
	}
	user, pass := cfg.Relay.Credentials(strings.TrimPrefix(aor, "sip:"), cfg.TTL)
	host, port, _ := net.SplitHostPort(cfg.Relay.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		// Bound to every address: the browser reaches the relay where it
		// reached this page.
		host = pageHost(r)
	}
	addr := net.JoinHostPort(strings.Trim(host, "[]"), port)
	uris := []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}
	if t, ok := cfg.Relay.(interface{ TLSAddr() string }); ok {
		if _, tport, err := net.SplitHostPort(t.TLSAddr()); err == nil {
			// TURN over TLS (through firewalls that pass only TLS) is named
			// by the host the page came from: the certificate's name.
			uris = append(uris, "turns:"+net.JoinHostPort(pageHost(r), tport)+"?transport=tcp")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"username": user, "password": pass, "ttl": int(cfg.TTL.Seconds()), "uris": uris})
}

// pageHost is the host name the page's request named.
func pageHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		return strings.Trim(h, "[]")
	}
	return strings.Trim(r.Host, "[]")
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

// secured sets the page's headers: its scripts and connections are its
// own origin's (the WebSocket included: 'self' covers ws and wss of the
// same host and port).
func secured(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
