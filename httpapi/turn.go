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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h, err := TURNCredentials(cfg.Users, cfg.Relay, cfg.TTL, false)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /turn/credentials", h)
	return serve(cfg.Addr, mux, 0, 0, cfg.Logger)
}

// TURNCredentials hands a SIP user who authenticates with digest (users)
// ephemeral credentials of relay, valid for ttl, and the relay's turn:
// URIs (and turns: when it serves TLS). A relay bound to every address is
// named by the host the request named. forBrowser sends the challenges as
// X-SIP-Authenticate, with WWW-Authenticate naming a scheme no browser
// knows, so a page answers them itself and no login box shows; a relay
// whose Addr is "" (not started) gets 404.
func TURNCredentials(users DigestChecker, relay TURNIssuer, ttl time.Duration, forBrowser bool) (http.Handler, error) {
	if users == nil || relay == nil || ttl <= 0 {
		return nil, errors.New("httpapi: TURN credentials need Users, a Relay and a TTL")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if relay.Addr() == "" {
			http.Error(w, "this node has no TURN relay", http.StatusNotFound)
			return
		}
		aor, challenges := users.CheckDigest(r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
		if aor == "" {
			name := "WWW-Authenticate"
			if forBrowser {
				name = "X-SIP-Authenticate"
				w.Header().Set("WWW-Authenticate", `X-SIP-Digest realm="softphone"`) // RFC 9110 §11.6.1 wants one
			}
			for _, c := range challenges {
				w.Header().Add(name, c)
			}
			http.Error(w, "digest authentication with a SIP user's credentials required", http.StatusUnauthorized)
			return
		}
		user, pass := relay.Credentials(strings.TrimPrefix(aor, "sip:"), ttl)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"username": user, "password": pass, "ttl": int(ttl.Seconds()), "uris": turnURIs(relay, r)})
	}), nil
}

// turnURIs names relay's listeners, by the request's host where the relay
// is bound to every address.
func turnURIs(relay TURNIssuer, r *http.Request) []string {
	reqHost := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		reqHost = h
	}
	reqHost = strings.Trim(reqHost, "[]")
	host, port, _ := net.SplitHostPort(relay.Addr())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = reqHost
	}
	addr := net.JoinHostPort(host, port)
	uris := []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}
	if t, ok := relay.(interface{ TLSAddr() string }); ok {
		if _, tport, err := net.SplitHostPort(t.TLSAddr()); err == nil {
			// Over TLS the name must be the certificate's: the host the
			// request named.
			uris = append(uris, "turns:"+net.JoinHostPort(reqHost, tport)+"?transport=tcp")
		}
	}
	return uris
}
