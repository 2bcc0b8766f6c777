package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/lsnode/lsnode/lsp"
)

// Node is what the operator endpoints read of the node they serve.
type Node interface {
	// Ready says why the node should not get traffic yet, "" when it
	// should (/readyz).
	Ready() string
	// State is the dashboard's snapshot of the node, served as JSON at
	// /dashboard/api/state (the fields app.js reads).
	State() any
	// Trace looks aor up and records how (/dashboard/api/lookup); an
	// lsp.ErrBadAOR is the client's mistake.
	Trace(ctx context.Context, aor string, iterative bool) (*lsp.Trace, error)
}

// Config is an admin listener's.
type Config struct {
	// Addr (host:port) to listen on.
	Addr string
	Node Node
	// Metrics serves /metrics.
	Metrics http.Handler
	// Pprof adds /debug/pprof/.
	Pprof bool
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Listen starts serving cfg.Addr. Close stops it.
func Listen(cfg Config) (*Server, error) {
	if cfg.Node == nil || cfg.Metrics == nil {
		return nil, fmt.Errorf("admin: a Node and a Metrics handler are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", cfg.Metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := cfg.Node.Ready(); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mountDashboard(mux, cfg.Node)
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return serve(cfg.Addr, mux, cfg.Logger)
}
