package httpapi

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/lsnode/lsnode/internal/httpserve"
)

// Server is a running HTTP listener (the API or the TURN credentials);
// Close waits for its requests and its goroutine.
type Server = httpserve.Server

// serve serves h on addr; read and write bound a request's reading and its
// answer's writing (0: no bound).
func serve(addr string, h http.Handler, read, write time.Duration, log *slog.Logger) (*Server, error) {
	return httpserve.Listen(httpserve.Config{Name: "httpapi", Addr: addr, Handler: h, Read: read, Write: write, Logger: log})
}
