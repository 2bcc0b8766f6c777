// Package httpserve runs one HTTP listener whose Close waits: for the
// serving goroutine and for every request still being answered (their
// contexts are cancelled first). The node's admin and API listeners use it.
package httpserve

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a running HTTP listener.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	served chan struct{} // closed when Serve returns

	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup // requests being answered
}

// Config is a listener's address, handler and bounds.
type Config struct {
	// Name prefixes errors ("admin", "httpapi").
	Name    string
	Addr    string
	Handler http.Handler
	// Read and Write bound a request's reading and its answer's writing
	// (0: no bound); the header must arrive within 5 s in any case.
	Read, Write time.Duration
	Logger      *slog.Logger
}

// Listen binds cfg.Addr and serves cfg.Handler until Close.
func Listen(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", cfg.Name, cfg.Addr, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, cancel: cancel, served: make(chan struct{})}
	s.srv = &http.Server{Handler: s.track(cfg.Handler), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: cfg.Read, WriteTimeout: cfg.Write,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// track counts the requests being answered, so Close can wait for them;
// once closing, it answers 503.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		h.ServeHTTP(w, r)
	})
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the listener, closes its connections, cancels the requests
// being answered and waits for them and for the server's goroutine. A
// second Close waits for the first.
func (s *Server) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		<-s.served
		return nil
	}
	err := s.srv.Close()
	s.cancel()
	s.handlers.Wait()
	<-s.served
	return err
}

// WriteJSON answers code with v as JSON, not to be cached.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers code with {"error": msg}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Page sets the headers of a page of our own and what it loads: scripts,
// styles and connections of its own origin only (a WebSocket to the same
// host and port included), never framed, nothing cached, no Referer.
func Page(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}
