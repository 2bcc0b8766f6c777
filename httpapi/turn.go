package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// DigestChecker authenticates a request with a SIP user's digest
// credentials (the registrar's users): the user's AOR, or "" and the
// challenges to send.
type DigestChecker interface {
	CheckDigest(method, uri, authorization string) (aor string, challenges []string)
}

// TURNIssuer hands out TURN REST credentials (the relay).
type TURNIssuer interface {
	Credentials(user string, ttl time.Duration) (username, password string)
	// Addr is the TURN server's host:port.
	Addr() string
}

// TURNConfig is a TURN-credentials listener's.
type TURNConfig struct {
	// Addr (host:port) to listen on.
	Addr  string
	Users DigestChecker
	Relay TURNIssuer
	// TTL of the credentials handed out.
	TTL time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// ListenTURN serves GET /turn/credentials on cfg.Addr: ephemeral TURN
// credentials for a SIP user who authenticates with digest. Close stops it.
func ListenTURN(cfg TURNConfig) (*Server, error) {
	if cfg.Users == nil || cfg.Relay == nil || cfg.TTL <= 0 {
		return nil, errors.New("httpapi: TURN credentials need Users, a Relay and a TTL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /turn/credentials", func(w http.ResponseWriter, r *http.Request) {
		aor, challenges := cfg.Users.CheckDigest(r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
		if aor == "" {
			for _, c := range challenges {
				w.Header().Add("WWW-Authenticate", c)
			}
			http.Error(w, "digest authentication with a SIP user's credentials required", http.StatusUnauthorized)
			return
		}
		user, pass := cfg.Relay.Credentials(strings.TrimPrefix(aor, "sip:"), cfg.TTL)
		host, port, _ := net.SplitHostPort(cfg.Relay.Addr())
		addr := net.JoinHostPort(host, port)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"username": user, "password": pass, "ttl": int(cfg.TTL.Seconds()),
			"uris": []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}})
	})
	return serve(cfg.Addr, mux, 0, 0, cfg.Logger)
}
